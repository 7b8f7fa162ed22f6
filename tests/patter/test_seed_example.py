"""The seed's "Complete Pipeline Example", run as written, answers a call.

``seed_complete_pipeline_example.py`` is the seed document's script (its statements unchanged;
indentation and blank lines restored). It runs in a subprocess whose working directory is a
temporary one (so the data lands in ``./patter-data`` there), with the environment variables it
reads pointing at loopback fakes: ``DEEPGRAM_URL`` at the Deepgram fake, ``ELEVENLABS_URL`` at the
ElevenLabs fake (the stages read ``<STAGE>_URL`` settings from the environment). This test then
plays Twilio: a signed voice webhook, then the media stream the TwiML names, where the caller
speaks; the script's ``handle_message`` must be what answers.

The script passes ``port=8000`` literally, so the test needs that port and skips when it is taken.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import sqlite3
import sys
import time
from html import unescape
from pathlib import Path

import httpx
import numpy as np
import pytest
from twilio.request_validator import RequestValidator
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.elevenlabs_api import API_KEY as ELEVENLABS_KEY
from tests.fakes.elevenlabs_api import FakeElevenLabsAPI
from tests.servers.calls import LoopThread
from tests.voiceagents.audio.signals import voiced
from voiceagents.audio.g711 import ulaw_encode

SCRIPT = Path(__file__).with_name("seed_complete_pipeline_example.py")
PORT = 8000  # the seed's code: phone.serve(..., port=8000)
PUBLIC = "https://voice.example.test"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "patter-seed-example-auth-token"
NUMBER = "+15550000042"
DEEPGRAM_KEY = "dg-test-key"  # FakeDeepgram's default
#: What the ElevenLabs fake speaks for every text: one byte value, recognisable on the line.
REPLY_BYTE = 0x33
#: Variables the script's process must not inherit from the test run (pytest-django's
#: settings, a developer's database or Redis): the script configures Django itself.
INHERITED = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "VOICEAGENTS_PUBLIC_URL")


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: connections of an earlier run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Fakes(LoopThread):
    def __init__(self):
        super().__init__()
        self.deepgram = FakeDeepgram(DEEPGRAM_KEY)
        self.run(self.deepgram.__aenter__())
        self.tts = FakeElevenLabsAPI().__enter__()
        self.tts.tts_audio = bytes([REPLY_BYTE]) * 1600

    def close(self):
        self.run(self.deepgram.__aexit__(None, None, None))
        self.tts.__exit__(None, None, None)
        self.stop()


@pytest.fixture
def fakes():
    made = Fakes()
    yield made
    made.close()


def script_env(fakes: Fakes) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in INHERITED}
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        TWILIO_SID=ACCOUNT_SID,
        TWILIO_TOKEN=AUTH_TOKEN,
        PHONE_NUMBER=NUMBER,
        WEBHOOK_URL=PUBLIC,
        DEEPGRAM_KEY=DEEPGRAM_KEY,
        ELEVENLABS_KEY=ELEVENLABS_KEY,
        DEEPGRAM_URL=fakes.deepgram.url,
        ELEVENLABS_URL=fakes.tts.url,
    )
    return env


def start_script(start_process, env: dict[str, str], cwd: Path):
    if port_in_use(PORT):
        pytest.skip(f"port {PORT} is in use: the seed's example serves on port=8000 literally")
    process = start_process("seed-example", [sys.executable, str(SCRIPT)], env=env, cwd=cwd)
    process.wait_for_output(rf"Uvicorn running on http://127\.0\.0\.1:{PORT}", timeout=60)
    return process


def voice_webhook(call_sid: str) -> dict[str, str]:
    """Twilio's signed incoming-call webhook; the stream's URL and parameters from the TwiML."""
    form = {
        "CallSid": call_sid,
        "AccountSid": ACCOUNT_SID,
        "From": "+14155550100",
        "To": NUMBER,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        f"{PUBLIC}/telephony/twilio/voice/", form
    )
    response = httpx.post(
        f"http://127.0.0.1:{PORT}/telephony/twilio/voice/",
        data=form,
        # As the tunnel forwards it: the public host.
        headers={"X-Twilio-Signature": signature, "Host": "voice.example.test"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    stream_url = unescape(re.search(r'<Stream url="([^"]+)"', response.text).group(1))
    assert stream_url == "wss://voice.example.test/telephony/twilio/media/"
    params = dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]+)"', response.text))
    return {"url": stream_url, "params": params}


def speak_and_listen(call_sid: str, stream: dict, speech: bytes) -> bytes:
    """Play Twilio's media stream: say ``speech``, read until the agent's reply has arrived,
    hang up; the agent audio received."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(stream["url"], {})
    stream_sid = "MZ" + secrets.token_hex(16)
    received = bytearray()
    reply = bytes([REPLY_BYTE]) * 1600
    with connect(
        f"ws://127.0.0.1:{PORT}/telephony/twilio/media/",
        additional_headers={"X-Twilio-Signature": signature},
    ) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {"streamSid": stream_sid, "callSid": call_sid, "customParameters": stream["params"]}
        ws.send(json.dumps({"event": "start", "streamSid": stream_sid, "start": start}))
        for offset in range(0, len(speech), 160):
            payload = base64.b64encode(speech[offset : offset + 160]).decode()
            media = {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
            ws.send(json.dumps(media))
        try:
            while reply not in received:
                frame = json.loads(ws.recv(timeout=15))
                if frame.get("event") == "media":
                    received += base64.b64decode(frame["media"]["payload"])
            ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {}}))
            ws.recv(timeout=10)  # the server closes the stream
        except ConnectionClosed:
            pass
    return bytes(received)


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql).fetchall()


