"""The control plane across OS processes: a real daphne or uvicorn process holds live Twilio calls
on channels-redis, and this test process says, transfers and hangs up through
``send_call_command``, as the admin, a Celery worker or a shell in another process would.

The server talks to the fake OpenAI Realtime (the provider) and the fake Twilio REST API (the
transfer's call update); this process plays Twilio's media streams.
"""

from __future__ import annotations

import json
import sqlite3
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.fakes.openai_realtime import FakeOpenAIRealtime
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.integration.conftest import redis_url  # noqa: F401 - the fixture
from voiceagents.call import streamtokens
from voiceagents.call.control import send_call_command

from .calls import LoopThread, call_row
from .running import SERVERS, seed, server_env, start_server
from .seed import AUTH_TOKEN, OUR_NUMBER
from .test_stream_refusals import TWILIO, twilio_headers, twilio_start

TARGET = "+14155550123"
TIMEOUT = 15.0


def wait(predicate, timeout: float = TIMEOUT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)
    return value


@contextmanager
def open_stream(port: int, call: dict):
    """Twilio's side of one call: the stream, started."""
    with connect(f"ws://127.0.0.1:{port}{TWILIO}", additional_headers=twilio_headers()) as ws:
        token = streamtokens.mint(call["call_id"])
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(json.dumps(twilio_start(call["call_id"], token, call["call_sid"])))
        yield ws


def wait_closed(ws) -> int | None:
    """Read (and drop) agent audio until the server closes the stream; its close code."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=TIMEOUT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    raise AssertionError("the server did not close the stream")


def transfer_events(tmp_path, call_id: str) -> list[dict]:
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        rows = db.execute(
            "select data from voiceagents_callevent where call_id = ? and kind = 'transfer'",
            (call_id.replace("-", ""),),
        ).fetchall()
    return [json.loads(data) for (data,) in rows]


@pytest.mark.integration
@pytest.mark.parametrize("kind", SERVERS)
def test_say_transfer_and_hang_up_from_another_process(
    redis_url,  # noqa: F811
    start_process,
    tmp_path,
    kind,
):
    loop = LoopThread()
    openai = FakeOpenAIRealtime(api_key="sk-test-openai")
    loop.run(openai.__aenter__())
    twilio = FakeTwilioAPI(account_sid="AC" + "c" * 32, auth_token=AUTH_TOKEN)
    try:
        with twilio:
            env = server_env(
                tmp_path,
                redis_url=redis_url,
                TWILIO_API_URL=twilio.url,
                VOICEAGENTS_TRANSFER_ALLOWED_NUMBERS=TARGET,
            )
            first, second = seed(env, openai_url=openai.url, calls=2)
            port, server = start_server(start_process, kind, env)

            # Say, then hang up, on the first call.
            with open_stream(port, first) as ws:
                wait(lambda: openai.sessions and openai.session_ready.is_set(), what="provider")
                send_call_command(first["call_id"], "say", text="Your table is ready.")
                wait(
                    lambda: any(
                        "Your table is ready." in (e.get("response") or {}).get("instructions", "")
                        for e in openai.events_of("response.create")
                    ),
                    what="the say reaching the provider",
                )
                send_call_command(first["call_id"], "hangup", reason="operator_hangup")
                wait_closed(ws)
            row = call_row(tmp_path, first["call_id"])
            assert (row["status"], row["end_reason"]) == ("completed", "operator_hangup")

            # Transfer the second call: Twilio's call update dials the target with our number.
            with open_stream(port, second) as ws:
                wait(lambda: len(openai.sessions) == 2, what="the second provider session")
                wait(lambda: openai.sessions[1].config, what="the second session's update")
                send_call_command(second["call_id"], "transfer", number=TARGET)
                (form,) = wait(lambda: twilio.updates_of(second["call_sid"]), what="the update")
                wait_closed(ws)
            dial = ET.fromstring(form["Twiml"][0]).find("Dial")
            assert (dial.find("Number").text, dial.get("callerId")) == (TARGET, OUR_NUMBER)
            row = call_row(tmp_path, second["call_id"])
            assert (row["status"], row["end_reason"]) == ("completed", "transferred")
            (event,) = transfer_events(tmp_path, second["call_id"])
            assert event["done"] is True and event["by"] == "operator"
            server.check_alive()
    finally:
        loop.run(openai.__aexit__(None, None, None))
        loop.stop()
