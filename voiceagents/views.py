"""HTTP views of the core app: the health endpoints, for load balancers (docs/health.md)."""

from __future__ import annotations

import asyncio

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from . import probes
from .conf import get_setting


def _probe_view(view):
    """No login, no session, no cache, GET and HEAD only."""
    return login_not_required(never_cache(require_safe(view)))


@_probe_view
async def live(request):
    """200 while the process serves requests: no I/O, so a database outage never restarts it."""
    return JsonResponse({"status": "ok"})


@_probe_view
async def ready(request):
    """200 when the database and the channel layer answer within HEALTH_CHECK_TIMEOUT, else 503.

    Answers within that timeout whatever they do (see ``probes``). Writes nothing.
    """
    timeout = float(get_setting("HEALTH_CHECK_TIMEOUT", cast=float))
    database, layer = await asyncio.gather(
        probes.check("database", probes.database, timeout),
        probes.check("channel_layer", probes.channel_layer, timeout),
    )
    healthy = database == probes.OK and layer == probes.OK
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": database,
        "channel_layer": layer,
    }
    return JsonResponse(body, status=200 if healthy else 503)


#: ``/healthz/``, kept for existing probes: the readiness check.
healthz = ready
