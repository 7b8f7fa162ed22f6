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
    """200 when the database and the channel layer answer within HEALTH_CHECK_TIMEOUT and this
    process takes new calls, else 503 (``status``: ``unavailable``, ``full`` at
    MAX_CALLS_PER_PROCESS, ``draining`` once told to stop).

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
    admission = _admission()
    if admission is not None:
        live, refused = admission
        body["live_calls"] = live
        if refused and healthy:
            # Healthy, but no new call here: the load balancer should send them elsewhere.
            body["status"] = refused
            healthy = False
    return JsonResponse(body, status=200 if healthy else 503)


def _admission() -> tuple[int, str] | None:
    """This process's live calls, and "full" or "draining" when it takes no new call ('' when it
    does); ``None`` without the telephony app."""
    try:
        from telephony import limits
    except ImportError:
        return None
    refused = limits.refusal()
    if refused is None:
        return limits.live_calls(), ""
    return limits.live_calls(), "draining" if refused[0] == limits.DRAINING else "full"


#: ``/healthz/``, kept for existing probes: the readiness check.
healthz = ready
