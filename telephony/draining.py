"""Draining on SIGTERM: a server process that is asked to stop takes no new calls, lets its live
calls finish, then stops (docs/deploying.md#draining).

uvicorn stops on SIGTERM at once: it closes every open WebSocket (code 1012), which would cut
every live call. So once a process runs its first call, ``install()`` puts a handler in front of
uvicorn's. On the first SIGTERM (or SIGINT) it

1. marks the process as draining: ``/healthz/ready`` answers ``503`` ``draining`` (a load balancer
   sends new calls elsewhere) and a call webhook that still arrives gets the busy refusal;
2. stops accepting connections (uvicorn's listening sockets are closed in this process; with
   ``--workers`` the other workers keep accepting on the shared socket);
3. waits until its live calls have ended, ``DRAIN_TIMEOUT`` at most, and then hands the signal to
   uvicorn, which shuts down as usual.

A second signal hands over at once. Only uvicorn is drained (its handler is recognised by the
server it belongs to); under another server, or before a process has run a call, nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from voiceagents.conf import get_setting

from . import limits

logger = logging.getLogger(__name__)

_installed = False
_started = threading.Event()


def draining() -> bool:
    return _started.is_set()


def install() -> None:
    """Put the draining handler in front of uvicorn's (main thread, once; else nothing)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        server = getattr(previous, "__self__", None)
        if not (hasattr(server, "servers") and hasattr(server, "should_exit")):
            continue  # not uvicorn's Server.handle_exit: leave it alone
        signal.signal(sig, _handler(previous, server))


def _handler(previous, server):
    loop = asyncio.get_running_loop()

    def handle(sig, frame):
        if _started.is_set() or limits.live_calls() == 0:
            previous(sig, frame)  # nothing to wait for, or asked twice: stop now
            return
        _started.set()
        timeout = float(get_setting("DRAIN_TIMEOUT", cast=float))
        logger.warning(
            "%s: draining: no new calls; waiting up to %g s for %d live call(s) to end",
            signal.Signals(sig).name,
            timeout,
            limits.live_calls(),
        )
        loop.call_soon_threadsafe(lambda: loop.create_task(_drain(server, previous, sig, timeout)))

    return handle


async def _drain(server, previous, sig, timeout: float) -> None:
    for listening in list(getattr(server, "servers", ())):
        listening.close()  # no new connections here; live ones go on
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while limits.live_calls() and loop.time() < deadline:
        await asyncio.sleep(0.2)
    left = limits.live_calls()
    if left:
        logger.error("draining: %d call(s) still live after %g s; stopping anyway", left, timeout)
    else:
        logger.warning("draining: every call has ended; stopping")
    previous(sig, None)


def reset() -> None:
    """Forget the draining state (tests)."""
    _started.clear()
