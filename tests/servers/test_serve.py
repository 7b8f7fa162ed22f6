"""``python -m voiceagents.serve`` through real processes: two workers behind one port (SQLite,
in-memory channel layer). SIGTERM to the launcher during live calls drains them; a worker killed
with SIGKILL is replaced while the other keeps the port serving; a worker that cannot start stops
the launcher. The spread of calls over the workers on PostgreSQL and Redis: test_workers.py."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import urllib.request
import wave
from pathlib import Path

from tests.fakes.openai_realtime import FakeOpenAIRealtime
from tests.integration.conftest import REPO_ROOT, free_port

from .calls import LoopThread
from .running import LAUNCHER_READY, seed, server_env, start_launcher
from .test_draining import connects, rows
from .test_kill_recovery import Caller

CALLS = 10
WORKERS = 2


def wait_until(condition, timeout: float, describe) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, describe()
        time.sleep(0.1)


def live_answers(port: int, requests: int = 20) -> list[int]:
    """Status of ``requests`` liveness checks, each on a new connection (new source port)."""
    statuses = []
    for _ in range(requests):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/live", timeout=10) as reply:
            statuses.append(reply.status)
    return statuses


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return {int(child) for child in listing.read().split()}


def assert_ended(tmp_path: Path, calls: list[dict], end_reason: str) -> None:
    """Every call's row is completed with ``end_reason``."""
    for call in calls:
        (row,) = rows(
            tmp_path / "db.sqlite3",
            "select status, end_reason from voiceagents_call where id = ?",
            call["call_id"].replace("-", ""),
        )
        assert (row["status"], row["end_reason"]) == ("completed", end_reason), dict(row)


def test_sigterm_to_the_launcher_drains_live_calls_then_exits_0(start_process, tmp_path):
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    media_root = tmp_path / "media"
    env = server_env(tmp_path, TEST_MEDIA_ROOT=str(media_root))
    calls = seed(env, openai_url=fake.url, calls=CALLS)
    port, process = start_launcher(start_process, env, workers=WORKERS)
    callers = [Caller(port, call) for call in calls]
    try:
        for caller in callers:
            caller.start()
        loop.run(
            fake.wait_for(lambda: len([s for s in fake.sessions if s.config]) == CALLS), timeout=30
        )
        process.proc.send_signal(signal.SIGTERM)
        wait_until(
            lambda: process.output().count("draining: no new calls") == WORKERS,
            10,
            process.describe,
        )
        # Every worker has closed its listening socket: a new call finds nobody (a load
        # balancer or the carrier's retry goes to another host)...
        wait_until(lambda: not connects(port), 5, process.describe)
        # ...while the live calls go on: the workers stay, the calls' audio keeps flowing.
        sent_before = [caller.frames_sent for caller in callers]
        time.sleep(1.5)
        assert process.proc.poll() is None, process.output()
        assert all(not caller.gone.is_set() for caller in callers)
        assert all(c.frames_sent > s for c, s in zip(callers, sent_before, strict=True))
        audio_before = [len(s.audio_in) for s in fake.sessions]
        time.sleep(0.5)
        assert all(len(s.audio_in) > b for s, b in zip(fake.sessions, audio_before, strict=True))
        assert not connects(port)
        # The callers hang up, one after another; then the workers and the launcher stop.
        for caller in callers:
            caller.hang_up.set()
            caller.gone.wait(10)
        assert process.proc.wait(30) == 0, process.output()
    finally:
        for caller in callers:
            caller.hang_up.set()
        loop.run(fake.__aexit__(None, None, None))
        loop.stop()
    output = process.output()
    assert output.count("draining: every call has ended; stopping") == WORKERS, output
    assert len(re.findall(r"worker \d \(pid \d+\) exited with status 0", output)) == WORKERS
    db = tmp_path / "db.sqlite3"
    for call in calls:
        (row,) = rows(
            db,
            "select status, end_reason, recording from voiceagents_call where id = ?",
            call["call_id"].replace("-", ""),
        )
        assert (row["status"], row["end_reason"]) == ("completed", "caller_hangup"), dict(row)
        with wave.open(str(media_root / row["recording"]), "rb") as wav:
            assert wav.getnframes() / 8000 > 2.0  # the whole call, drain included


