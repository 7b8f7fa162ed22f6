"""SIGTERM to a uvicorn process with live calls: it takes no new connection, lets the calls go on
to their natural end with their recordings, then exits (telephony.draining)."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
import wave
from pathlib import Path

from tests.fakes.openai_realtime import FakeOpenAIRealtime

from .calls import LoopThread
from .running import seed, server_env, start_server
from .test_kill_recovery import Caller

CALLS = 10


def rows(db: Path, sql: str, *args):
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(sql, args).fetchall()


def connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_sigterm_drains_live_calls_then_exits(start_process, tmp_path):
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    media_root = tmp_path / "media"
    env = server_env(tmp_path, TEST_MEDIA_ROOT=str(media_root))
    calls = seed(env, openai_url=fake.url, calls=CALLS)
    port, process = start_server(start_process, "uvicorn", env)
    callers = [Caller(port, call) for call in calls]
    try:
        for caller in callers:
            caller.start()
        loop.run(
            fake.wait_for(lambda: len([s for s in fake.sessions if s.config]) == CALLS), timeout=30
        )
        process.proc.send_signal(signal.SIGTERM)
        process.wait_for_output("draining: no new calls", timeout=10)
        # No new connection is taken (a load balancer or the carrier's retry goes elsewhere)...
        deadline = time.monotonic() + 5
        while connects(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not connects(port)
        # ...while the live calls go on: the process stays, their audio keeps flowing.
        sent_before = [caller.frames_sent for caller in callers]
        time.sleep(1.5)
        assert process.proc.poll() is None, process.output()
        assert all(not caller.gone.is_set() for caller in callers)
        assert all(c.frames_sent > s for c, s in zip(callers, sent_before, strict=True))
        audio_before = [len(s.audio_in) for s in fake.sessions]
        time.sleep(0.5)
        assert all(len(s.audio_in) > b for s, b in zip(fake.sessions, audio_before, strict=True))
        # The callers hang up, one after another; then the process stops by itself.
        for caller in callers:
            caller.hang_up.set()
            caller.gone.wait(10)
        # uvicorn ends as a SIGTERM'd process does (it raises the signal again once shut down).
        assert process.proc.wait(30) in (0, -signal.SIGTERM), process.output()
    finally:
        for caller in callers:
            caller.hang_up.set()
        loop.run(fake.__aexit__(None, None, None))
        loop.stop()
    assert "draining: every call has ended; stopping" in process.output()
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