def ended_calls(db: Path) -> list[tuple]:
    """The calls' (status, end_reason) once none is still in progress (the server records the
    end just after it closes the stream)."""
    deadline = time.monotonic() + 10
    while True:
        found = rows(db, "select status, end_reason from voiceagents_call")
        if all(status != "in_progress" for status, _ in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_seed_example_answers_a_call_with_its_handler(start_process, tmp_path, fakes):
    env = script_env(fakes)
    process = start_script(start_process, env, tmp_path)

    fakes.deepgram.transcribe_next("is anybody there")
    call_sid = "CA" + secrets.token_hex(16)
    speech = ulaw_encode(np.concatenate((voiced(8000, 0.6), np.zeros(7200, dtype=np.int16))))
    audio = speak_and_listen(call_sid, voice_webhook(call_sid), speech)

    assert bytes([REPLY_BYTE]) * 1600 in audio
    assert [r.json["text"] for r in fakes.tts.tts_requests] == ["I heard you say: is anybody there"]
    # The voice the seed asked for, as ElevenLabs names it.
    assert {r.voice_id for r in fakes.tts.tts_requests} == {"21m00Tcm4TlvDq8ikWAM"}
    process.check_alive()
    log = process.output()
    assert "Traceback" not in log, log

    # The data is where the docs say: ./patter-data under the working directory.
    db = tmp_path / "patter-data" / "db.sqlite3"
    assert ended_calls(db) == [("completed", "caller_hangup")]
    process.stop()


def test_restarts_update_the_stored_rows_instead_of_adding_more(start_process, tmp_path, fakes):
    env = script_env(fakes)
    for _ in range(2):
        process = start_script(start_process, env, tmp_path)
        process.stop()
    db = tmp_path / "patter-data" / "db.sqlite3"
    assert rows(db, "select slug, reply_handler from voiceagents_agent") == [
        ("patter-15550000042", "__main__.handle_message")
    ]
    assert rows(db, "select number, carrier from voiceagents_phonenumber") == [(NUMBER, "twilio")]
    assert sorted(rows(db, "select vendor, is_default from voiceagents_credential")) == [
        ("deepgram", 1),
        ("elevenlabs", 1),
        ("twilio", 1),
    ]
    # The credentials are encrypted with the data directory's own key, not a published one.
    assert (tmp_path / "patter-data" / "secret_key").stat().st_mode & 0o077 == 0
