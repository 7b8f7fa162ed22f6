"""No secret, no caller's number and nothing said in a server's log, even with every logger at DEBUG.

One call in each voice architecture (OpenAI Realtime, ElevenLabs ConvAI, the pipeline) through a
real daphne and uvicorn process run with ``LOG_LEVEL=DEBUG`` (uvicorn with ``--log-level debug``,
so websockets logs every handshake header through ``uvicorn.error``), the handshake carrying a
browser's session cookie; the whole output is then searched for every secret the call touched.
"""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.fakes.elevenlabs_convai import ScriptedReply
from tests.fakes.openai_realtime import FakeOpenAIRealtime, ScriptedResponse
from tests.integration.conftest import free_port
from tests.voiceagents.audio.signals import voiced
from voiceagents.audio.g711 import ulaw_encode
from voiceagents.call import streamtokens

from .calls import call_row
from .running import APP, SERVERS, seed, server_env
from .seed import (
    AUTH_TOKEN,
    DEEPGRAM_API_KEY,
    ELEVENLABS_API_KEY,
    OPENAI_CHAT_API_KEY,
    OUR_NUMBER,
)
from .test_elevenlabs_calls import FakeElevenLabsThread
from .test_pipeline_calls import PipelineFakes
from .test_stream_refusals import TWILIO, twilio_headers, twilio_start

OPENAI_API_KEY = "sk-test-openai"  # tests/servers/seed.py
CALLER = "+15550000100"
SESSION_COOKIE = "s3ss10n-c00k1e-value-0123456789abcdef"
GREETING = bytes([0x2A]) * 1600


def start_debug_server(start_process, kind: str, env: dict[str, str]):
    port = free_port()
    if kind == "daphne":
        args = [sys.executable, "-m", "daphne", "-v", "2", "-b", "127.0.0.1", "-p", str(port), APP]
        ready = r"Listening on TCP address"
    else:
        args = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
        args += ["--lifespan", "off", "--log-level", "debug"]
        ready = r"Uvicorn running on"
    process = start_process(kind, args, env={**env, "LOG_LEVEL": "DEBUG"})
    process.wait_for_output(ready, timeout=30)
    return port, process


def call(port: int, row: dict, *, enough: int, speech: bytes = b"") -> str:
    """Twilio's side of one call, the caller's browser cookie on the handshake; returns the
    stream token it used. Hangs up once ``enough`` bytes of agent audio arrived after speaking."""
    token = streamtokens.mint(row["call_id"])
    headers = {**twilio_headers(), "Cookie": f"sessionid={SESSION_COOKIE}; csrftoken=abc"}
    received = 0
    with connect(f"ws://127.0.0.1:{port}{TWILIO}", additional_headers=headers) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(json.dumps(twilio_start(row["call_id"], token, row["call_sid"])))
        try:
            while True:
                frame = json.loads(ws.recv(timeout=10))
                if frame.get("event") != "media":
                    continue
                received += len(base64.b64decode(frame["media"]["payload"]))
                if speech and received >= 1600:
                    for start in range(0, len(speech), 160):
                        chunk = base64.b64encode(speech[start : start + 160]).decode()
                        media = {"payload": chunk}
                        ws.send(json.dumps({"event": "media", "streamSid": "MZ", "media": media}))
                    speech, received = b"", 0
                elif not speech and received >= enough:
                    ws.send(json.dumps({"event": "stop", "streamSid": "MZ", "stop": {}}))
                    ws.recv(timeout=10)
        except ConnectionClosed:
            pass
    return token


@pytest.fixture
def fakes():
    openai = FakeElevenLabsThread()  # a loop thread for the socket fakes
    realtime = FakeOpenAIRealtime(responses=[ScriptedResponse(GREETING, "Hello.")])
    openai.run(realtime.__aenter__())
    pipeline = PipelineFakes()
    yield openai, realtime, pipeline
    openai.run(realtime.__aexit__(None, None, None))
    openai.close()
    pipeline.close()


@pytest.mark.parametrize("server", SERVERS)
def test_a_debug_log_of_calls_in_every_mode_holds_no_secret(server, start_process, tmp_path, fakes):
    elevenlabs, realtime, pipeline = fakes
    # seed() turns the one agent into the next mode from another process, with update(): without
    # the configuration cache the server's next call sees it at once (docs/config-cache.md).
    env = server_env(tmp_path, VOICEAGENTS_CONFIG_CACHE_SECONDS="0")
    (openai_call,) = seed(env, openai_url=realtime.url, calls=1)
    port, process = start_debug_server(start_process, server, env)
    tokens = [call(port, openai_call, enough=len(GREETING))]
    assert realtime.sessions, process.output()

    (convai_call,) = seed(env, calls=1, elevenlabs_url=elevenlabs.api.url)
    elevenlabs.convai.replies.append(ScriptedReply(GREETING, "Hello."))
    tokens.append(call(port, convai_call, enough=len(GREETING)))

    (pipeline_call,) = seed(env, calls=1, pipeline=pipeline.urls())
    pipeline.deepgram.transcribe_next("is anybody there")
    pipeline.chat.script("Yes, I am here.")
    pipeline.tts.tts_audio = lambda text, fmt: bytes([0x2A if text == "Hello." else 0x33]) * 1600
    speech = ulaw_encode(np.concatenate((voiced(8000, 0.6), np.zeros(7200, dtype=np.int16))))
    tokens.append(call(port, pipeline_call, enough=1600, speech=speech))

    for row in (openai_call, convai_call, pipeline_call):
        assert call_row(tmp_path, row["call_id"])["status"] == "completed"
    assert [r.json["text"] for r in pipeline.tts.tts_requests] == ["Hello.", "Yes, I am here."]
    process.check_alive()
    log = process.output()
    # The log is a DEBUG log: the handshakes and the vendors' requests are in it.
    assert "DEBUG" in log and "[redacted]" in log, log
    secrets = {
        "OpenAI key": OPENAI_API_KEY,
        "ElevenLabs key": ELEVENLABS_API_KEY,
        "Deepgram key": DEEPGRAM_API_KEY,
        "OpenAI chat key": OPENAI_CHAT_API_KEY,
        "Twilio auth token": AUTH_TOKEN,
        "Twilio signature": twilio_headers()["X-Twilio-Signature"],
        "session cookie": SESSION_COOKIE,
        "caller's number": CALLER,
        "our number": OUR_NUMBER,
        **{f"stream token {n}": token for n, token in enumerate(tokens)},
    }
    # What was said is not logged either (it is in the transcript, not the log).
    secrets.update(caller_said="is anybody there", agent_said="Yes, I am here.")
    leaked = {name: value for name, value in secrets.items() if value in log}
    assert not leaked, f"{leaked} in the {server} log:\n{log}"
