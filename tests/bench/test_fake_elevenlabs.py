"""The bench's ElevenLabs fake (``bench.fakeprovider --protocol elevenlabs``) speaks the protocol
the runtime client expects, and records what ``bench.analysis`` reads.

The fake runs as its own process, as in the benchmark; the other side is the real client
(``ElevenLabsConvAIProvider``): signed URL over HTTP, the conversation socket, caller audio,
greeting, echoed replies, interruptions, transcripts and pings. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from bench import tagging
from voiceagents.audio.formats import MULAW_8K
from voiceagents.exceptions import ProviderConnectionError
from voiceagents.providers.base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    CallerSpeechStarted,
    CallerTranscript,
    ProviderConfig,
)
from voiceagents.providers.elevenlabs_convai import ElevenLabsConvAIProvider

ROOT = Path(__file__).resolve().parents[2]
CALLER = "+15550001234"


@pytest.fixture
def fake(tmp_path):
    """The fake in echo mode with short replies, frequent barge-ins and pings; yields
    ``(port, read_dump)``."""
    out = tmp_path / "fake.pickle"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.fakeprovider",
            "--protocol",
            "elevenlabs",
            "--mode",
            "echo",
            "--turn",
            "0.4",
            "--greeting-ms",
            "200",
            "--barge-in",
            "0.5",
            "--ping-interval",
            "0.3",
            "--out",
            str(out),
            "--max-seconds",
            "30",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )

    def read_dump() -> dict:
        proc.terminate()
        proc.wait(10)
        with open(out, "rb") as f:
            return pickle.load(f)

    try:
        yield int(proc.stdout.readline().split()[1]), read_dump
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _config(port: int, api_key: str = "sk-bench") -> ProviderConfig:
    return ProviderConfig(
        call_id="bench-test",
        api_key=api_key,
        base_url=f"http://127.0.0.1:{port}",
        model="",
        voice="rachel",
        instructions=f"Bench agent for caller {CALLER}.",
        language="en",
        options={"agent_id": "bench-agent"},
        carrier_format=MULAW_8K,
        first_message="Hello, this is the bench agent.",
        variables={"caller_number": CALLER},
    )


async def test_a_conversation_with_the_runtime_client(fake):
    port, read_dump = fake
    provider = ElevenLabsConvAIProvider(_config(port))
    await provider.open()
    assert provider.session_id == "conv_bench_0"
    assert provider.input_format == MULAW_8K and provider.output_format == MULAW_8K
    events = []

    async def read():
        async for event in provider.events():
            events.append(event)

    reader = asyncio.create_task(read())
    frames = 125  # 2.5 s of caller audio, one 20 ms frame at a time
    for index in range(frames):
        await provider.send_audio(tagging.frame_b64(index))
        await asyncio.sleep(0.02)
    await provider.close()
    await asyncio.wait_for(reader, 5)
    data = read_dump()

    (session,) = data["sessions"].values()
    assert data["protocol"] == "elevenlabs"
    assert session["key"] == CALLER  # read from the prompt override
    assert session["errors"] == []
    # Every caller frame arrived, in order, with its tag.
    assert list(session["in_tag"]) == list(range(frames))
    # The greeting came first, as text and untagged audio of utterance 1.
    transcripts = [e.text for e in events if isinstance(e, AgentTranscript)]
    assert transcripts[0] == "Hello, this is the bench agent."
    assert list(session["out_tag"][:2]) == [-1, -1] and session["out_resp"][0] == 1
    # Echoed audio reached the client frame by frame, tags intact.
    tags = [tagging.read_tag(e.payload_b64.encode()) for e in events if isinstance(e, AgentAudio)]
    assert sum(1 for t in tags if t >= 0) > 20
    # Each barge-in became the client's CallerSpeechStarted, a cancelled agent turn and the
    # caller's transcript; the interrupted reply sent nothing after its interruption.
    bargeins = session["bargeins"]
    assert bargeins
    started = [e for e in events if isinstance(e, CallerSpeechStarted)]
    assert len(started) == len(bargeins)
    assert any(isinstance(e, AgentTurnFinished) and e.cancelled for e in events)
    assert any(isinstance(e, CallerTranscript) and e.text == "Bench caller." for e in events)
    for at, reply, _ in bargeins:
        sent = [t for t, r in zip(session["out_t"], session["out_resp"], strict=True) if r == reply]
        assert sent and max(sent) <= at
    # Pings were answered (by the client, as soon as read) and each pong's delay recorded.
    assert len(session["pong_delay"]) >= 3
    assert session["truncates"] == []


async def test_a_wrong_api_key_gets_no_signed_url(fake):
    port, read_dump = fake
    provider = ElevenLabsConvAIProvider(_config(port, api_key="sk-wrong"))
    with pytest.raises(ProviderConnectionError) as caught:
        await provider.open()
    assert caught.value.status_code == 401
    assert read_dump()["sessions"] == {}
