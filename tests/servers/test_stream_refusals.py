"""Refused media streams through real daphne and uvicorn processes: the close code the carrier
sees, and no traceback in the server's log (daphne refuses codes outside 1000 and 3000-4999)."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
from twilio.request_validator import RequestValidator
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from telephony import closecodes
from voiceagents.call import streamtokens

from .running import PUBLIC_URL, SERVERS, seed, server_env, start_server
from .seed import AUTH_TOKEN

TWILIO = "/telephony/twilio/media/"
TELNYX = "/telephony/telnyx/media/"


def twilio_headers() -> dict[str, str]:
    url = PUBLIC_URL.replace("https://", "wss://") + TWILIO
    return {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, {})}


def twilio_start(call_id: str, token: str, call_sid: str | None) -> dict:
    start = {
        "streamSid": "MZ" + secrets.token_hex(16),
        "customParameters": {"call_id": call_id, "stream_token": token},
    }
    if call_sid is not None:
        start["callSid"] = call_sid
    return {"event": "start", "start": start}


def close_code(port: int, path: str, headers: dict, *frames: dict) -> int | str:
    """The close code the server ends the stream with, or ``"http <status>"`` if it refused it."""
    try:
        with connect(f"ws://127.0.0.1:{port}{path}", additional_headers=headers) as ws:
            for frame in frames:
                ws.send(json.dumps(frame))
            try:
                ws.recv(timeout=5)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else "no close frame"
            except TimeoutError:
                return "still open"
            return "sent a frame"
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}"


def cases() -> dict[str, tuple]:
    """name -> (expected, path, headers, frames)."""
    stranger = str(uuid.uuid4())  # no such call: the token is valid, spending it is not
    token = streamtokens.mint(stranger)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    telnyx = {"x-telnyx-streaming-auth-token": token}
    return {
        "unsigned-twilio-handshake": ("http 403", TWILIO, {}, ()),
        "anonymous-telnyx-handshake": ("http 403", TELNYX, {}, ()),
        "forged-token": (
            closecodes.FORBIDDEN,
            TWILIO,
            twilio_headers(),
            (twilio_start(stranger, forged, "CA" + "1" * 32),),
        ),
        "token-of-no-call": (
            closecodes.FORBIDDEN,
            TWILIO,
            twilio_headers(),
            (twilio_start(stranger, token, "CA" + "1" * 32),),
        ),
        "start-without-callsid": (
            closecodes.BAD_START,
            TWILIO,
            twilio_headers(),
            (twilio_start(stranger, token, None),),
        ),
        "telnyx-start-without-call-control-id": (
            closecodes.BAD_START,
            TELNYX,
            telnyx,
            ({"event": "start", "start": {"custom_parameters": {"call_id": stranger}}},),
        ),
        "twilio-no-start": (closecodes.START_TIMEOUT, TWILIO, twilio_headers(), ()),
        "telnyx-no-start": (closecodes.START_TIMEOUT, TELNYX, telnyx, ()),
    }


@pytest.mark.parametrize("server", SERVERS)
def test_refused_streams_close_with_their_codes_and_no_traceback(server, start_process, tmp_path):
    env = server_env(tmp_path, VOICEAGENTS_STREAM_START_TIMEOUT="1")
    seed(env)
    port, process = start_server(start_process, server, env)
    seen = {
        name: close_code(port, path, headers, *frames)
        for name, (_, path, headers, frames) in cases().items()
    }
    assert seen == {name: case[0] for name, case in cases().items()}
    process.check_alive()
    log = process.output()
    assert "Traceback" not in log and "invalid close code" not in log, log