def test_a_second_sigterm_stops_at_once(start_process, tmp_path):
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    env = server_env(tmp_path, TEST_MEDIA_ROOT=str(tmp_path / "media"))
    calls = seed(env, openai_url=fake.url, calls=2)
    port, process = start_launcher(start_process, env, workers=WORKERS)
    callers = [Caller(port, call) for call in calls]
    try:
        for caller in callers:
            caller.start()
        loop.run(fake.wait_for(lambda: len([s for s in fake.sessions if s.config]) == 2), 30)
        process.proc.send_signal(signal.SIGTERM)
        wait_until(
            lambda: process.output().count("draining: no new calls") == WORKERS,
            10,
            process.describe,
        )
        time.sleep(1.5)  # signals less than 1 s apart are one stop (worker.SAME_REQUEST_WITHIN)
        process.proc.send_signal(signal.SIGTERM)
        # The callers never hang up: the workers end their calls and stop without them.
        assert process.proc.wait(30) == 0, process.output()
        assert all(caller.gone.wait(10) for caller in callers)
    finally:
        for caller in callers:
            caller.hang_up.set()
        loop.run(fake.__aexit__(None, None, None))
        loop.stop()
    assert "SIGTERM again: the workers stop now" in process.output()
    assert_ended(tmp_path, calls, "stream_closed")


def test_calls_still_live_after_drain_timeout_are_ended(start_process, tmp_path):
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    env = server_env(
        tmp_path, TEST_MEDIA_ROOT=str(tmp_path / "media"), VOICEAGENTS_DRAIN_TIMEOUT="1"
    )
    calls = seed(env, openai_url=fake.url, calls=2)
    port, process = start_launcher(start_process, env, workers=WORKERS)
    callers = [Caller(port, call) for call in calls]
    try:
        for caller in callers:
            caller.start()
        loop.run(fake.wait_for(lambda: len([s for s in fake.sessions if s.config]) == 2), 30)
        process.proc.send_signal(signal.SIGTERM)
        # The callers never hang up: after DRAIN_TIMEOUT the workers stop anyway.
        assert process.proc.wait(30) == 0, process.output()
        assert all(caller.gone.wait(10) for caller in callers)
    finally:
        for caller in callers:
            caller.hang_up.set()
        loop.run(fake.__aexit__(None, None, None))
        loop.stop()
    assert "still live after 1 s; stopping anyway" in process.output()
    assert_ended(tmp_path, calls, "stream_closed")


def test_one_stop_signalled_to_every_process_still_drains(start_process, tmp_path):
    """systemd's default KillMode signals the launcher and its workers at once (the unit in
    deploy/ sets KillMode=mixed; this is the case of one that does not)."""
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    env = server_env(tmp_path, TEST_MEDIA_ROOT=str(tmp_path / "media"))
    calls = seed(env, openai_url=fake.url, calls=2)
    port, process = start_launcher(start_process, env, workers=WORKERS)
    callers = [Caller(port, call) for call in calls]
    try:
        for caller in callers:
            caller.start()
        loop.run(fake.wait_for(lambda: len([s for s in fake.sessions if s.config]) == 2), 30)
        workers = children(process.pid)
        process.proc.send_signal(signal.SIGTERM)
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        sent_before = [caller.frames_sent for caller in callers]
        time.sleep(1.5)
        assert process.proc.poll() is None, process.output()
        assert all(c.frames_sent > s for c, s in zip(callers, sent_before, strict=True))
        for caller in callers:
            caller.hang_up.set()
            caller.gone.wait(10)
        assert process.proc.wait(30) == 0, process.output()
    finally:
        for caller in callers:
            caller.hang_up.set()
        loop.run(fake.__aexit__(None, None, None))
        loop.stop()
    assert "again" not in process.output()
    assert_ended(tmp_path, calls, "caller_hangup")


def test_workers_of_a_killed_launcher_drain_and_exit(start_process, tmp_path):
    env = server_env(tmp_path)
    seed(env)
    port, process = start_launcher(start_process, env, workers=WORKERS)
    workers = children(process.pid)
    process.proc.kill()
    process.proc.wait(10)

    def alive(pid: int) -> bool:
        """Running (an orphan that exited is a zombie until whoever adopted it reaps it)."""
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rpartition(")")[2].split()[0] != "Z"
        except FileNotFoundError:
            return False

    wait_until(lambda: not any(alive(pid) for pid in workers), 20, process.describe)
    assert process.output().count("the supervisor exited: draining") == WORKERS
    assert not connects(port)


