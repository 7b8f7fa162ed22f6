"""With the database or Redis hanging, real daphne and uvicorn processes still answer in time.

The database and Redis are a blackhole (accept, never answer), the worst case for a client.
``/healthz/live`` answers 200, ``/healthz/ready`` (and ``/healthz/``) 503 within
``HEALTH_CHECK_TIMEOUT``, and the carriers' webhooks within ``WEBHOOK_DEADLINE``: Twilio's voice
webhook with the apology TwiML, Telnyx's with a 503 it retries. Margins are generous (3 s over
the limit), for a busy machine; before this, ``/healthz/`` took over 10 s and the voice webhook
12.8 s.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest

from tests.fakes import telnyx as fake_telnyx
from tests.fakes import twilio as fake_twilio

from .blackhole import Blackhole
from .running import SERVERS, seed, server_env, start_server
from .seed import AUTH_TOKEN, OUR_NUMBER

HEALTH_CHECK_TIMEOUT = 1.0
WEBHOOK_DEADLINE = 2.0
#: Slack for a busy 2-core machine; the old code missed by far more.
MARGIN = 3.0
#: The database pool's wait in the hanging-database test (the default is 30 s, psycopg's).
SLOW_POOL = 6.0
#: The readiness URLs: the new one, and ``/healthz/`` kept for existing probes.
PROBES = ("/healthz/ready", "/healthz/")
TELNYX_KEY = fake_telnyx.keypair("outages")
ACCOUNT_SID = "AC" + "c" * 32  # tests.servers.seed's Twilio credential


def request(port: int, method: str, path: str, body: bytes = b"", headers=None):
    """``(status, body, seconds taken)`` of one HTTP request to the server."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        content = response.read()
    finally:
        connection.close()
    return response.status, content, time.monotonic() - started


def outage_env(tmp_path, **overrides: str) -> dict[str, str]:
    env = server_env(
        tmp_path,
        VOICEAGENTS_HEALTH_CHECK_TIMEOUT=str(HEALTH_CHECK_TIMEOUT),
        VOICEAGENTS_WEBHOOK_DEADLINE=str(WEBHOOK_DEADLINE),
        TELNYX_PUBLIC_KEY=TELNYX_KEY.public_b64,
    )
    env.update(overrides)
    return env


def assert_live(port: int) -> None:
    status, body, _ = request(port, "GET", "/healthz/live")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def twilio_voice_webhook(port: int):
    path = "/telephony/twilio/voice/"
    params = fake_twilio.voice_params(To=OUR_NUMBER, AccountSid=ACCOUNT_SID)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": fake_twilio.sign(fake_twilio.PUBLIC_URL + path, params, AUTH_TOKEN),
    }
    return request(port, "POST", path, urlencode(params).encode(), headers)


def telnyx_webhook(port: int):
    body = fake_telnyx.call_initiated(fake_telnyx.new_call_control_id())
    headers = {"Content-Type": "application/json", **fake_telnyx.signed_headers(body, TELNYX_KEY)}
    return request(port, "POST", fake_telnyx.WEBHOOK_PATH, body, headers)


@pytest.mark.parametrize("server", SERVERS)
def test_database_hanging(server, start_process, tmp_path):
    with Blackhole() as database:
        # The pool waits as long as the deadline: the probe must not wait for the pool.
        env = outage_env(
            tmp_path,
            DATABASE_URL=f"postgres://voice@127.0.0.1:{database.port}/voice",
            VOICEAGENTS_WEBHOOK_DEADLINE=str(SLOW_POOL),
            DATABASE_POOL_TIMEOUT=str(SLOW_POOL),
        )
        port, process = start_server(start_process, server, env)

        assert_live(port)
        # The probes, then the two webhooks, run at once (as a load balancer's and the carriers'
        # requests come): each waits out its own timeout, not the others'.
        with ThreadPoolExecutor(2) as pool:
            probes = list(pool.map(lambda path: request(port, "GET", path), PROBES))
        for status, body, took in probes:
            assert status == 503, body
            assert json.loads(body) == {
                "status": "unavailable",
                "database": "down",
                "channel_layer": "ok",
                "live_calls": 0,
            }
            assert took < HEALTH_CHECK_TIMEOUT + MARGIN
        assert database.accepted >= 1  # the probe did try the database

        with ThreadPoolExecutor(2) as pool:
            twilio = pool.submit(twilio_voice_webhook, port)
            telnyx = pool.submit(telnyx_webhook, port)
            time.sleep(0.5)
            assert_live(port)  # while both wait on the pool
            status, body, took = twilio.result()
        assert status == 200, body
        assert b"<Say>" in body and b"<Hangup />" in body, body
        assert b"<Stream" not in body
        assert took < SLOW_POOL + MARGIN

        status, body, took = telnyx.result()
        assert status == 503, body
        assert took < SLOW_POOL + MARGIN

        assert_live(port)  # the stuck work holds no thread that liveness needs
        process.check_alive()
        log = process.output()
        assert "health check: database is down" in log, log
        assert "answered: the apology TwiML" in log, log


@pytest.mark.parametrize("server", SERVERS)
def test_voice_webhook_answers_in_time_while_the_database_is_locked(
    server, start_process, tmp_path
):
    """A slow database, not a dead one: the webhook's write waits on a lock (SQLite would wait
    20 s). Only the deadline answers in time; the late work still completes once the lock goes."""
    env = outage_env(tmp_path)
    seed(env)
    port, process = start_server(start_process, server, env)
    locker = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        status, body, took = twilio_voice_webhook(port)
        assert status == 200, body
        assert b"<Say>" in body and b"<Hangup />" in body, body
        assert took < WEBHOOK_DEADLINE + MARGIN
        assert_live(port)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    process.wait_for_output("the late work finished after the deadline", timeout=30)
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        (calls,) = db.execute("select count(*) from voiceagents_call").fetchone()
    assert calls == 1  # recorded once the database let it, not lost
    assert "Traceback" not in process.output()


@pytest.mark.parametrize("server", SERVERS)
def test_redis_hanging(server, start_process, tmp_path):
    with Blackhole() as redis:
        env = outage_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{redis.port}/0")
        seed(env)
        port, process = start_server(start_process, server, env)

        assert_live(port)
        status, body, took = request(port, "GET", "/healthz/ready")
        assert status == 503, body
        assert json.loads(body) == {
            "status": "unavailable",
            "database": "ok",
            "channel_layer": "down",
            "live_calls": 0,
        }
        assert took < HEALTH_CHECK_TIMEOUT + MARGIN
        assert redis.accepted >= 1
        assert_live(port)
        process.check_alive()


@pytest.mark.parametrize("server", SERVERS)
def test_database_refusing_connections(server, start_process, tmp_path):
    """A database whose port is closed: the webhook's connection fails at once; still an apology."""
    with Blackhole() as closed:
        pass  # its port is now closed: connections are refused
    env = outage_env(tmp_path, DATABASE_URL=f"postgres://voice@127.0.0.1:{closed.port}/voice")
    port, process = start_server(start_process, server, env)

    status, body, _ = twilio_voice_webhook(port)
    assert status == 200, body
    assert b"<Say>" in body and b"<Hangup />" in body, body
    status, body, _ = request(port, "GET", "/healthz/ready")
    assert status == 503 and json.loads(body)["database"] == "down", body
    process.check_alive()
