"""HTTP views of the core app: the health endpoint."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .conf import get_setting

logger = logging.getLogger(__name__)


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _ping_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    # The default prefix, not one of our own: channels-redis reads all of a process's local
    # channels through one blocking read on a key derived from the prefix, held by whichever
    # receive() came first (a live call's consumer). A probe on another prefix waits for that
    # read to time out (5 s) and reports a healthy layer as down.
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "healthz.ping":
        raise RuntimeError("channel layer returned a different message")


async def _check(name: str, probe, timeout: float) -> str:
    try:
        await asyncio.wait_for(probe(), timeout)
    except Exception as err:  # noqa: BLE001 - a health check reports every failure as "down"
        logger.warning("health check: %s is down: %s", name, err)
        return "down"
    return "ok"


@login_not_required
@never_cache
@require_safe
async def healthz(request):
    """200 with a tiny JSON when the database and channel layer answer, 503 otherwise.

    For load balancers and benchmarks: no auth, no session, no database write.
    """
    timeout = float(get_setting("HEALTH_CHECK_TIMEOUT", cast=float))
    database, layer = await asyncio.gather(
        _check("database", sync_to_async(_ping_database), timeout),
        _check("channel_layer", _ping_channel_layer, timeout),
    )
    healthy = database == "ok" and layer == "ok"
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": database,
        "channel_layer": layer,
    }
    return JsonResponse(body, status=200 if healthy else 503)
