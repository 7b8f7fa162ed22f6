"""The contract every voice provider passes, against its loopback fake.

A provider's test module star-imports these tests and defines a ``provider_harness`` fixture that
yields a ``ProviderHarness`` (its fake running). The harness knows the vendor's fake; these tests
know what the session relies on from every provider: ``open()`` sets the formats, caller audio
reaches the vendor, ``say()`` makes the agent speak as ``AgentAudio`` events with one turn id per
turn, ending with ``AgentTurnFinished``, ``interrupt(heard_ms)`` is accepted mid-turn and the
provider goes on with a new turn, ``close()`` is idempotent and ends ``events()`` quietly, a
refused connection raises ``ProviderConnectionError``, and a dropped socket ends ``events()``
with an error.

It needs nothing under ``voiceagents/`` beyond ``providers.base``: a provider defined in test
code only passes it the same way.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Protocol

import pytest

from voiceagents.audio.formats import AudioFormat
from voiceagents.exceptions import ProviderConnectionError, VoiceAgentsError
from voiceagents.providers.base import (
    AgentAudio,
    AgentTurnFinished,
    AgentTurnStarted,
    ProviderCapabilities,
    ProviderEvent,
    VoiceProvider,
)

TIMEOUT = 5.0


class ProviderHarness(Protocol):
    """How the contract talks to one provider and its fake."""

    def make(self, *, valid_key: bool = True) -> VoiceProvider:
        """A provider for one call, pointed at the fake; with ``valid_key=False`` its key is one
        the fake refuses."""

    def script_reply(self, audio: bytes, *, chunks: int) -> None:
        """The fake's next agent turn speaks ``audio`` (the provider's output format), in
        ``chunks`` messages sent slowly enough that a test can interrupt between them."""

    def caller_audio(self) -> bytes:
        """All caller audio the fake has received so far, decoded (the provider's input format)."""

    def said(self) -> list[str]:
        """The texts the fake was asked to speak, in order."""

    def heard(self) -> list[int] | None:
        """The ``heard_ms`` the fake was told at each barge-in, in the vendor's own terms (OpenAI:
        a truncate's ``audio_end_ms``), in order; ``None`` for a vendor that is told nothing
        (ElevenLabs detects barge-ins and stops the turn itself)."""

    async def drop(self) -> None:
        """The fake drops the open connection abnormally."""


async def take(events, until: type[ProviderEvent]) -> list:
    """Events from the iterator ``events`` up to and including the first ``until``."""
    taken: list[ProviderEvent] = []

    async def run():
        async for event in events:
            taken.append(event)
            if isinstance(event, until):
                return

    await asyncio.wait_for(run(), TIMEOUT)
    return taken


async def wait_until(predicate) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.fixture
async def opened(provider_harness):
    provider = provider_harness.make()
    await provider.open()
    yield provider
    await provider.close()


def frame_of(fmt: AudioFormat, byte: int) -> bytes:
    """20 ms of audio in ``fmt`` (any byte is a valid sample in every encoding we use)."""
    return bytes([byte]) * fmt.bytes_for_ms(20)


async def test_open_sets_the_audio_formats_and_the_capabilities_are_declared(opened):
    assert isinstance(opened.input_format, AudioFormat)
    assert isinstance(opened.output_format, AudioFormat)
    assert isinstance(type(opened).capabilities, ProviderCapabilities)
    assert opened.id and opened.name


async def test_caller_audio_reaches_the_vendor_in_order(opened, provider_harness):
    frames = [frame_of(opened.input_format, byte) for byte in (0x11, 0x22, 0x33)]
    for frame in frames:
        await opened.send_audio(base64.b64encode(frame).decode("ascii"))
    expected = b"".join(frames)
    await wait_until(lambda: len(provider_harness.caller_audio()) >= len(expected))
    assert provider_harness.caller_audio() == expected


async def test_say_speaks_one_turn_of_agent_audio_under_one_turn_id(opened, provider_harness):
    audio = frame_of(opened.output_format, 0x44) * 5
    provider_harness.script_reply(audio, chunks=5)
    await opened.say("Hello there.")
    events = await take(opened.events(), AgentTurnFinished)
    chunks = [e for e in events if isinstance(e, AgentAudio)]
    assert b"".join(base64.b64decode(c.payload_b64) for c in chunks) == audio
    turn_ids = {e.turn_id for e in events if isinstance(e, AgentAudio | AgentTurnStarted)}
    assert len(turn_ids) == 1 and "" not in turn_ids
    assert events[-1].turn_id in turn_ids | {""} and not events[-1].cancelled
    assert "Hello there." in " ".join(provider_harness.said())


async def test_interrupt_mid_turn_reaches_the_vendor_and_the_next_turn_has_a_new_id(
    opened, provider_harness
):
    provider_harness.script_reply(frame_of(opened.output_format, 0x55) * 20, chunks=20)
    provider_harness.script_reply(frame_of(opened.output_format, 0x66) * 2, chunks=2)
    events = opened.events()
    await opened.say("A long answer.")
    (first,) = [e for e in await take(events, AgentAudio) if isinstance(e, AgentAudio)]
    await opened.interrupt(20)
    if provider_harness.heard() is not None:
        await wait_until(lambda: provider_harness.heard() == [20])
    await opened.say("A short one.")
    later = await take(events, AgentAudio)
    # Audio of the interrupted turn may still be in flight; the next turn's audio must come.
    while later[-1].turn_id == first.turn_id:
        later = await take(events, AgentAudio)
    assert later[-1].turn_id not in ("", first.turn_id)


async def test_close_is_idempotent_and_ends_events_quietly(provider_harness):
    provider = provider_harness.make()
    await provider.open()
    reader = asyncio.ensure_future(take(provider.events(), AgentTurnFinished))
    await asyncio.sleep(0.05)
    await provider.close()
    await provider.close()
    assert await asyncio.wait_for(reader, TIMEOUT) == []


async def test_a_refused_key_raises_a_provider_connection_error(provider_harness):
    provider = provider_harness.make(valid_key=False)
    with pytest.raises(ProviderConnectionError):
        await provider.open()
    await provider.close()  # closing a provider that never opened is fine too


async def test_a_dropped_socket_ends_events_with_an_error(opened, provider_harness):
    await provider_harness.drop()
    with pytest.raises(VoiceAgentsError):
        await take(opened.events(), AgentTurnFinished)
