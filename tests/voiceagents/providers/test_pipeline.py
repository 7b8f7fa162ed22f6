"""The pipeline provider (Deepgram → a registered handler → ElevenLabs TTS) against the stage fakes:
the provider contract, and what only the pipeline does."""

import asyncio
import base64
from collections import deque
from dataclasses import replace

import pytest

import voiceagents
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.elevenlabs_api import API_KEY as ELEVENLABS_KEY
from tests.fakes.elevenlabs_api import FakeElevenLabsAPI
from tests.voiceagents.providers.contract import *  # noqa: F403  (the contract suite runs here)
from tests.voiceagents.providers.contract import take
from voiceagents.audio.formats import MULAW_8K, PCM16_16K
from voiceagents.providers.base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    CallerSpeechStarted,
    CallerSpeechStopped,
    CallerTranscript,
    ProviderConfig,
    StageConfig,
)
from voiceagents.providers.pipeline import PipelineProvider

DEEPGRAM_KEY = "dg-test-key"


@voiceagents.reply_handler("pipeline-provider-tests")
async def answer(event):
    return f"You said {event['text']}."


@pytest.fixture
async def deepgram():
    async with FakeDeepgram(DEEPGRAM_KEY) as fake:
        yield fake


@pytest.fixture
def tts():
    with FakeElevenLabsAPI() as fake:
        fake.scripted = deque()
        fake.tts_audio = lambda text, fmt: (
            fake.scripted.popleft() if fake.scripted else b"\x2a" * 800
        )
        yield fake


def config(deepgram, tts, *, key=DEEPGRAM_KEY, carrier=MULAW_8K, **options):
    return ProviderConfig(
        call_id="call-1",
        api_key="",
        base_url="",
        model="",
        voice="",
        instructions="",
        language="en-US",
        options=options,
        carrier_format=carrier,
        connect_timeout=5,
        stages={
            "stt": StageConfig(
                id="deepgram", api_key=key, base_url=deepgram.url, model="nova-3", language="en-US"
            ),
            "reply": StageConfig(id="", handler="pipeline-provider-tests"),
            "tts": StageConfig(
                id="elevenlabs",
                api_key=ELEVENLABS_KEY,
                base_url=tts.url,
                model="eleven_flash_v2_5",
                voice="rachel",
                language="en-US",
            ),
        },
        variables={"caller_number": "+15550001111", "called_number": "+15550002222"},
        agent="front-desk",
    )


