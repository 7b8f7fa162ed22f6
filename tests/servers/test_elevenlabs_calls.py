"""ElevenLabs ConvAI calls through real daphne and uvicorn processes: a whole call, and one whose
conversation ElevenLabs refuses at set-up (the stream is closed normally, the call fails with the
reason, and the server logs no traceback).

The fake ElevenLabs (REST API and conversation socket) runs in this process, on an event loop of
its own in a thread, and the server process reaches it over loopback as it would reach ElevenLabs.
"""

from __future__ import annotations

import pytest

from tests.fakes.elevenlabs_api import FakeElevenLabsAPI
from tests.fakes.elevenlabs_convai import FakeElevenLabsConvAI, ScriptedReply

from .calls import LoopThread, call_row, run_call
from .running import SERVERS

GREETING = bytes([0x2A]) * 1600  # 200 ms of μ-law


class FakeElevenLabsThread(LoopThread):
    """Both fakes, the socket one on the thread's event loop."""

    def __init__(self):
        super().__init__()
        self.api = FakeElevenLabsAPI().__enter__()
        self.convai = FakeElevenLabsConvAI(self.api)
        self.run(self.convai.__aenter__())

    def close(self):
        self.run(self.convai.__aexit__(None, None, None))
        self.api.__exit__(None, None, None)
        self.stop()


@pytest.fixture
def elevenlabs():
    fakes = FakeElevenLabsThread()
    yield fakes
    fakes.close()


@pytest.mark.parametrize("server", SERVERS)
def test_elevenlabs_calls_through_a_real_server(server, shared_server, elevenlabs):
    process = shared_server(server)
    calls = process.seed(calls=2, elevenlabs_url=elevenlabs.api.url)
    port = process.port

    elevenlabs.convai.replies.append(ScriptedReply(GREETING, "Hello."))
    audio, code = run_call(port, calls[0], hang_up_after=GREETING)
    assert GREETING in audio
    assert code == 1000
    row = call_row(process.dir, calls[0]["call_id"])
    assert (row["status"], row["end_reason"]) == ("completed", "caller_hangup")
    assert row["provider_session_id"] == elevenlabs.convai.conversations[0].conversation_id
    init = elevenlabs.convai.conversations[0].init["conversation_config_override"]
    assert init["tts"]["voice_id"] == "21m00Tcm4TlvDq8ikWAM"

    # An agent whose overrides ElevenLabs refuses: the conversation closes at set-up.
    elevenlabs.convai.allowed_overrides = frozenset()
    audio, code = run_call(port, calls[1], hang_up_after=None)
    assert audio == b"" and code == 1000
    row = call_row(process.dir, calls[1]["call_id"])
    assert (row["status"], row["end_reason"]) == ("failed", "provider_error")
    assert "is not allowed by config" in row["error"]

    process.check_alive()
    log = process.output()
    assert "Traceback" not in log and "invalid close code" not in log, log
    # Provisioned once, by the first call; the second found it up to date.
    assert len(elevenlabs.api.of("POST", "/v1/convai/agents/create")) == 1
