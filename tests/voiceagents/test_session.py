"""``CallSession`` with a provider that is not OpenAI: the session adapts to its capabilities.

The carrier side is an in-memory ``CarrierLink`` (the session's whole view of a carrier); the
provider is ``DummyVoiceProvider`` over its loopback fake. Full calls through real carriers and
OpenAI are in ``tests/calls``.
"""

import asyncio
import base64
from dataclasses import replace

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from tests.voiceagents.audio.signals import tone
from tests.voiceagents.factories import make_call
from tests.voiceagents.providers.dummy import DummyVoiceProvider, FakeDummyVendor, dummy_config
from voiceagents.audio import MULAW_8K, ulaw_encode
from voiceagents.call.callsetup import CallContext
from voiceagents.call.session import CallSession
from voiceagents.models import Call, CallEvent, CallStatus
from voiceagents.providers.base import (
    CallerSpeechStarted,
    CallerSpeechStopped,
    ProviderCapabilities,
)

pytestmark = pytest.mark.django_db(transaction=True)


class LocalVADDummy(DummyVoiceProvider):
    """Reports no caller speech of its own: the session must detect it."""

    capabilities = ProviderCapabilities(server_turn_detection=False, needs_local_vad=True)

    def __init__(self, config):
        super().__init__(config)
        self.local: list = []

    async def local_speech(self, event):
        self.local.append(event)


class MemoryCarrier:
    carrier_format = caller_format = MULAW_8K
    has_marks = False

    def __init__(self):
        self.media: list[str] = []
        self.clears = 0

    async def send_media(self, payload: str) -> None:
        self.media.append(payload)

    async def send_mark(self, name: str) -> None:
        pass

    async def send_clear(self) -> None:
        self.clears += 1

    async def end_call(self) -> None:
        pass


async def wait_until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def context(call: Call, url: str, tmp_path) -> CallContext:
    return CallContext(
        call_id=str(call.pk),
        carrier="twilio",
        provider_id="dummy_voice",
        provider_config=dummy_config(url, call_id=str(call.pk)),
        first_message="Hello.",
        record=False,
        max_duration_s=60,
        mark_interval_ms=100,
        pacer_lead_ms=80,
        recording_dir=str(tmp_path),
    )


async def test_caller_speech_detected_locally_barges_in_when_the_provider_needs_local_vad(
    tmp_path,
):
    call = await sync_to_async(make_call)(status=CallStatus.IN_PROGRESS)
    async with FakeDummyVendor() as fake:
        fake.replies.append([b"\x10\x00" * 320] * 100)  # 2 s of agent speech, 20 ms per message
        carrier = MemoryCarrier()
        provider = LocalVADDummy(dummy_config(fake.url))
        session = CallSession(context(call, fake.url, tmp_path), carrier, provider)
        session.start()
        await wait_until(lambda: len(carrier.media) >= 10)  # the agent is talking
        silence = np.zeros(4000, dtype=np.int16)
        speech = ulaw_encode(np.concatenate((silence, tone(1000, 8000, 0.6, 8000), silence)))
        for at in range(0, len(speech), 160):
            frame = speech[at : at + 160]
            await session.caller_audio(base64.b64encode(frame).decode(), frame, None)
        await wait_until(lambda: fake.stops)
        assert carrier.clears == 1
        assert [type(e) for e in provider.local] == [CallerSpeechStarted, CallerSpeechStopped]
        heard = fake.stops[0]
        assert 0 < heard < 2000
        await session.end("hangup")
    call = await Call.objects.aget(pk=call.pk)
    assert call.metrics["barge_ins"] == 1
    barge_in = await CallEvent.objects.aget(call=call, kind="barge_in")
    assert barge_in.data["audio_end_ms"] == heard
    assert barge_in.data["truncated"] is False


async def test_without_local_vad_caller_audio_alone_never_barges_in(tmp_path):
    call = await sync_to_async(make_call)(status=CallStatus.IN_PROGRESS)
    async with FakeDummyVendor() as fake:
        fake.replies.append([b"\x10\x00" * 320] * 30)
        carrier = MemoryCarrier()
        session = CallSession(
            context(call, fake.url, tmp_path), carrier, DummyVoiceProvider(dummy_config(fake.url))
        )
        session.start()
        await wait_until(lambda: len(carrier.media) >= 10)
        speech = ulaw_encode(tone(1000, 8000, 0.6, 8000))
        for at in range(0, len(speech), 160):
            frame = speech[at : at + 160]
            await session.caller_audio(base64.b64encode(frame).decode(), frame, None)
        # The provider got the caller's audio (converted to its 16 kHz PCM), and no barge-in.
        await wait_until(lambda: len(fake.audio_in) >= 2 * len(speech) - 640)
        assert carrier.clears == 0 and fake.stops == []
        await session.end("hangup")


