"""The supervisor of ``voiceagents.serve``: W worker processes behind one port.

The supervisor imports no app. It reserves the port (a socket bound with ``SO_REUSEPORT`` and
never listening: it takes no connection, but it learns the port of ``--port 0`` and fails early
when another program holds the port), then starts the workers as direct children, each a fresh
interpreter (``python -m voiceagents.serve.worker``) in a process group of its own, so that a
terminal's Ctrl-C reaches them once, through the supervisor.

- A worker that exits while the supervisor is not stopping is restarted and the exit logged; one
  that keeps exiting soon after its start is restarted after 1, 2, 4 ... 30 s. A worker that
  fails before every worker has started once stops the whole launcher (exit status 1): the app
  or the port is wrong, and restarting would fail the same way.
- SIGTERM or SIGINT: passed on to every worker, which drains (``worker``); the supervisor exits
  once all have, with status 0 if every one exited cleanly. A second signal (a second or more
  later) is passed on too, and the workers stop at once.

Each worker has a socket pair with the supervisor: the worker says when it serves, and each side
sees the other's end as end-of-file (a killed supervisor makes its workers drain and exit).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from . import logs, sockets
from .worker import READY, SAME_REQUEST_WITHIN

logger = logging.getLogger(logs.NAME)

#: A worker that ran this long (seconds) before it exited is restarted at once.
STABLE_AFTER = 30.0
#: The longest wait before restarting a worker that keeps exiting.
MAX_BACKOFF = 30.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class Options:
    app: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    backlog: int = 2048
    log_level: str = "info"
    #: One listening socket for all workers, as where SO_REUSEPORT does not balance.
    shared_socket: bool = False


@dataclass
class Worker:
    index: int
    process: subprocess.Popen | None = None
    control: socket.socket | None = None
    started_at: float = 0.0
    ready: bool = False
    quick_exits: int = 0
    restart_at: float | None = None
    exit_status: int | None = None


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def restart_delay(quick_exits: int) -> float:
    """Seconds before restarting a worker that exited ``quick_exits`` times in a row within
    ``STABLE_AFTER`` of its start: at once for the first, then 1, 2, 4 ... ``MAX_BACKOFF``."""
    if quick_exits <= 1:
        return 0.0
    return min(2.0 ** (quick_exits - 2), MAX_BACKOFF)


def import_roots(*modules: str) -> list[str]:
    """The directories this process imports the top-level packages of ``modules`` from, where
    they are not in the interpreter's own paths: the workers, fresh interpreters started in the
    same directory, then import the same app, settings and launcher (``manage.py`` run from
    elsewhere, ``--pythonpath``, a project directory added by the settings)."""
    own = tuple(
        os.path.join(os.path.realpath(prefix), "") for prefix in {sys.prefix, sys.base_prefix}
    )
    roots: list[str] = []
    for module in modules:
        top = module.partition(".")[0]
        spec = importlib.util.find_spec(top) if top else None
        if spec is None or not spec.origin and not spec.submodule_search_locations:
            continue
        if spec.submodule_search_locations:
            where = os.path.dirname(list(spec.submodule_search_locations)[0])
        else:
            where = os.path.dirname(spec.origin)
        if os.path.join(os.path.realpath(where), "").startswith(own):
            continue
        where = os.path.abspath(where)
        if where not in roots:
            roots.append(where)
    return roots


@dataclass
class Supervisor:
    options: Options
    #: Put first on the workers' PYTHONPATH (default: ``import_roots`` of the app, the settings
    #: and this package).
    path_entries: list[str] | None = None

    def __post_init__(self) -> None:
        if self.path_entries is None:
            self.path_entries = import_roots(
                self.options.app.partition(":")[0],
                os.environ.get("DJANGO_SETTINGS_MODULE", ""),
                __name__,
            )
        self.workers = [Worker(index) for index in range(1, self.options.workers + 1)]
        self.port = self.options.port
        self.balanced = sockets.BALANCED and not self.options.shared_socket
        self.reserved: socket.socket | None = None
        self.shared: socket.socket | None = None
        self.signals: list[tuple[int, float]] = []
        self.last_signal = float("-inf")
        self.stopping = False
        self.failed = False
        self.serving = False

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until told to stop; the exit status (0: every worker stopped cleanly)."""
        try:
            self._listen()
        except OSError as exc:
            logger.error(
                "cannot listen on %s: %s", sockets.url(self.options.host, self.options.port), exc
            )
            return 1
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(wake_write.fileno())
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for worker in self.workers:
                self._spawn(worker)
            while not (self.stopping and all(w.process is None for w in self.workers)):
                self._wait(wake_read)
                self._handle_signals()
                self._read_controls()
                self._reap()
                self._restart_due()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            wake_read.close()
            wake_write.close()
            self._close_sockets()
        clean = not self.failed and all(w.exit_status == 0 for w in self.workers)
        logger.info("stopped%s", "" if clean else " (not every worker stopped cleanly)")
        return 0 if clean else 1

    def _listen(self) -> None:
        host, port = self.options.host, self.options.port
        if self.balanced:
            self.reserved = sockets.bind(host, port, reuse_port=True)
            self.port = self.reserved.getsockname()[1]
        else:
            if not sockets.BALANCED:
                logger.warning(
                    "SO_REUSEPORT does not balance connections on %s: the %d worker(s) share one "
                    "listening socket, and the kernel may give most connections to one of them",
                    sys.platform,
                    len(self.workers),
                )
            self.shared = sockets.bind(host, port, reuse_port=False, backlog=self.options.backlog)
            self.port = self.shared.getsockname()[1]

    def _close_sockets(self) -> None:
        for sock in (self.reserved, self.shared):
            if sock is not None:
                sock.close()

    def _wait(self, wake_read: socket.socket) -> None:
        timeout = 0.5
        if any(w.process is not None and w.control is None for w in self.workers):
            timeout = 0.05  # a worker closed its end: it is exiting, reap it soon
        due = [w.restart_at for w in self.workers if w.restart_at is not None]
        if due:
            timeout = max(0.0, min(timeout, min(due) - time.monotonic()))
        watched = [wake_read] + [w.control for w in self.workers if w.control is not None]
        readable, _, _ = select.select(watched, [], [], timeout)
        if wake_read in readable:
            try:
                while wake_read.recv(64):
                    pass
            except BlockingIOError:
                pass

    def _on_signal(self, sig: int, frame) -> None:
        self.signals.append((sig, time.monotonic()))

    # -- events -----------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.signals:
            sig, at = self.signals.pop(0)
            name = signal.Signals(sig).name
            if at - self.last_signal < SAME_REQUEST_WITHIN:
                continue  # the workers would take it as the same stop (worker.Stopping)
            self.last_signal = at
            if self.stopping:
                logger.warning("%s again: the workers stop now, live calls are cut", name)
            else:
                logger.info("%s: stopping; each worker drains its live calls first", name)
            self._stop(sig)

    def _stop(self, sig: int) -> None:
        self.stopping = True
        if self.shared is not None:
            self.shared.close()  # the workers' copies close as they drain
            self.shared = None
        for worker in self.workers:
            worker.restart_at = None
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(sig)

    def _read_controls(self) -> None:
        for worker in self.workers:
            if worker.control is None:
                continue
            try:
                data = worker.control.recv(64)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if READY in data and not worker.ready:
                worker.ready = True
                worker.started_at = time.monotonic()
                self._announce()
            if not data:  # the worker is gone (or going): _reap collects it
                worker.control.close()
                worker.control = None

    def _announce(self) -> None:
        if self.serving or not all(w.ready for w in self.workers):
            return
        self.serving = True
        how = (
            "a listening socket each, balanced by the kernel (SO_REUSEPORT)"
            if self.balanced
            else "one shared listening socket"
        )
        logger.info(
            "serving %s on %s with %d worker(s), %s",
            self.options.app,
            sockets.url(self.options.host, self.port),
            len(self.workers),
            how,
        )

    def _reap(self) -> None:
        for worker in self.workers:
            process = worker.process
            if process is None or process.poll() is None:
                continue
            status = process.returncode
            worker.process = None
            worker.exit_status = status
            if worker.control is not None:
                worker.control.close()
                worker.control = None
            what = f"worker {worker.index} (pid {process.pid}) {describe_exit(status)}"
            if self.stopping:
                (logger.info if status == 0 else logger.warning)("%s", what)
            elif not self.serving and not worker.ready:
                logger.error("%s before it served: stopping", what)
                self.failed = True
                self._stop(signal.SIGTERM)
            else:
                self._schedule_restart(worker, what)

    def _schedule_restart(self, worker: Worker, what: str) -> None:
        lived = time.monotonic() - worker.started_at if worker.ready else 0.0
        worker.quick_exits = 0 if lived >= STABLE_AFTER else worker.quick_exits + 1
        delay = restart_delay(worker.quick_exits)
        logger.error(
            "%s%s; restarting it%s",
            what,
            f" after {lived:.0f} s" if worker.ready else " before it served",
            f" in {delay:g} s" if delay else "",
        )
        worker.restart_at = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None and worker.restart_at <= now and not self.stopping:
                worker.restart_at = None
                self._spawn(worker)

    # -- workers ----------------------------------------------------------------------------

    def _spawn(self, worker: Worker) -> None:
        ours, theirs = socket.socketpair()
        spec = {
            "app": self.options.app,
            "host": self.options.host,
            "port": self.port,
            "backlog": self.options.backlog,
            "log_level": self.options.log_level,
            "index": worker.index,
            "control_fd": theirs.fileno(),
            "shared_fd": self.shared.fileno() if self.shared is not None else None,
        }
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [*self.path_entries, env.get("PYTHONPATH")])
        )
        try:
            worker.process = subprocess.Popen(
                [sys.executable, "-m", "voiceagents.serve.worker", json.dumps(spec)],
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=[fd for fd in (spec["control_fd"], spec["shared_fd"]) if fd is not None],
                process_group=0,  # Ctrl-C in a terminal reaches the supervisor only
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        worker.control = ours
        worker.ready = False
        worker.exit_status = None
        logger.info("started worker %d (pid %d)", worker.index, worker.process.pid)
