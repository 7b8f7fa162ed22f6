"""The bench's pipeline fake (``bench.fakeprovider --protocol pipeline``) speaks the three
protocols the runtime's stages expect, and records what ``bench.analysis`` reads.

The fake runs as its own process, as in the benchmark; the other side is the real
``PipelineProvider`` with its real stages (Deepgram live socket, OpenAI chat completions, ElevenLabs
TTS), all pointed at the fake's one port. One caller turn, bench caller frames as the load
generator makes them. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from bench import tagging
from bench.fakepipeline import SILENT, UTTERANCE_END, VOICED, caller_tail
from voiceagents.audio.formats import MULAW_8K
from voiceagents.providers.base import (
    AgentAudio,
    AgentTranscript,
    CallerSpeechStarted,
    CallerTranscript,
    ProviderConfig,
    StageConfig,
)
from voiceagents.providers.pipeline import PipelineProvider

ROOT = Path(__file__).resolve().parents[2]
CALLER = "+15550004321"
KEY = "sk-bench"


@pytest.fixture
def fake(tmp_path):
    """The pipeline fake with short delays and replies; yields ``(port, read_dump)``."""
    out = tmp_path / "fake.pickle"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.fakeprovider",
            "--protocol",
            "pipeline",
            *("--stt-delay", "30", "--llm-delay", "30", "--tts-delay", "30"),
            *("--sentence-ms", "200", "--greeting-ms", "100", "--tts-chunk-ms", "60"),
            *("--out", str(out), "--max-seconds", "30"),
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


def _config(port: int) -> ProviderConfig:
    root = f"http://127.0.0.1:{port}"
    return ProviderConfig(
        call_id="bench-pipeline-test",
        api_key="",
        base_url="",
        model="",
        voice="",
        instructions="",
        language="en-US",
        options={},
        carrier_format=MULAW_8K,
        stages={
            "stt": StageConfig(
                id="deepgram", api_key=KEY, base_url=f"ws://127.0.0.1:{port}/v1/listen"
            ),
            "reply": StageConfig(
                id="openai_chat",
                api_key=KEY,
                base_url=f"{root}/v1/chat/completions",
                instructions="You answer the phone for the bench.",
            ),
            "tts": StageConfig(id="elevenlabs", api_key=KEY, base_url=root, voice="rachel"),
        },
        variables={"caller_number": CALLER},
    )


def _frame(index: int, kind: int) -> str:
    return tagging.tag_b64(index) + base64.b64encode(caller_tail(kind, CALLER)).decode()


async def test_one_caller_turn_through_the_real_stages(fake):
    port, read_dump = fake
    provider = PipelineProvider(_config(port))
    await provider.open()
    events = []

    async def read():
        async for event in provider.events():
            events.append(event)

    reader = asyncio.create_task(read())
    await provider.say("Hello, this is the bench agent.")
    # 0.3 s of silence, a 0.5 s utterance (its last frame marked), then 0.9 s of silence.
    kinds = [SILENT] * 15 + [VOICED] * 24 + [UTTERANCE_END] + [SILENT] * 45
    for index, kind in enumerate(kinds):
        await provider.send_audio(_frame(index, kind))
        await asyncio.sleep(0.02)
    await provider.close()
    await asyncio.wait_for(reader, 5)
    data = read_dump()

    assert data["protocol"] == "pipeline"
    (session,) = data["sessions"].values()
    assert session["key"] == CALLER  # read from the caller's frames
    assert session["errors"] == []
    # Every caller frame reached the Deepgram socket, in order, with its tag.
    assert list(session["in_tag"]) == list(range(len(kinds)))
    # The caller's turn: speech started, then the fake's transcript ended the turn.
    assert any(isinstance(e, CallerSpeechStarted) for e in events)
    (caller,) = [e.text for e in events if isinstance(e, CallerTranscript)]
    assert caller == f"Question 1 from {CALLER}."
    # The reply: both sentences of the fake LLM, spoken by the fake TTS with tagged frames.
    agent = [e.text for e in events if isinstance(e, AgentTranscript)]
    assert agent[0] == "Hello, this is the bench agent."
    assert agent[1] == f"Answer 1 for {CALLER} begins. Answer 1 for {CALLER} ends."
    audio = b"".join(base64.b64decode(e.payload_b64) for e in events if isinstance(e, AgentAudio))
    tags = [
        tagging.read_tag(base64.b64encode(audio[i : i + 160])) for i in range(0, len(audio), 160)
    ]
    assert [t for t in tags if t >= 0] == list(range(20))  # 2 sentences of 200 ms
    # What bench.analysis reads for the turn: every step, and the reply's first frame.
    (turn,) = session["turns"]
    assert turn["end_tag"] == kinds.index(UTTERANCE_END)
    assert turn["first_tag"] == 0
    for step in ("end_recv", "results_sent", "chat_req", "first_text_sent", "tts_req"):
        assert step in turn
    assert turn["end_recv"] < turn["results_sent"] < turn["chat_req"] < turn["first_text_sent"]
    assert turn["first_text_sent"] < turn["tts_req"] < turn["tts_first_sent"]
