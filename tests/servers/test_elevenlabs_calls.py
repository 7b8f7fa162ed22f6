"""ElevenLabs ConvAI calls through real daphne and uvicorn processes: a whole call, and one whose
conversation ElevenLabs refuses at set-up (the stream is closed normally, the call fails with the
reason, and the server logs no traceback).

The fake ElevenLabs (REST API and conversation socket) runs in this process, on an event loop of
its own in a thread, and the server process reaches it over loopback as it would reach ElevenLabs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.fakes.elevenlabs_api import FakeElevenLabsAPI
from tests.fakes.elevenlabs_convai import FakeElevenLabsConvAI, ScriptedReply
from voiceagents.call import streamtokens

from .running import SERVERS, seed, server_env, start_server
from .test_stream_refusals import TWILIO, twilio_headers, twilio_start

GREETING = bytes([0x2A]) * 1600  # 200 ms of μ-law


class FakeElevenLabsThread:
    """Both fakes, the socket one on its own event loop in a daemon thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.api = FakeElevenLabsAPI().__enter__()
        self.convai = FakeElevenLabsConvAI(self.api)
        self.run(self.convai.__aenter__())

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self):
        self.run(self.convai.__aexit__(None, None, None))
        self.api.__exit__(None, None, None)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def elevenlabs():
    fakes = FakeElevenLabsThread()
    yield fakes
    fakes.close()


def call_row(tmp_path, call_id: str) -> dict:
    """The call's row in the server's own SQLite database, once it has ended."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            db.row_factory = sqlite3.Row
            row = dict(
                db.execute(
                    "select status, end_reason, error, provider_session_id from voiceagents_call "
                    "where id = ?",
                    (call_id.replace("-", ""),),
                ).fetchone()
            )
        if row["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def run_call(port: int, call: dict, *, hang_up_after: bytes | None) -> tuple[bytes, int | None]:
    """Play Twilio: start the stream, read agent audio until ``hang_up_after`` has arrived (then
    send ``stop``) or the server closes; the audio received and the close code."""
    received = bytearray()
    token = streamtokens.mint(call["call_id"])
    with connect(f"ws://127.0.0.1:{port}{TWILIO}", additional_headers=twilio_headers()) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(json.dumps(twilio_start(call["call_id"], token, call["call_sid"])))
        stream_sid = None
        try:
            while True:
                frame = json.loads(ws.recv(timeout=10))
                stream_sid = frame.get("streamSid", stream_sid)
                if frame.get("event") == "media":
                    received += base64.b64decode(frame["media"]["payload"])
                if hang_up_after is not None and hang_up_after in received:
                    ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {}}))
                    hang_up_after = None
        except ConnectionClosed as closed:
            return bytes(received), closed.rcvd.code if closed.rcvd else None


@pytest.mark.parametrize("server", SERVERS)
def test_elevenlabs_calls_through_a_real_server(server, start_process, tmp_path, elevenlabs):
    env = server_env(tmp_path)
    calls = seed(env, calls=2, elevenlabs_url=elevenlabs.api.url)
    port, process = start_server(start_process, server, env)

    elevenlabs.convai.replies.append(ScriptedReply(GREETING, "Hello."))
    audio, code = run_call(port, calls[0], hang_up_after=GREETING)
    assert GREETING in audio
    assert code == 1000
    row = call_row(tmp_path, calls[0]["call_id"])
    assert (row["status"], row["end_reason"]) == ("completed", "caller_hangup")
    assert row["provider_session_id"] == elevenlabs.convai.conversations[0].conversation_id
    init = elevenlabs.convai.conversations[0].init["conversation_config_override"]
    assert init["tts"]["voice_id"] == "21m00Tcm4TlvDq8ikWAM"

    # An agent whose overrides ElevenLabs refuses: the conversation closes at set-up.
    elevenlabs.convai.allowed_overrides = frozenset()
    audio, code = run_call(port, calls[1], hang_up_after=None)
    assert audio == b"" and code == 1000
    row = call_row(tmp_path, calls[1]["call_id"])
    assert (row["status"], row["end_reason"]) == ("failed", "provider_error")
    assert "is not allowed by config" in row["error"]

    process.check_alive()
    log = process.output()
    assert "Traceback" not in log and "invalid close code" not in log, log
    # Provisioned once, by the first call; the second found it up to date.
    assert len(elevenlabs.api.of("POST", "/v1/convai/agents/create")) == 1
