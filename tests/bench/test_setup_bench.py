"""The scale-out pieces of the bench: a server's CPU summed over its worker processes, the set-up
burst against the real server with two workers, and the PostgreSQL + Redis stack (a scratch
database per level, dropped after it). No latency is asserted: what is checked is that the
figures are there and add up (every call got audio, its row is final, CPU per call is positive,
the calls per worker sum to the calls)."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench import calls, proctree, setup, stack

#: A parent that starts two children; each burns 0.3 s of its own CPU, then waits for stdin.
SPINNERS = textwrap.dedent(
    """
    import subprocess, sys, time
    if sys.argv[1:] == ["child"]:
        while time.process_time() < 0.3:
            pass
        print("spun", flush=True)
        sys.stdin.readline()
    else:
        kids = [subprocess.Popen([sys.executable, __file__, "child"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
        for kid in kids:
            kid.stdout.readline()
        print("ready", flush=True)
        sys.stdin.readline()
        for kid in kids:
            kid.communicate("\\n")
        print("reaped", flush=True)
        sys.stdin.readline()
    """
)


def test_process_tree_cpu_counts_the_workers_alive_and_exited(tmp_path):
    script = tmp_path / "spin.py"
    script.write_text(SPINNERS)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout.readline().strip() == "ready"
        assert proctree.processes(parent.pid) == 3
        own_cpu = proctree._cpu(parent.pid)
        cpu, rss = proctree.stat(parent.pid)
        assert cpu >= own_cpu + 0.55  # two children of 0.3 s each (clock ticks of 10 ms)
        assert rss > 0
        parent.stdin.write("\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "reaped"
        assert proctree.processes(parent.pid) == 1
        # The exited children's CPU is still counted, once (the parent's cutime + cstime).
        after, _ = proctree.stat(parent.pid)
        assert after >= cpu - 0.02
        assert after < cpu + 0.3
    finally:
        parent.kill()
        parent.wait(10)
    gone_cpu, gone_rss = proctree.stat(parent.pid)
    assert math.isnan(gone_cpu) and gone_rss == 0


def _sane(result: dict, calls: int, workers: int) -> None:
    assert result["failed"] == 0, result["failures"]
    assert result["calls"] == calls
    assert result["first_audio"]["n"] == calls  # every call got the greeting's audio
    assert result["webhook"]["n"] == calls
    assert result["rows_final_in_time"] and result["rows_not_final"] == 0
    assert result["setup_cpu_ms"] > 0
    assert 0 < result["media_ms"] < result["setup_cpu_ms"]
    assert result["messages_per_call"] >= 5  # at least the greeting's frames came back
    assert sum(result["worker_calls"].values()) == calls
    assert len([w for w in result["worker_calls"] if w]) <= workers
    assert result["workers"] == workers


@pytest.mark.parametrize("server", ["uvicorn", "serve"])
def test_setup_burst_on_the_real_server_with_two_workers(server):
    """uvicorn --workers 2, and our launcher (voiceagents.serve) with two workers."""
    (result,) = setup.main(
        [
            *("--server", server, "--rate", "5", "--seconds", "1", "--workers", "2"),
            *("--warmup", "2", "--idle", "0.5", "--json", ""),
        ]
    )
    _sane(result, calls=5, workers=2)
    assert result["stack"] == "sqlite" and result["server"] == server


def _admin_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme not in ("postgres", "postgresql"):
        if os.environ.get("INTEGRATION_REQUIRED", "") not in ("", "0"):
            pytest.fail("DATABASE_URL is not a PostgreSQL URL (INTEGRATION_REQUIRED is set)")
        pytest.skip("DATABASE_URL is not a PostgreSQL URL: run `make test-integration`")
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def _bench_databases(admin: str) -> set[str]:
    import psycopg

    with psycopg.connect(admin) as db:
        rows = db.execute("SELECT datname FROM pg_database WHERE datname LIKE 'va_bench_%'")
        return {name for (name,) in rows.fetchall()}


@pytest.mark.integration
def test_setup_burst_on_postgres_and_redis_drops_its_scratch_database():
    admin = _admin_url()
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        pytest.skip("REDIS_URL is not set: run `make test-integration`")
    why = stack.unreachable(admin, redis_url)
    if why:
        pytest.skip(why)
    before = _bench_databases(admin)
    (result,) = setup.main(
        [
            *("--stack", "postgres+redis", "--postgres-url", admin, "--redis-url", redis_url),
            *("--rate", "5", "--seconds", "1", "--warmup", "1", "--idle", "0.5", "--json", ""),
        ]
    )
    _sane(result, calls=5, workers=1)
    assert result["stack"] == "postgres+redis"
    # The level's database is gone (another bench may be running: compare names, not counts).
    time.sleep(0.2)
    assert _bench_databases(admin) <= before


@pytest.mark.parametrize("server", ["reference-uvloop", "reference-uvicorn"])
def test_setup_burst_against_the_reference_bridge_in_two_processes(server):
    """The floors that docs/benchmarks.md compares with: the reference bridge on uvloop, and as
    an ASGI app under uvicorn, in two processes sharing the port. They keep no rows: CPU is
    read when the last call has closed."""
    (result,) = setup.main(
        [
            *("--server", server, "--rate", "5", "--seconds", "1", "--workers", "2"),
            *("--warmup", "2", "--idle", "0.5", "--json", ""),
        ]
    )
    assert result["failed"] == 0, result["failures"]
    assert result["calls"] == 5 and result["first_audio"]["n"] == 5
    assert result["rows_missing"] == 0 and not result["rows_final_in_time"]
    assert result["worker_calls"] == {} and result["workers"] == 2
    assert result["setup_cpu_ms"] > 0


def test_the_reference_bridge_runs_its_workers_and_stops_them_all():
    port = calls.free_port()
    bridge = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.reference", "--port", str(port), "--workers", "2"),
            *("--uvloop", "--provider", "ws://127.0.0.1:9/v1/realtime"),
        ],
        cwd=calls.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bridge.stdout.readline().split() == ["PORT", str(port)]
        assert calls.wait_http(f"http://127.0.0.1:{port}/healthz/", 20)
        assert proctree.processes(bridge.pid) == 3
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(10) == 0
    finally:
        bridge.kill()
    with pytest.raises(ConnectionRefusedError):  # no worker was left behind on the port
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