async def test_caller_audio_after_the_end_is_ignored(tmp_path):
    call = await sync_to_async(make_call)(status=CallStatus.IN_PROGRESS)
    async with FakeDummyVendor() as fake:
        carrier = MemoryCarrier()
        recorded = replace(context(call, fake.url, tmp_path), record=True)
        session = CallSession(recorded, carrier, DummyVoiceProvider(dummy_config(fake.url)))
        session.start()
        await session.end("caller_hangup", by_carrier=True)
        frame = b"\xff" * 160
        # A media frame that crossed the caller's stop: the recorder is closed, nothing fails.
        await session.caller_audio(base64.b64encode(frame).decode(), frame, None)
    call = await Call.objects.aget(pk=call.pk)
    assert call.status == CallStatus.COMPLETED


class ResumingDummy(LocalVADDummy):
    """Records ``resume`` calls (the dummy vendor has no words: its caller turns have no
    transcript, so a barge-in is decided when the false-interruption window ends)."""

    def __init__(self, config):
        super().__init__(config)
        self.resumed = 0

    async def resume(self) -> bool:
        self.resumed += 1
        await self.say("resumed")
        return True


async def test_a_sound_without_words_is_a_false_interruption_and_the_agent_resumes(tmp_path):
    call = await sync_to_async(make_call)(status=CallStatus.IN_PROGRESS)
    async with FakeDummyVendor() as fake:
        fake.replies.append([b"\x10\x00" * 320] * 100)
        carrier = MemoryCarrier()
        provider = ResumingDummy(dummy_config(fake.url))
        ctx = replace(context(call, fake.url, tmp_path), false_interruption_window_ms=600)
        session = CallSession(ctx, carrier, provider)
        session.start()
        await wait_until(lambda: len(carrier.media) >= 10)
        # 0.3 s of sound, then enough silence for the local VAD to end it (500 ms).
        silence = np.zeros(5600, dtype=np.int16)
        knock = ulaw_encode(np.concatenate((silence, tone(1000, 8000, 0.3, 8000), silence)))
        for at in range(0, len(knock), 160):
            frame = knock[at : at + 160]
            await session.caller_audio(base64.b64encode(frame).decode(), frame, None)
        await wait_until(lambda: carrier.clears == 1)
        assert provider.resumed == 0  # not before the window is over
        await wait_until(lambda: provider.resumed == 1, timeout=3)
        await session.end("hangup")
    call = await Call.objects.aget(pk=call.pk)
    assert call.metrics["barge_ins"] == 1
    assert call.metrics["false_interruptions"] == 1
    event = await CallEvent.objects.aget(call=call, kind="false_interruption")
    assert event.data["resumed"] is True
    assert event.data["after_ms"] >= 550


async def test_without_the_window_a_barge_in_is_never_second_guessed(tmp_path):
    call = await sync_to_async(make_call)(status=CallStatus.IN_PROGRESS)
    async with FakeDummyVendor() as fake:
        fake.replies.append([b"\x10\x00" * 320] * 100)
        carrier = MemoryCarrier()
        provider = ResumingDummy(dummy_config(fake.url))
        session = CallSession(context(call, fake.url, tmp_path), carrier, provider)
        session.start()
        await wait_until(lambda: len(carrier.media) >= 10)
        knock = ulaw_encode(np.concatenate((tone(1000, 8000, 0.3, 8000), np.zeros(2400, np.int16))))
        for at in range(0, len(knock), 160):
            frame = knock[at : at + 160]
            await session.caller_audio(base64.b64encode(frame).decode(), frame, None)
        await wait_until(lambda: carrier.clears == 1)
        await asyncio.sleep(0.3)
        assert provider.resumed == 0
        await session.end("hangup")
    call = await Call.objects.aget(pk=call.pk)
    assert call.metrics["false_interruptions"] == 0
