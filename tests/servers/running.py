"""Real ASGI server processes (daphne, uvicorn) serving the project, for socket-level tests.

Each server gets its own SQLite database in a temporary directory, migrated (and seeded) by
``tests.servers.seed`` in a subprocess with the same environment, so the test process never
shares a database connection with it. That subprocess stays for the next test's database (see
``Seeder``). The channel layer is the in-memory one unless ``REDIS_URL`` is given.
"""

from __future__ import annotations

import atexit
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tests.integration.conftest import REPO_ROOT, ManagedProcess, free_port, subprocess_env

from .seed import AUTH_TOKEN, OUR_NUMBER

APP = "patter_site.asgi:application"
SERVERS = ("daphne", "uvicorn")
PUBLIC_URL = "https://voice.example.test"  # tests/settings.py


def server_env(tmp: Path, *, redis_url: str = "", **extra: str) -> dict[str, str]:
    return subprocess_env(
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        REDIS_URL=redis_url,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        VOICEAGENTS_RECORDING_TMP_DIR=str(tmp),
        **extra,
    )


#: Environment variables a seed may differ in and still share a ``Seeder``: the database (one per
#: request), settings read at use (``VOICEAGENTS_*`` through ``get_setting``, from the request's
#: environment), the media directory (a seed writes no file) and pytest's name of the test. The
#: others are read when Django starts (``patter_site.settings``): another value, another process.
PER_REQUEST = {"DATABASE_URL", "MEDIA_ROOT", "TEST_MEDIA_ROOT", "PYTEST_CURRENT_TEST"}
#: Others that a seed does not depend on either: vendor settings read at use, like
#: ``VOICEAGENTS_*`` (``voiceagents.conf``: ``<VENDOR>_<NAME>``), the launcher's (``PORT``,
#: ``WEB_CONCURRENCY``, ``PATH``: the seeder starts no program), and the stall test's signal
#: handler (tests/settings.py installs it at start; a seed never signals itself). Each of these
#: used to cost a seeder of its own: a Django start-up and a migration, ~1.5 s.
SEED_IGNORES = {
    "TELNYX_PUBLIC_KEY",
    "TWILIO_API_URL",
    "PORT",
    "WEB_CONCURRENCY",
    "PATH",
    "TEST_STALL_ON_SIGUSR1",
}
READ_AT_START = {"VOICEAGENTS_PUBLIC_URL", "VOICEAGENTS_CREDENTIALS_KEY"}
SEED_TIMEOUT = 120.0
SQLITE = "sqlite:///"


def _start_key(env: dict[str, str]) -> tuple:
    return tuple(
        sorted(
            (name, value)
            for name, value in env.items()
            if name not in PER_REQUEST
            and name not in SEED_IGNORES
            and not (name.startswith("VOICEAGENTS_") and name not in READ_AT_START)
        )
    )


class Seeder:
    """``python -m tests.servers.seed --serve``: Django started and the migrations run once, then
    a few ms per database instead of seconds for a process of its own each."""

    def __init__(self, env: dict[str, str]):
        self._log = tempfile.TemporaryFile(prefix="voiceagents-seeder-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.servers.seed", "--serve"],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )

    def _stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def seed(self, database: str, env: dict[str, str], **request) -> list[dict]:
        request.update(database=database, environ=env)
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        made = []
        watchdog = threading.Timer(SEED_TIMEOUT, self.proc.kill)  # readline() then ends
        watchdog.start()
        try:
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    raise AssertionError(
                        f"the seeder died or took over {SEED_TIMEOUT} s "
                        f"(exit {self.proc.wait()})\n{self._stderr()}"
                    )
                answer = json.loads(line)
                assert "error" not in answer, answer["error"]
                if answer.get("done"):
                    return made
                made.append(answer)
        finally:
            watchdog.cancel()

    def stop(self) -> None:
        self.proc.stdin.close()  # it exits at the end of its input
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


#: Live seeders by ``_start_key``; the oldest goes when a fourth is needed.
_seeders: dict[tuple, Seeder] = {}


@atexit.register
def _stop_seeders() -> None:
    while _seeders:
        _seeders.pop(next(iter(_seeders))).stop()


def _seeder(env: dict[str, str]) -> Seeder:
    key = _start_key(env)
    seeder = _seeders.pop(key, None)
    if seeder is None or seeder.proc.poll() is not None:
        seeder = Seeder(env)
    _seeders[key] = seeder  # the most recently used last
    while len(_seeders) > 3:
        _seeders.pop(next(iter(_seeders))).stop()
    return seeder


