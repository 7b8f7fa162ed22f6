"""Draining: a server process that is asked to stop takes no new calls, lets its live calls
finish, then stops (docs/health.md#full-and-draining).

``drain()`` is the procedure. It

1. marks the process as draining: ``/healthz/ready`` answers ``503`` ``draining`` (a load balancer
   sends new calls elsewhere) and a call webhook that still arrives gets the busy refusal;
2. stops accepting connections (the caller closes this process's listening sockets; the other
   processes on the same port keep accepting);
3. waits until its live calls have ended, ``DRAIN_TIMEOUT`` at most.

Who calls it:

- the workers of ``voiceagents.serve`` (the documented way to run production), which handle
  SIGTERM and SIGINT themselves and call ``handled_by_server()`` so that nothing here touches
  signal handlers;
- under plain ``uvicorn``, ``install()``: uvicorn stops on SIGTERM at once and closes every open
  WebSocket (code 1012), which would cut every live call, so once a process runs its first call a
  handler goes in front of uvicorn's. It drains, then hands the signal to uvicorn. A second signal
  hands over at once. Only uvicorn is drained this way (its handler is recognised by the server
  it belongs to); under another server, or before a process has run a call, nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable

from voiceagents.conf import get_setting

from . import limits

logger = logging.getLogger(__name__)

_installed = False
_started = threading.Event()


def draining() -> bool:
    return _started.is_set()


def handled_by_server() -> None:
    """The server of this process drains it by itself (``voiceagents.serve``): ``install()``
    leaves the signal handlers alone."""
    global _installed
    _installed = True


async def drain(reason: str, stop_listening: Callable[[], None]) -> int:
    """Take no new calls, stop listening, wait for the live calls to end (``DRAIN_TIMEOUT`` at
    most). Returns how many calls were still live when it gave up (0: all ended)."""
    _started.set()
    timeout = float(get_setting("DRAIN_TIMEOUT", cast=float))
    logger.warning(
        "%s: draining: no new calls; waiting up to %g s for %d live call(s) to end",
        reason,
        timeout,
        limits.live_calls(),
    )
    stop_listening()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while limits.live_calls() and loop.time() < deadline:
        await asyncio.sleep(0.2)
    left = limits.live_calls()
    if left:
        logger.error("draining: %d call(s) still live after %g s; stopping anyway", left, timeout)
    else:
        logger.warning("draining: every call has ended; stopping")
    return left


def install() -> None:
    """Put the draining handler in front of plain uvicorn's (main thread, once; else nothing)."""
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
        _started.set()  # a second signal before the drain starts hands over too
        loop.call_soon_threadsafe(lambda: loop.create_task(_drain_uvicorn(server, previous, sig)))

    return handle


async def _drain_uvicorn(server, previous, sig) -> None:
    def stop_listening() -> None:
        for listening in list(getattr(server, "servers", ())):
            listening.close()  # no new connections here; live ones go on

    await drain(signal.Signals(sig).name, stop_listening)
    previous(sig, None)


def reset() -> None:
    """Forget the draining state (tests)."""
    _started.clear()
