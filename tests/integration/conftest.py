"""Shared helpers of the integration tests: service URLs, free ports, managed subprocesses.

These tests need the real PostgreSQL and Redis (``make test-integration`` sets ``DATABASE_URL`` and
``REDIS_URL``). Without them they skip with the reason; with ``INTEGRATION_REQUIRED=1`` (set by
``.ci/run``) a missing service is a failure instead, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "psql"}


def _skip_or_fail(reason: str):
    if os.environ.get("INTEGRATION_REQUIRED", "") not in ("", "0"):
        pytest.fail(f"{reason} (INTEGRATION_REQUIRED is set, so this is not a skip)")
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> str:
    """REDIS_URL; the test skips when it is unset. tests.settings built channels-redis from it."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        _skip_or_fail("REDIS_URL is not set: run `make test-integration` (or .ci/run)")
    return url


@pytest.fixture
def postgres_database_url() -> str:
    """DATABASE_URL when it names PostgreSQL; the test skips otherwise."""
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme not in POSTGRES_SCHEMES:
        _skip_or_fail(
            "DATABASE_URL is not a PostgreSQL URL: run `make test-integration` (or .ci/run)"
        )
    return url


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (prefer letting the server bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


#: Where helper processes keep compiled modules, outside the source tree: each server a test
#: starts imports the whole project, and compiling it every time (with bytecode writing off) cost
#: ~0.25 s of its ~1.7 s start-up. Python checks each file against its source, as in __pycache__.
PYCACHE = Path(tempfile.gettempdir()) / "voiceagents-tests-pycache"


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment of a helper process: test settings, the repository importable."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        PYTHONPYCACHEPREFIX=str(PYCACHE),
    )
    env.update(overrides)
    return env


class ManagedProcess:
    """A subprocess whose combined output goes to a temp file, for waiting and failure messages."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path = REPO_ROOT):
        self.name = name
        self.args = args
        self._log = tempfile.NamedTemporaryFile(prefix=f"it-{name}-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of pytest is handled by stop(), not sent twice
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        status = self.proc.poll()
        state = "running" if status is None else f"exited {status}"
        return f"{self.name} (pid {self.pid}, {state}): {' '.join(self.args)}\n{self.output()}"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} died early\n--- output ---\n{self.describe()}")

    def wait_for_output(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Wait until the output matches ``pattern``; fail with the output on death or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output())
            if match:
                return match
            self.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.name} printed nothing matching {pattern!r} within {timeout} s\n"
                    f"--- output ---\n{self.describe()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (graceful), then SIGKILL after ``timeout``; always reaps the process."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


@pytest.fixture
def start_process(request) -> Iterator[Callable[..., ManagedProcess]]:
    """``start_process(name, args, env=...)``: every process started is stopped at teardown.

    On a failed test, each process's output is attached to the report.
    """
    started: list[ManagedProcess] = []

    def start(name: str, args: list[str], env: dict[str, str] | None = None, **kwargs):
        process = ManagedProcess(name, args, env if env is not None else subprocess_env(), **kwargs)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            request.node.add_report_section("call", f"output of {process.name}", process.describe())
        process.cleanup()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
