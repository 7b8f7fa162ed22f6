"""A pipeline call through real daphne and uvicorn processes: Deepgram → an LLM prompt →
ElevenLabs TTS, each stage's fake in this process (Deepgram's socket on a loop thread), reached
by the server over loopback."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.elevenlabs_api import FakeElevenLabsAPI
from tests.fakes.openai_chat import FakeOpenAIChat
from tests.voiceagents.audio.signals import voiced
from voiceagents.audio.g711 import ulaw_encode

from .calls import LoopThread, call_row, run_call
from .running import SERVERS


class PipelineFakes(LoopThread):
    def __init__(self):
        super().__init__()
        self.deepgram = FakeDeepgram()
        self.run(self.deepgram.__aenter__())
        self.chat = FakeOpenAIChat().__enter__()
        self.tts = FakeElevenLabsAPI().__enter__()

    def urls(self) -> dict:
        return {"deepgram": self.deepgram.url, "chat": self.chat.url, "tts": self.tts.url}

    def close(self):
        self.run(self.deepgram.__aexit__(None, None, None))
        self.chat.__exit__(None, None, None)
        self.tts.__exit__(None, None, None)
        self.stop()


@pytest.fixture
def fakes():
    made = PipelineFakes()
    yield made
    made.close()


def speak_once(speech: bytes):
    """``run_call``'s ``during``: once the greeting has arrived, the caller says something."""
    sent = False

    def during(ws, stream_sid, received) -> bool:
        nonlocal sent
        if sent or len(received) < 1600:
            return False
        for start in range(0, len(speech), 160):
            payload = base64.b64encode(speech[start : start + 160]).decode()
            ws.send(
                json.dumps(
                    {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
                )
            )
        sent = True
        return True

    return during


@pytest.mark.parametrize("server", SERVERS)
def test_a_pipeline_call_through_a_real_server(server, shared_server, fakes):
    process = shared_server(server)
    (call,) = process.seed(calls=1, pipeline=fakes.urls())
    port = process.port

    fakes.deepgram.transcribe_next("is anybody there")
    fakes.chat.script("Yes, I am here.")
    # Each text its own sound: the greeting one byte, the reply another.
    fakes.tts.tts_audio = lambda text, fmt: bytes([0x2A if text == "Hello." else 0x33]) * 1600
    reply_audio = bytes([0x33]) * 1600
    speech = ulaw_encode(np.concatenate((voiced(8000, 0.6), np.zeros(7200, dtype=np.int16))))
    audio, code = run_call(port, call, hang_up_after=reply_audio, during=speak_once(speech))
    assert code == 1000

    row = call_row(process.dir, call["call_id"])
    assert (row["status"], row["end_reason"]) == ("completed", "caller_hangup")
    assert [r.json["text"] for r in fakes.tts.tts_requests] == ["Hello.", "Yes, I am here."]
    (body,) = fakes.chat.bodies
    assert body["messages"][-1] == {"role": "user", "content": "is anybody there"}
    process.check_alive()
    log = process.output()
    assert "Traceback" not in log, log
