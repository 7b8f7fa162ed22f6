"""One worker process of ``voiceagents.serve``: the ASGI app under a uvicorn ``Server``.

The supervisor starts it as ``python -m voiceagents.serve.worker SPEC`` (a fresh interpreter
that imports Django and the app itself; SPEC is JSON, see ``supervisor.Supervisor._spawn``).
It loads the app first and only then binds its listening socket (``sockets.bind`` with
``SO_REUSEPORT``; or it takes the shared socket it inherited), so the kernel gives it no
connection before it can answer. ``freeze_startup_objects()`` runs at the app's import
(``patter_site/asgi.py``), so once in every worker.

Signals are the worker's own, not uvicorn's: the first SIGTERM or SIGINT drains
(``telephony.draining.drain``: no new calls, listening socket closed, live calls go on for
``DRAIN_TIMEOUT`` at most), then the server stops; a second one stops it at once (uvicorn closes
the remaining WebSockets, 1012, and the calls end as the server went away); a third does not wait
for those connections either. Signals less than a second apart count as one (the same stop may
reach a worker both from its supervisor and from systemd). The worker drains too when its
supervisor goes away (the control socket reads end-of-file), so a killed supervisor leaves no
worker serving for ever.

Over the control socket the worker sends one byte, ``READY``, once it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import time

import uvicorn

from . import logs, sockets

logger = logging.getLogger("voiceagents.serve")

READY = b"r"
#: Signals this close together (seconds) are one stop request.
SAME_REQUEST_WITHIN = 1.0
#: Exit status of a worker that cannot bind its socket (uvicorn's for a failed start-up).
STARTUP_FAILURE = 3


class WorkerServer(uvicorn.Server):
    """uvicorn's server without its signal handlers; it tells ``on_started`` once it serves."""

    def __init__(self, config: uvicorn.Config, on_started) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self):
        yield  # the worker's Stopping handles SIGTERM and SIGINT

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


class Stopping:
    """What the worker does on each stop request (a signal, or the supervisor gone)."""

    def __init__(self, server: WorkerServer, listening: socket.socket) -> None:
        self.server = server
        self.listening = listening
        self.requests = 0
        self._last_signal = float("-inf")
        self._drain: asyncio.Task | None = None

    def request(self, reason: str, *, signalled: bool = True) -> None:
        now = time.monotonic()
        if signalled and now - self._last_signal < SAME_REQUEST_WITHIN:
            # One stop, delivered twice: systemd's default KillMode signals every process of the
            # unit, and the supervisor passes its own signal on as well. Not a second request.
            return
        if signalled:
            self._last_signal = now
        self.requests += 1
        if self.requests == 1:
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit(reason))
        elif self.requests == 2:
            logger.warning("%s again: stopping now, live calls are cut", reason)
            self.server.should_exit = True
        else:
            self.server.force_exit = True

    def _stop_listening(self) -> None:
        for listening in list(getattr(self.server, "servers", ())):
            listening.close()
        # The loop closes the socket with its server (uvloop on its next turn); closing it here
        # too, as uvicorn's own shutdown does, takes it out of the port's group now whatever the
        # loop (a socket that is still in use is closed once the loop lets go of it).
        self.listening.close()

    async def _drain_then_exit(self, reason: str) -> None:
        from telephony import draining

        while not (self.server.started or self.server.should_exit):
            await asyncio.sleep(0.05)  # asked during start-up: let the socket be served first
        await draining.drain(reason, self._stop_listening)
        self.server.should_exit = True


def _early_signals() -> list[int]:
    """Record SIGTERM/SIGINT that come while the app loads; the loop's handlers replay them."""
    received: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda sig, frame: received.append(sig))
    return received


async def _serve(
    server: WorkerServer, listening: socket.socket, control: socket.socket, early: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    stopping = Stopping(server, listening)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.request, signal.Signals(sig).name)
    for sig in early:
        stopping.request(signal.Signals(sig).name)

    def supervisor_gone() -> None:
        try:
            if control.recv(16):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        loop.remove_reader(control.fileno())
        stopping.request("the supervisor exited", signalled=False)

    control.setblocking(False)
    loop.add_reader(control.fileno(), supervisor_gone)
    await server.serve(sockets=[listening])


def run(spec: dict) -> int:
    early = _early_signals()
    logs.configure(spec["log_level"])
    control = socket.socket(fileno=spec["control_fd"])
    config = uvicorn.Config(
        spec["app"],
        host=spec["host"],
        port=spec["port"],
        loop="auto",
        ws="auto",
        lifespan="off",
        access_log=False,
        log_level=spec["log_level"],
        backlog=spec["backlog"],
    )
    config.load()  # imports Django and the app (and freezes its start-up objects)
    logs.configure(spec["log_level"])  # again: the project's LOGGING was applied meanwhile

    from telephony import draining

    draining.handled_by_server()
    if spec["shared_fd"] is not None:
        listening = socket.socket(fileno=spec["shared_fd"])
    else:
        try:
            listening = sockets.bind(
                spec["host"], spec["port"], reuse_port=True, backlog=spec["backlog"]
            )
        except OSError as exc:
            logger.error("worker %d cannot listen on port %d: %s", spec["index"], spec["port"], exc)
            return STARTUP_FAILURE

    def started() -> None:
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        logger.info(
            "worker %d serving on %s (event loop: %s)",
            spec["index"],
            sockets.url(spec["host"], spec["port"]),
            loop,
        )
        with contextlib.suppress(OSError):
            control.send(READY)

    server = WorkerServer(config, started)
    loop_factory = config.get_loop_factory() if hasattr(config, "get_loop_factory") else None
    if loop_factory is None and hasattr(config, "setup_event_loop"):
        config.setup_event_loop()  # older uvicorn releases set the loop policy instead
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(server, listening, control, early))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run(json.loads(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
