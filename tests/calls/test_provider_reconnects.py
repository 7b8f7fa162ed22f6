"""A provider socket that drops mid-call: the call reconnects, with the conversation so far."""

import asyncio
import wave

import numpy as np
import pytest

from tests.calls.harness import ended_call
from tests.fakes.openai_realtime import ScriptedResponse
from voiceagents.models import CallEvent, CallStatus, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)

RESUME = "Sorry, the line dropped for a moment. I'm back."


async def _live_call(create_call, connect_caller, fake_openai):
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await fake_openai.wait_for(lambda: fake_openai.events_of("response.create"))
    await fake_openai.wait_for(lambda: len(caller.media_in) >= 1600)  # the greeting played
    return setup, caller


async def _caller_says(fake_openai, text: str) -> None:
    item = await fake_openai.speech_started(audio_start_ms=100)
    await fake_openai.speech_stopped(item, audio_end_ms=600)
    await fake_openai.caller_transcript(item, text)


async def _entries(call):
    return [
        (e.role, e.text) async for e in TranscriptEntry.objects.filter(call=call).order_by("seq")
    ]


async def test_a_drop_reconnects_with_the_instructions_and_the_past_turns(
    create_call, connect_caller, fake_openai
):
    setup, caller = await _live_call(create_call, connect_caller, fake_openai)
    await _caller_says(fake_openai, "I need a plumber.")
    await asyncio.sleep(0.3)  # the transcript reaches the session

    first = fake_openai.session
    second = await fake_openai.drop_and_wait_reconnect()
    assert second is not first
    update = [e for e in second.received if e["type"] == "session.update"][0]["session"]
    assert update["instructions"] == "You work for Acme."
    assert fake_openai.conversation_items(second) == [
        (
            "assistant",
            "Say exactly the following to the caller, word for word, and nothing else: "
            "Hello from Acme!",
        ),
        ("user", "I need a plumber."),
    ]
    # The agent says it is back, in the new session.
    resumed = await fake_openai.wait_for(
        lambda: [e for e in second.received if e["type"] == "response.create"]
    )
    assert RESUME in resumed[0]["response"]["instructions"]
    # Caller audio now goes to the new session.
    await caller.stream_audio(b"\x55" * 1600, realtime=False)
    await fake_openai.wait_for(lambda: len(second.audio_in) >= 1600)
    await _caller_says(fake_openai, "Thanks, bye.")
    await asyncio.sleep(0.3)
    await caller.stop()
    await caller.wait_closed()

    call = await ended_call(setup.call.pk)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    entries = await _entries(call)
    assert [role for role, _ in entries] == ["agent", "caller", "agent", "caller"]
    assert "Hello from Acme!" in entries[0][1]
    assert entries[1][1] == "I need a plumber."
    assert RESUME in entries[2][1]
    assert entries[3][1] == "Thanks, bye."
    assert call.metrics["provider_reconnects"] == 1
    # What both sessions used is counted: 50 audio tokens out per finished response, in the fake.
    done = [
        sum(e["type"] == "response.done" for e in session.sent) for session in fake_openai.sessions
    ]
    assert len(done) == 2 and min(done) >= 1
    assert call.metrics["usage"][0]["output_audio_tokens"] == 50 * sum(done)
    kinds = [e.kind async for e in CallEvent.objects.filter(call=call)]
    assert "provider_lost" in kinds and "provider_reconnected" in kinds
    # The recording covers the whole call, both sides of the gap.
    with wave.open(call.recording.path) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert abs(len(frames) / 8 - call.metrics["duration_ms"]) <= 100


async def test_the_gap_is_filled_with_a_comfort_tone(
    create_call, connect_caller, fake_openai, voiceagents_settings
):
    voiceagents_settings["RECONNECT_FILLER_MS"] = 600
    setup, caller = await _live_call(create_call, connect_caller, fake_openai)
    before = len(caller.media_in)
    await fake_openai.drop_and_wait_reconnect()
    # 600 ms of tone at 8 kHz μ-law reach the caller before the resume line does.
    await fake_openai.wait_for(lambda: len(caller.media_in) >= before + 4800)
    tone = bytes(caller.media_in[before : before + 4800])
    assert len(set(tone)) > 4  # a tone, not μ-law silence
    await caller.stop()
    await caller.wait_closed()


async def test_after_the_last_allowed_failure_the_call_fails_as_provider_lost(
    create_call, connect_caller, fake_openai, voiceagents_settings
):
    voiceagents_settings["PROVIDER_MAX_FAILURES"] = 3
    setup, caller = await _live_call(create_call, connect_caller, fake_openai)
    await _caller_says(fake_openai, "Are you there?")
    await asyncio.sleep(0.3)
    await fake_openai.drop_and_wait_reconnect()
    await fake_openai.drop_and_wait_reconnect()
    await fake_openai.drop(1011, "internal error")  # the third failure
    await caller.wait_closed(timeout=5)  # our side closed the stream: Twilio hangs up

    call = await ended_call(setup.call.pk)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "provider_lost")
    assert "1011" in call.error
    assert len(fake_openai.sessions) == 3
    entries = await _entries(call)
    assert ("caller", "Are you there?") in entries
    assert call.recording


async def test_a_reconnect_that_cannot_open_counts_as_a_failure(
    create_call, connect_caller, fake_openai, voiceagents_settings
):
    voiceagents_settings["PROVIDER_MAX_FAILURES"] = 2
    setup, caller = await _live_call(create_call, connect_caller, fake_openai)
    fake_openai.api_key = "sk-revoked"  # every new connection is refused
    await fake_openai.drop(1011, "internal error")
    await caller.wait_closed(timeout=5)
    call = await ended_call(setup.call.pk)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "provider_lost")
    assert fake_openai.connection_attempts == 2  # the call's connection and one reconnect


async def test_a_session_near_its_maximum_length_is_renewed_between_turns(
    create_call, connect_caller, fake_openai, voiceagents_settings
):
    voiceagents_settings["OPENAI_REALTIME_MAX_SESSION"] = 0.5
    setup, caller = await _live_call(create_call, connect_caller, fake_openai)
    await _caller_says(fake_openai, "What are your hours?")
    await asyncio.sleep(0.6)
    await fake_openai.respond(ScriptedResponse(audio=b"\x7f" * 800, transcript="Nine to five."))
    second = await fake_openai.wait_for(
        lambda: (
            len(fake_openai.sessions) >= 2
            and fake_openai.sessions[1].config
            and fake_openai.sessions[1]
        )
    )
    await asyncio.sleep(0.1)
    assert ("user", "What are your hours?") in fake_openai.conversation_items(second)
    assert ("assistant", "Nine to five.") in fake_openai.conversation_items(second)
    # Renewed silently: the agent says nothing new, and the old session is closed.
    assert not [e for e in second.received if e["type"] == "response.create"]
    await fake_openai.wait_for(lambda: fake_openai.sessions[0].connection.state.name == "CLOSED")
    await caller.stream_audio(b"\x55" * 1600, realtime=False)
    await fake_openai.wait_for(lambda: len(second.audio_in) >= 1600)
    await caller.stop()
    await caller.wait_closed()
    call = await ended_call(setup.call.pk)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    assert call.metrics["provider_renewals"] >= 1
    texts = [text for _, text in await _entries(call)]
    assert "What are your hours?" in texts and "Nine to five." in texts