def seed(
    env: dict[str, str],
    *,
    openai_url: str | None = None,
    calls: int = 0,
    elevenlabs_url: str | None = None,
    pipeline: dict | None = None,
    our_number: str = OUR_NUMBER,
    agent_name: str = "Servers",
) -> list[dict]:
    url = env.get("DATABASE_URL", "")
    if url.startswith(SQLITE) and "?" not in url:  # options in the URL: a process of its own
        return _seeder(env).seed(
            url.removeprefix(SQLITE),
            env,
            openai_url=openai_url or "ws://127.0.0.1:9/v1/realtime",
            calls=calls,
            elevenlabs_url=elevenlabs_url or "",
            pipeline=pipeline,
            our_number=our_number,
            agent_name=agent_name,
        )
    assert (our_number, agent_name) == (OUR_NUMBER, "Servers"), "only through the seeder"
    args = [sys.executable, "-m", "tests.servers.seed", "--calls", str(calls)]
    if openai_url:
        args += ["--openai-url", openai_url]
    if elevenlabs_url:
        args += ["--elevenlabs-url", elevenlabs_url]
    if pipeline:
        args += ["--pipeline", json.dumps(pipeline)]
    done = subprocess.run(
        args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def start_server(start_process, kind: str, env: dict[str, str]):
    """Start ``kind`` on a free port; ``(port, process)`` once it listens."""
    port = free_port()
    if kind == "daphne":
        args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), APP]
        ready = r"Listening on TCP address"
    else:
        args = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
        args += ["--lifespan", "off", "--log-level", "info"]
        ready = r"Uvicorn running on"
    process = start_process(kind, args, env=env)
    process.wait_for_output(ready, timeout=30)
    return port, process


#: What ``voiceagents.serve`` logs once every worker serves; group 1 is the port.
LAUNCHER_READY = r"serving \S+ on http://127\.0\.0\.1:(\d+) with (\d+) worker"


def start_launcher(start_process, env: dict[str, str], *, workers: int = 2, port: int = 0):
    """Start ``python -m voiceagents.serve`` with ``workers``; ``(port, process)`` once all serve."""
    args = [sys.executable, "-m", "voiceagents.serve", APP, "--host", "127.0.0.1"]
    args += ["--port", str(port), "--workers", str(workers)]
    process = start_process("voiceagents.serve", args, env=env)
    match = process.wait_for_output(LAUNCHER_READY, timeout=60)
    return int(match.group(1)), process


class SharedServer:
    """A server process of ``kind`` with ``settings`` (environment variables), kept for every test
    that asks for the same (``shared_server`` in conftest.py): a start-up is a second, and most
    tests only need a server with the right settings and a number and agent of their own, not a
    process and a database of their own. It serves its own SQLite database (``db``, under
    ``dir``); ``restart_if_dead`` replaces a process that died, with the same database."""

    def __init__(self, kind: str, settings: dict[str, str]):
        self.kind = kind
        self.dir = Path(tempfile.mkdtemp(prefix=f"voiceagents-shared-{kind}-"))
        self.db = self.dir / "db.sqlite3"
        self.env = server_env(self.dir, **settings)
        seed(self.env)  # the database: migrated, with the default number (unused)
        self.process: ManagedProcess | None = None
        self.port = 0
        self.restart_if_dead()

    def restart_if_dead(self) -> None:
        if self.process is not None and self.process.proc.poll() is None:
            return
        if self.process is not None:
            self.process.cleanup()
        self.port, self.process = start_server(ManagedProcess, self.kind, self.env)

    def stop(self) -> None:
        if self.process is not None:
            self.process.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


#: A number and agent per test on shared servers: +1 555 001 xxxx, "Servers <n>".
_shared_numbers = itertools.count(1)


class SharedServerView:
    """What one test sees of a ``SharedServer``: the port, the environment (for seeding and for
    commands run against it), the database, the process with only the output written since the
    test began (``output``, ``describe``), and the number and agent of its own that ``seed``
    makes (``our_number``, ``agent_name``, ``agent_slug``)."""

    def __init__(self, server: SharedServer):
        self.server = server
        self.port, self.env, self.db, self.dir = server.port, server.env, server.db, server.dir
        self.proc = server.process.proc
        self.pid = server.process.pid
        self.name = server.process.name
        self._start = len(server.process.output())
        n = next(_shared_numbers)
        self.our_number = f"+1555001{n:04d}"
        self.agent_name = f"Servers {n}"
        self.agent_slug = f"servers-{n}"

    def seed(self, **kwargs) -> list[dict]:
        return seed(self.env, our_number=self.our_number, agent_name=self.agent_name, **kwargs)

    def output(self) -> str:
        return self.server.process.output()[self._start :]

    def check_alive(self) -> None:
        self.server.process.check_alive()

    def describe(self) -> str:
        status = self.proc.poll()
        state = "running" if status is None else f"exited {status}"
        return (
            f"shared {self.name} (pid {self.pid}, {state}), since this test began:\n{self.output()}"
        )
