"""Two worker processes of ``voiceagents.serve`` behind one port, on PostgreSQL and channels-redis:
calls land on both, and a hang-up sent from another OS process (this test's, as the admin's action
sends it) reaches the worker that holds each call."""

from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.fakes.openai_realtime import FakeOpenAIRealtime
from tests.integration.conftest import (  # noqa: F401 - the fixtures
    free_port,
    postgres_database_url,
    redis_url,
    subprocess_env,
)
from voiceagents.call.control import send_call_command

from .calls import LoopThread
from .running import seed, start_launcher
from .seed import AUTH_TOKEN
from .test_kill_recovery import Caller

CALLS = 16
WORKERS = 2


@contextmanager
def scratch_database(url: str):
    """A database of its own for the server processes (the test's own is pytest-django's)."""
    name = f"va_workers_{secrets.token_hex(4)}"
    admin = urlsplit(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def calls_of(url: str, ids: list[str]) -> dict[str, tuple[str, str, str]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "select id::text, status, end_reason, worker from voiceagents_call where id = any(%s)",
            (ids,),
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


@pytest.mark.integration
def test_calls_spread_over_two_workers_and_hang_up_from_another_process(
    redis_url,  # noqa: F811
    postgres_database_url,  # noqa: F811
    start_process,
    tmp_path,
):
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    with scratch_database(postgres_database_url) as database_url:
        env = subprocess_env(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            VOICEAGENTS_RECORDING_TMP_DIR=str(tmp_path),
            TEST_MEDIA_ROOT=str(tmp_path / "media"),
        )
        calls = seed(env, openai_url=fake.url, calls=CALLS)
        ids = [call["call_id"] for call in calls]
        port, server = start_launcher(start_process, env, workers=WORKERS, port=free_port())
        callers = [Caller(port, call) for call in calls]
        try:
            for caller in callers:
                caller.start()
                time.sleep(0.1)  # staggered, as calls arrive
            loop.run(
                fake.wait_for(lambda: len([s for s in fake.sessions if s.config]) == CALLS),
                timeout=30,
            )
            # A new call is claimed by its worker's heartbeat a moment after its start (claims
            # are batched: CLAIM_BATCH_S), so wait for every row to name its worker.
            deadline = time.monotonic() + 10
            live = calls_of(database_url, ids)
            while not all(worker for *_, worker in live.values()):
                assert time.monotonic() < deadline, live
                time.sleep(0.1)
                live = calls_of(database_url, ids)
            workers = {worker for _, _, worker in live.values()}
            # Every worker carries calls: the kernel spreads connections over the workers'
            # sockets by a hash of their addresses, so with 16 calls all on one of 2 workers
            # is about 1 in 30 000. How even the spread is, is a benchmark figure.
            assert len(workers) == WORKERS, live
            share = (
                max(sum(1 for *_, w in live.values() if w == worker) for worker in workers) / CALLS
            )
            print(f"calls per worker: largest share {share:.0%}")

            for call_id in ids:
                send_call_command(call_id, "hangup", reason="operator_hangup")
            deadline = time.monotonic() + 30
            while any(c[0] == "in_progress" for c in calls_of(database_url, ids).values()):
                assert time.monotonic() < deadline, calls_of(database_url, ids)
                time.sleep(0.2)
            for caller in callers:
                assert caller.gone.wait(10)
        finally:
            for caller in callers:
                caller.hang_up.set()
            stopped = server.stop()
            loop.run(fake.__aexit__(None, None, None))
            loop.stop()
        assert stopped == 0, server.output()  # every worker drained and exited cleanly
        ended = calls_of(database_url, ids)
        assert {(status, reason) for status, reason, _ in ended.values()} == {
            ("completed", "operator_hangup")
        }, ended