def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(start_process, tmp_path):
    env = server_env(tmp_path)
    seed(env)
    port, process = start_launcher(start_process, env, workers=WORKERS)  # --port 0: logged
    started = dict(re.findall(r"started worker (\d) \(pid (\d+)\)", process.output()))
    assert children(process.pid) == {int(pid) for pid in started.values()}
    assert live_answers(port) == [200] * 20

    victim = int(started["1"])
    os.kill(victim, signal.SIGKILL)
    # Once the launcher has reaped it, its socket is gone: the other worker takes every call.
    process.wait_for_output(rf"worker 1 \(pid {victim}\) was killed by SIGKILL", timeout=10)
    assert live_answers(port) == [200] * 20
    # The launcher starts a new worker 1, a direct child like the first, and it serves too.
    match = process.wait_for_output(rf"started worker 1 \(pid (?!{victim}\))(\d+)\)", timeout=10)
    replacement = int(match.group(1))
    process.wait_for_output(rf"\[{replacement}\]: worker 1 serving on", timeout=60)
    assert children(process.pid) == {int(started["2"]), replacement}
    assert live_answers(port) == [200] * 20
    # Each worker froze its start-up objects (patter_site/asgi.py), the replacement too.
    assert process.output().count("froze") == WORKERS + 1
    # Dying again soon after its start, worker 1 is restarted after a pause.
    os.kill(replacement, signal.SIGKILL)
    process.wait_for_output(
        rf"worker 1 \(pid {replacement}\) was killed by SIGKILL after \d+ s; restarting it in 1 s"
    )
    match = process.wait_for_output(
        rf"started worker 1 \(pid (?!{victim}\)|{replacement}\))(\d+)\)", 10
    )
    process.wait_for_output(rf"\[{match.group(1)}\]: worker 1 serving on", timeout=60)
    assert process.stop() == 0, process.output()


def test_shared_socket_workers_serve_and_stop(start_process, tmp_path):
    env = server_env(tmp_path)
    seed(env)
    args = [sys.executable, "-m", "voiceagents.serve", "--shared-socket", "--host", "127.0.0.1"]
    args += ["--port", "0", "--workers", str(WORKERS)]
    process = start_process("voiceagents.serve", args, env=env)
    port = int(process.wait_for_output(LAUNCHER_READY, timeout=60).group(1))
    assert "one shared listening socket" in process.output()
    assert live_answers(port) == [200] * 20
    assert process.stop() == 0, process.output()
    assert not connects(port)


def test_the_procfiles_web_process_serves_with_two_workers(start_process, tmp_path):
    """deploy/Procfile's web line, run as a Procfile runner runs it (a shell, PORT set)."""
    procfile = (REPO_ROOT / "deploy" / "Procfile").read_text()
    (web,) = [line[len("web:") :] for line in procfile.splitlines() if line.startswith("web:")]
    env = server_env(tmp_path, PORT=str(free_port()), WEB_CONCURRENCY=str(WORKERS))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    seed(env)
    assert "--host 0.0.0.0" in web
    command = web.replace("--host 0.0.0.0", "--host 127.0.0.1")  # tests stay on the loopback
    process = start_process("procfile-web", ["bash", "-c", f"exec {command.strip()}"], env=env)
    match = process.wait_for_output(LAUNCHER_READY, 60)
    assert match.groups() == (env["PORT"], str(WORKERS))
    assert live_answers(int(env["PORT"])) == [200] * 20
    assert process.stop() == 0, process.output()


def test_a_worker_that_cannot_start_stops_the_launcher(start_process, tmp_path):
    env = server_env(tmp_path)
    args = [sys.executable, "-m", "voiceagents.serve", "tests.servers.no_such_module:app"]
    args += ["--host", "127.0.0.1", "--port", "0", "--workers", str(WORKERS)]
    process = start_process("voiceagents.serve", args, env=env)
    assert process.proc.wait(60) == 1, process.output()
    assert "before it served: stopping" in process.output()
