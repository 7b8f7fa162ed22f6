"""Readiness probes that answer within their timeout, whatever the database or Redis do.

Two ways a probe used to overrun its timeout: a database call run through ``sync_to_async`` cannot
be abandoned (asgiref waits for its thread after a cancel, and Django's pool waits up to 30 s for a
connection), and ``asyncio.wait_for`` waits for a cancelled task to finish cancelling. Here:

- the database probe opens a connection of its own (no pool, a short ``connect_timeout``) in a
  thread of its own, and is abandoned, not waited for, at the timeout. At most one such thread
  runs per database: while one is still stuck, later probes wait on it rather than start another;
- coroutine probes (the channel layer) are cancelled at the timeout without waiting for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import math
import threading
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer
from django.db import connections

logger = logging.getLogger(__name__)

OK = "ok"
DOWN = "down"

#: libpq's smallest useful ``connect_timeout`` (it rounds lower values up to 2 s).
_MIN_CONNECT_TIMEOUT = 2

_in_flight: dict[str, concurrent.futures.Future] = {}
_in_flight_lock = threading.Lock()


def _probe_settings(alias: str, timeout: float) -> dict:
    """The alias's settings for one direct, short-lived connection (no pool, short timeouts)."""
    settings_dict = copy.deepcopy(connections.settings[alias])
    options = settings_dict.setdefault("OPTIONS", {})
    options.pop("pool", None)
    engine = settings_dict.get("ENGINE", "")
    seconds = max(_MIN_CONNECT_TIMEOUT, math.ceil(timeout))
    if engine.endswith((".postgresql", ".mysql")):
        options["connect_timeout"] = seconds
    elif engine.endswith(".sqlite3"):
        options["timeout"] = seconds
    settings_dict["CONN_MAX_AGE"] = 0
    settings_dict["CONN_HEALTH_CHECKS"] = False
    return settings_dict


def _select_one(alias: str, timeout: float) -> None:
    wrapper = connections.create_connection(alias)
    wrapper.settings_dict = _probe_settings(alias, timeout)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        wrapper.close()


def _database_future(alias: str, timeout: float) -> concurrent.futures.Future:
    """The running probe of ``alias``, or a new one in a daemon thread of its own."""
    with _in_flight_lock:
        future = _in_flight.get(alias)
        if future is not None and not future.done():
            return future
        future = concurrent.futures.Future()
        _in_flight[alias] = future

    def run() -> None:
        try:
            _select_one(alias, timeout)
        except BaseException as err:  # noqa: BLE001 - handed to whoever awaits the probe
            future.set_exception(err)
        else:
            future.set_result(None)

    threading.Thread(target=run, name=f"healthz-db-{alias}", daemon=True).start()
    return future


async def _abandon_after(awaitable: Awaitable, timeout: float) -> None:
    """Await ``awaitable`` for at most ``timeout`` seconds, then give up without waiting for it."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        # Its outcome is no longer anyone's business; retrieve it so asyncio does not log it.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise TimeoutError(f"no answer within {timeout:g} s")
    task.result()


async def database(timeout: float, alias: str = "default") -> None:
    """``SELECT 1`` on a fresh connection; TimeoutError when none within ``timeout``."""
    future = _database_future(alias, timeout)
    # Shielded: the timeout abandons our wait, never the shared probe that others may wait on.
    await _abandon_after(asyncio.shield(asyncio.wrap_future(future)), timeout)


async def _channel_layer_round_trip() -> None:
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


async def channel_layer(timeout: float) -> None:
    """A message to ourselves through the channel layer; TimeoutError when not back in time."""
    await _abandon_after(_channel_layer_round_trip(), timeout)


async def check(name: str, probe: Callable[[float], Awaitable[None]], timeout: float) -> str:
    """``"ok"`` or ``"down"`` (logged with the reason), within ``timeout`` seconds."""
    try:
        await probe(timeout)
    except Exception as err:  # noqa: BLE001 - a health check reports every failure as "down"
        logger.warning("health check: %s is down: %s", name, err or type(err).__name__)
        return DOWN
    return OK
