"""Abuse limits through real daphne and uvicorn processes (``telephony.limits``).

One server per ASGI server, with ``MAX_CALLS_PER_PROCESS`` 1, ``MEDIA_CONNECTIONS_PER_IP`` 3 and
``WEBHOOK_RATE_PER_IP`` 4: while one call is live, a new call's webhook gets a busy ``<Reject>``
and a second stream's ``start`` is closed with ``AT_CAPACITY`` (the call failed, with its reason);
a fourth connection from the same address is refused at the upgrade; slots come back when
streams end; a flood of webhooks is cut off with 429. No traceback in the server's log.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from telephony import closecodes
from tests.fakes import twilio as fake
from tests.fakes.openai_realtime import FakeOpenAIRealtime
from voiceagents.call import streamtokens

from .calls import LoopThread, call_row
from .running import PUBLIC_URL, SERVERS, seed, server_env, start_server
from .seed import AUTH_TOKEN, OUR_NUMBER
from .test_stream_refusals import TWILIO, twilio_headers, twilio_start

VOICE = "/telephony/twilio/voice/"
#: Seconds to wait for the server: generous, so that a busy machine only makes the test slower.
PATIENCE = 60.0


@pytest.fixture
def openai():
    thread = LoopThread()
    fake_openai = thread.run(FakeOpenAIRealtime().__aenter__())
    yield fake_openai
    thread.run(fake_openai.__aexit__(None, None, None))
    thread.stop()


def post_voice(port: int, *, signed: bool) -> tuple[int, bytes]:
    params = fake.voice_params(AccountSid="AC" + "c" * 32, To=OUR_NUMBER)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        validator = RequestValidator(AUTH_TOKEN)
        headers["X-Twilio-Signature"] = validator.compute_signature(PUBLIC_URL + VOICE, params)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{VOICE}", urlencode(params).encode(), headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def open_stream(port: int, sockets: ExitStack, deadline: float = PATIENCE):
    """A signed Twilio stream socket, waiting for slots freed by closed ones (up to ``deadline``)."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            ws = connect(
                f"ws://127.0.0.1:{port}{TWILIO}",
                additional_headers=twilio_headers(),
                open_timeout=PATIENCE,
            )
            return sockets.enter_context(ws)
        except InvalidStatus:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.1)


def wait_until(predicate, timeout: float = PATIENCE):
    give_up = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < give_up, "condition not met in time"
        time.sleep(0.05)


def start(ws, call: dict) -> None:
    token = streamtokens.mint(call["call_id"])
    ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    ws.send(json.dumps(twilio_start(call["call_id"], token, call["call_sid"])))


def closed_with(ws) -> int | None:
    """Read until the server closes the stream; its close code."""
    while True:
        try:
            ws.recv(timeout=PATIENCE)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


def stop(ws) -> int | None:
    ws.send(json.dumps({"event": "stop", "streamSid": "MZ" + "0" * 32, "stop": {}}))
    return closed_with(ws)


@pytest.mark.parametrize("server", SERVERS)
def test_limits_under_a_real_server(server, start_process, tmp_path, openai):
    env = server_env(
        tmp_path,
        VOICEAGENTS_MAX_CALLS_PER_PROCESS="1",
        VOICEAGENTS_MEDIA_CONNECTIONS_PER_IP="3",
        VOICEAGENTS_WEBHOOK_RATE_PER_IP="4",
        VOICEAGENTS_STREAM_START_TIMEOUT="30",
    )
    live, refused, later = seed(env, openai_url=openai.url, calls=3)
    port, process = start_server(start_process, server, env)
    sockets = ExitStack()
    first = open_stream(port, sockets)
    start(first, live)
    wait_until(lambda: len(openai.sessions) == 1)

    # A new call while the process is full: busy, unanswered (webhook 1 of 4).
    status, body = post_voice(port, signed=True)
    assert status == 200
    assert [(el.tag, el.attrib) for el in ET.fromstring(body)] == [("Reject", {"reason": "busy"})]

    # Its stream, had it been connected by another process: refused at start.
    over = open_stream(port, sockets)
    start(over, refused)
    assert closed_with(over) == closecodes.AT_CAPACITY
    over.close()
    row = call_row(tmp_path, refused["call_id"], timeout=PATIENCE)
    assert (row["status"], row["end_reason"]) == ("failed", "at_capacity")

    # Three sockets from this address at most (the live call's is one).
    idle = [open_stream(port, sockets), open_stream(port, sockets)]
    with pytest.raises(InvalidStatus) as upgrade:
        connect(
            f"ws://127.0.0.1:{port}{TWILIO}",
            additional_headers=twilio_headers(),
            open_timeout=PATIENCE,
        )
    assert upgrade.value.response.status_code == 403
    idle.pop().close()
    idle.append(open_stream(port, sockets))  # its slot came back
    for ws in idle:
        ws.close()

    # The live call ends: its slot comes back, and the next call runs.
    assert stop(first) == closecodes.NORMAL
    assert call_row(tmp_path, live["call_id"], timeout=PATIENCE)["status"] == "completed"
    second = open_stream(port, sockets)
    start(second, later)
    wait_until(lambda: len(openai.sessions) == 2)
    assert stop(second) == closecodes.NORMAL

    # A flood of webhooks from one address: cut off once over the rate, signed or not.
    statuses = [post_voice(port, signed=False)[0] for _ in range(3)]
    assert statuses + [post_voice(port, signed=True)[0]] == [403, 403, 403, 429]

    sockets.close()
    process.check_alive()
    log = process.output()
    assert "Traceback" not in log and "invalid close code" not in log, log
