"""Real ASGI server processes (daphne, uvicorn) serving the project, for socket-level tests.

Each server gets its own SQLite database in a temporary directory, migrated (and seeded) by
``tests.servers.seed`` in a subprocess with the same environment, so the test process never
shares a database connection with it. The channel layer is the in-memory one unless
``REDIS_URL`` is given.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import REPO_ROOT, free_port, subprocess_env

from .seed import AUTH_TOKEN

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


def seed(
    env: dict[str, str],
    *,
    openai_url: str | None = None,
    calls: int = 0,
    elevenlabs_url: str | None = None,
    pipeline: dict | None = None,
) -> list[dict]:
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