class PipelineHarness:
    """The provider contract's view of the pipeline and its stage fakes."""

    def __init__(self, deepgram: FakeDeepgram, tts: FakeElevenLabsAPI):
        self.deepgram, self.tts = deepgram, tts

    def make(self, *, valid_key: bool = True) -> PipelineProvider:
        return PipelineProvider(
            config(self.deepgram, self.tts, key=DEEPGRAM_KEY if valid_key else "dg-bad")
        )

    def script_reply(self, audio: bytes, *, chunks: int) -> None:
        self.tts.scripted.append(audio)
        self.tts.tts_chunk_size = -(-len(audio) // chunks)
        self.tts.tts_chunk_delay = 0.02

    def caller_audio(self) -> bytes:
        return self.deepgram.stream.audio if self.deepgram.connected.is_set() else b""

    def said(self) -> list[str]:
        return [request.json["text"] for request in self.tts.tts_requests]

    def heard(self) -> None:
        return None  # no vendor is told: the TTS request is cancelled, the history cut

    async def drop(self) -> None:
        await self.deepgram.connected.wait()
        await self.deepgram.drop()


@pytest.fixture
def provider_harness(deepgram, tts):
    return PipelineHarness(deepgram, tts)


async def open_pipeline(cfg) -> PipelineProvider:
    provider = PipelineProvider(cfg)
    await provider.open()
    return provider


@pytest.mark.parametrize(("carrier", "expected"), [(MULAW_8K, MULAW_8K), (PCM16_16K, PCM16_16K)])
async def test_formats_follow_the_carrier_so_nothing_is_transcoded(
    deepgram, tts, carrier, expected
):
    provider = await open_pipeline(config(deepgram, tts, carrier=carrier))
    try:
        assert provider.input_format == provider.output_format == expected
    finally:
        await provider.close()


async def test_a_caller_turn_is_answered_by_the_handler(deepgram, tts):
    provider = await open_pipeline(config(deepgram, tts))
    try:
        events = provider.events()
        deepgram.transcribe_next("hello there")
        speech = b"\x10\x90" * 2400 + b"\xff" * 4800  # 600 ms of "speech", then silence
        for start in range(0, len(speech), 160):
            await provider.send_audio(base64.b64encode(speech[start : start + 160]).decode())
        seen = await take(events, AgentTurnFinished)
        kinds = [type(e) for e in seen]
        assert kinds.index(CallerSpeechStarted) < kinds.index(CallerTranscript)
        assert kinds.index(CallerTranscript) < kinds.index(CallerSpeechStopped)
        assert kinds.index(CallerSpeechStopped) < kinds.index(AgentAudio)
        (transcript,) = [e for e in seen if isinstance(e, AgentTranscript)]
        assert transcript.text == "You said hello there."
        assert [r.json["text"] for r in tts.tts_requests] == ["You said hello there."]
        assert provider.history == [
            {"role": "caller", "text": "hello there", "interrupted": False},
            {"role": "agent", "text": "You said hello there.", "interrupted": False},
        ]
    finally:
        await provider.close()


async def test_interrupt_during_synthesis_cancels_it_and_keeps_what_was_heard(deepgram, tts):
    tts.tts_chunk_size = 800
    tts.tts_chunk_delay = 0.05
    provider = await open_pipeline(config(deepgram, tts))
    try:
        events = provider.events()
        tts.scripted.append(b"\x2a" * 16000)  # 2 s of audio, streamed slower than it plays
        await provider.say("One two three four five six seven eight.")
        await take(events, AgentAudio)
        await provider.interrupt(500)
        seen = await take(events, AgentTurnFinished)
        assert seen[-1].cancelled
        (corrected,) = [e for e in seen if isinstance(e, AgentTranscript)]
        # Half a second of a sentence of about 2.9 s (41 characters): its first word.
        assert corrected.corrected and corrected.text == "One"
        assert provider.history[-1] == {"role": "agent", "text": "One", "interrupted": True}
        await asyncio.to_thread(tts.tts_requests[0].done.wait, 5)
        assert tts.tts_requests[0].disconnected
    finally:
        await provider.close()


async def test_interrupt_after_synthesis_cuts_at_the_word_heard(deepgram, tts):
    provider = await open_pipeline(config(deepgram, tts))
    try:
        events = provider.events()
        tts.scripted.extend([b"\x2a" * 8000, b"\x2b" * 8000])  # two sentences of 1 s each
        await provider.say("One two three four. Five six seven eight.")
        await take(events, AgentTurnFinished)  # all synthesized; still playing at the carrier
        await provider.interrupt(1500)
        (corrected,) = [e for e in await take(events, AgentTranscript) if e.corrected]
        # The first sentence whole, and half of the second.
        assert corrected.text == "One two three four. Five six"
        assert provider.history == [
            {"role": "agent", "text": "One two three four. Five six", "interrupted": True}
        ]
    finally:
        await provider.close()


SEEN: list[dict] = []


@voiceagents.reply_handler("pipeline-provider-tests-slow")
async def slow_answer(event):
    SEEN.append(event)
    await asyncio.sleep(0.4)  # still writing when the caller goes on talking
    return f"You said {event['text']}."


async def speak(provider, deepgram, text: str) -> None:
    deepgram.transcribe_next(text)
    speech = b"\x10\x90" * 2400 + b"\xff" * 4800  # 600 ms of "speech", then silence
    for start in range(0, len(speech), 160):
        await provider.send_audio(base64.b64encode(speech[start : start + 160]).decode())


async def test_speaking_again_before_the_reply_is_heard_merges_the_turns(deepgram, tts):
    SEEN.clear()
    cfg = config(deepgram, tts)
    stages = dict(cfg.stages, reply=StageConfig(id="", handler="pipeline-provider-tests-slow"))
    provider = await open_pipeline(replace(cfg, stages=stages))
    try:
        events = provider.events()
        await speak(provider, deepgram, "a table")
        await take(events, CallerSpeechStopped)
        await speak(provider, deepgram, "for two")
        seen = await take(events, AgentTurnFinished)
        (answer,) = [e for e in seen if isinstance(e, AgentTranscript)]
        assert answer.text == "You said a table for two."
        assert [r.json["text"] for r in tts.tts_requests] == ["You said a table for two."]
        assert [e["text"] for e in SEEN] == ["a table", "a table for two"]
        assert SEEN[1]["history"] == []  # the first turn is not repeated in the history
        assert provider.history == [
            {"role": "caller", "text": "a table for two", "interrupted": False},
            {"role": "agent", "text": "You said a table for two.", "interrupted": False},
        ]
    finally:
        await provider.close()
