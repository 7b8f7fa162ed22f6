"""Reconnects for ElevenLabs ConvAI and the pipeline (OpenAI's: test_provider_reconnects.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.calls.harness import ended_call
from tests.calls.test_elevenlabs_convai_calls import (  # noqa: F401 - fixtures
    el,
    el_api,
    transcript,
    twilio_line,
)
from tests.calls.test_pipeline_calls import (  # noqa: F401 - fixtures
    HANDLED,
    _fresh_handled,
    chat,
    deepgram,
    elevenlabs,
    openai_audio,
    say,
    stage_urls,
    tts_texts,
    twilio,
    wait_for,
)
from tests.fakes.elevenlabs_convai import ScriptedReply
from voiceagents.models import CallStatus, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)

RESUME = "Sorry, the line dropped for a moment. I'm back."


# -- ElevenLabs ConvAI ----------------------------------------------------------------------------


async def test_elevenlabs_drop_opens_a_new_conversation_that_knows_the_past_turns(twilio_line, el):
    el.replies.append(ScriptedReply(bytes([0x12]) * 800, "Hello from Acme!"))
    el.replies.append(ScriptedReply(bytes([0x23]) * 800, RESUME))
    call_id, caller = await twilio_line.call()
    await wait_for(lambda: len(caller.media_in) >= 800)
    await el.user_speaks("I lost my card.", reply=False)
    await asyncio.sleep(0.3)
    first = el.conversation
    await el.drop()

    second = await wait_for(
        lambda: len(el.conversations) > 1 and el.conversation.init and el.conversation
    )
    assert second is not first
    agent = second.init["conversation_config_override"]["agent"]
    prompt = agent["prompt"]["prompt"]
    assert prompt.startswith("You work for Acme.")
    assert "Caller: I lost my card." in prompt and "You: Hello from Acme!" in prompt
    # The new conversation opens with the resume line, not the greeting again.
    assert agent["first_message"] == RESUME
    await wait_for(lambda: bytes([0x23]) * 800 in bytes(caller.media_in))
    # Caller audio goes to the new conversation.
    await caller.stream_audio(b"\x55" * 1600, realtime=False)
    await wait_for(lambda: len(second.audio_in) >= 1600)
    await el.user_speaks("Can you block it?", reply=False)
    await asyncio.sleep(0.3)
    await caller.stop()

    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    rows = [(e.role, e.text) for e in await transcript(call_id)]
    assert rows == [
        ("agent", "Hello from Acme!"),
        ("caller", "I lost my card."),
        ("agent", RESUME),
        ("caller", "Can you block it?"),
    ]
    assert call.metrics["provider_reconnects"] == 1


async def test_elevenlabs_drops_up_to_the_limit_fail_the_call_as_provider_lost(
    twilio_line, el, voiceagents_settings
):
    voiceagents_settings["PROVIDER_MAX_FAILURES"] = 2
    el.replies.append(ScriptedReply(bytes([0x12]) * 800, "Hello from Acme!"))
    call_id, caller = await twilio_line.call()
    await wait_for(lambda: len(caller.media_in) >= 800)
    await el.user_speaks("Hello?", reply=False)
    await asyncio.sleep(0.2)
    await el.drop()
    await wait_for(lambda: len(el.conversations) > 1 and el.conversation.init)
    await el.drop()
    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "provider_lost")
    rows = [(e.role, e.text) for e in await transcript(call_id)]
    assert rows[:2] == [("agent", "Hello from Acme!"), ("caller", "Hello?")]


# -- the pipeline: its Deepgram socket --------------------------------------------------------------


async def test_pipeline_stt_drop_reconnects_and_the_reply_stage_keeps_the_history(
    twilio, deepgram, openai_audio, elevenlabs
):
    call_id, caller = await twilio.call(stt="deepgram", tts="elevenlabs")
    await wait_for(lambda: "Hello from Acme!" in tts_texts(elevenlabs, openai_audio))
    await wait_for(lambda: len(caller.media_in) >= 4000)
    await asyncio.sleep(1.2)
    await say(twilio, caller, "deepgram", "book a table", deepgram, openai_audio)
    await wait_for(lambda: "I heard you say: book a table" in tts_texts(elevenlabs, openai_audio))
    await asyncio.sleep(1.0)
    first = deepgram.stream
    await deepgram.drop()

    await wait_for(lambda: len(deepgram.streams) > 1)
    assert deepgram.stream is not first
    await wait_for(lambda: RESUME in " ".join(tts_texts(elevenlabs, openai_audio)))
    await played_to_the_end(call_id, RESUME)  # no barge-in on it
    await say(twilio, caller, "deepgram", "for two", deepgram, openai_audio)
    await wait_for(lambda: "I heard you say: for two" in tts_texts(elevenlabs, openai_audio))
    assert np.any(np.frombuffer(deepgram.stream.audio, dtype=np.uint8) != 0xFF)
    await asyncio.sleep(0.5)
    await caller.stop()

    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    # The reply stage of the new pipeline saw the whole conversation before its turn.
    assert [(h["role"], h["text"]) for h in HANDLED[-1]["history"]] == [
        ("agent", "Hello from Acme!"),
        ("caller", "book a table"),
        ("agent", "I heard you say: book a table"),
        ("agent", RESUME),
    ]
    rows = [(role, text) for role, text, _ in await transcript_rows(call_id)]
    assert rows == [
        ("agent", "Hello from Acme!"),
        ("caller", "book a table"),
        ("agent", "I heard you say: book a table"),
        ("agent", RESUME),
        ("caller", "for two"),
        ("agent", "I heard you say: for two"),
    ]


async def played_to_the_end(call_id, text: str, timeout: float = 10.0) -> None:
    """Wait until the agent turn ``text`` is written: it is once it has played to its end."""
    async with asyncio.timeout(timeout):
        while not await TranscriptEntry.objects.filter(call_id=call_id, text=text).aexists():
            await asyncio.sleep(0.05)


async def transcript_rows(call_id):
    return [(e.role, e.text, e.interrupted) for e in await transcript(call_id)]
