"""Twilio calls answered by an OpenAI Realtime agent, through the media consumer and the session."""

import asyncio
import base64
from dataclasses import dataclass

import pytest

from telephony import closecodes
from tests.calls.harness import ended_call
from voiceagents.models import Call, CallStatus, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)

#: Scheduling slack for figures that follow the wall clock (on an idle machine a frame or two):
#: wide enough for a busy 2-core machine. Speed figures belong in ``make bench``.
SLACK_MS = 250


def tone(ms: int, byte: int = 0x10) -> bytes:
    return bytes([byte, byte ^ 0x80]) * (ms * 4)


async def test_caller_audio_reaches_openai_byte_identical_and_first_message_plays(
    create_call, connect_caller, fake_openai
):
    setup = await create_call()
    connected, caller = await connect_caller()
    assert connected
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    audio = bytes(range(256)) * 12  # 3072 bytes, 384 ms
    await caller.stream_audio(audio, realtime=False)
    await fake_openai.wait_for(
        lambda: fake_openai.sessions and len(fake_openai.session.audio_in) >= len(audio)
    )
    assert bytes(fake_openai.session.audio_in) == audio

    update = fake_openai.events_of("session.update")[0]["session"]
    assert update["instructions"] == "You work for Acme."
    assert update["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert update["audio"]["output"]["voice"] == "alloy"
    first = fake_openai.events_of("response.create")[0]
    assert "Hello from Acme!" in first["response"]["instructions"]

    # The default fake reply is 200 ms of audio: it reaches "Twilio" paced in 20 ms frames, with marks.
    await fake_openai.wait_for(lambda: len(caller.media_in) >= 1600)
    assert all(len(base64.b64decode(f["media"]["payload"])) == 160 for f in caller.events("media"))
    assert caller.events("mark")
    await caller.stop()
    await caller.wait_closed()

    call = await Call.objects.aget(pk=setup.call.pk)
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "caller_hangup"
    assert call.duration is not None
    entries = [e async for e in TranscriptEntry.objects.filter(call=call).order_by("seq")]
    assert entries[0].role == "agent"
    assert "Hello from Acme!" in entries[0].text
    assert call.metrics["frames_in"] == -(-len(audio) // 160)  # the last frame is partial


async def test_stream_with_forged_token_is_closed_before_any_provider_connection(
    create_call, connect_caller, fake_openai
):
    setup = await create_call()
    connected, caller = await connect_caller()
    await caller.connected()
    await caller.start({"call_id": str(setup.call.pk), "stream_token": setup.token[:-2] + "xx"})
    assert await caller.wait_closed() == closecodes.FORBIDDEN
    assert fake_openai.connection_attempts == 0


def ulaw_tone(ms: int, freq: float = 440.0, amplitude: float = 8000.0) -> bytes:
    import numpy as np

    from voiceagents.audio.g711 import ulaw_encode

    t = np.arange(ms * 8) / 8000.0
    return ulaw_encode((amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16))


@dataclass
class BargeIn:
    setup: object
    caller: object
    item: str
    streaming: asyncio.Future
    truncate: dict
    played_ms: float  # what the fake Twilio had played when the clear arrived
    acked_ms: float  # ... and what its echoed marks had acknowledged
    first_audio: float  # loop time of the first agent audio at the caller
    barge_in_at: float  # loop time of the clear


async def barge_in(create_call, connect_caller, fake_openai, *, greeting_ms, caller_ms, after_ms):
    """A call whose caller starts talking ``after_ms`` into the agent's greeting."""
    from tests.fakes.openai_realtime import ScriptedResponse

    fake_openai.responses.append(
        ScriptedResponse(audio=ulaw_tone(greeting_ms), transcript="A long greeting.")
    )
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    streaming = asyncio.ensure_future(caller.stream_audio(ulaw_tone(caller_ms, 300), realtime=True))
    await fake_openai.wait_for(lambda: caller.media_in)
    loop = asyncio.get_running_loop()
    first_audio = loop.time()
    await asyncio.sleep(after_ms / 1000)
    item = await fake_openai.speech_started(audio_start_ms=after_ms)
    await fake_openai.wait_for(lambda: caller.clears, timeout=2)
    barge_in_at = loop.time()
    played_ms = caller.playback.played_bytes / 8
    acked_ms = caller.playback.acked_bytes / 8
    truncate = (
        await fake_openai.wait_for(lambda: fake_openai.events_of("conversation.item.truncate"))
    )[0]
    return BargeIn(
        setup, caller, item, streaming, truncate, played_ms, acked_ms, first_audio, barge_in_at
    )


async def test_sparse_marks_still_truncate_to_what_was_played(
    create_call, connect_caller, fake_openai, voiceagents_settings
):
    """Between marks the session estimates playback in real time, bounded by the marks."""
    voiceagents_settings["MARK_INTERVAL_MS"] = 300
    b = await barge_in(
        create_call, connect_caller, fake_openai, greeting_ms=2000, caller_ms=2000, after_ms=750
    )
    # Marks alone would say "acked" (up to 300 ms behind); the estimate follows the playback.
    assert b.truncate["audio_end_ms"] >= b.acked_ms
    assert abs(b.truncate["audio_end_ms"] - b.played_ms) <= SLACK_MS
    assert b.truncate["audio_end_ms"] < 2000  # truncated: not the whole greeting
    await fake_openai.caller_transcript(b.item, "Wait.")
    await b.streaming
    await b.caller.stop()
    await b.caller.wait_closed()


async def test_barge_in_clears_twilio_and_truncates_to_what_was_heard(
    create_call, connect_caller, fake_openai
):
    b = await barge_in(
        create_call, connect_caller, fake_openai, greeting_ms=2000, caller_ms=3000, after_ms=700
    )
    setup, caller, item, truncate = b.setup, b.caller, b.item, b.truncate
    assert truncate["content_index"] == 0
    # What Twilio played: at least what its marks acknowledged, near the playout clock (on an idle
    # machine within a frame or two; the slack is for a busy one), and not the whole greeting.
    assert truncate["audio_end_ms"] >= b.acked_ms
    assert abs(truncate["audio_end_ms"] - b.played_ms) <= SLACK_MS
    assert 500 <= truncate["audio_end_ms"] <= 700 + SLACK_MS < 2000
    # Server VAD cancels the reply itself (interrupt_response): we must not send response.cancel.
    assert not fake_openai.events_of("response.cancel")
    barge_in_at = b.barge_in_at - b.first_audio

    await fake_openai.speech_stopped(item, audio_end_ms=1500)
    await fake_openai.caller_transcript(item, "Wait, I have a question.")
    await b.streaming
    await caller.stop()
    await caller.wait_closed()

    call = await Call.objects.aget(pk=setup.call.pk)
    entries = [e async for e in TranscriptEntry.objects.filter(call=call).order_by("seq")]
    assert [(e.role, e.interrupted) for e in entries] == [("agent", True), ("caller", False)]
    assert entries[0].text == "A long greeting."
    assert entries[1].text == "Wait, I have a question."
    assert entries[0].end_ms - entries[0].start_ms == truncate["audio_end_ms"]
    assert call.metrics["barge_ins"] == 1
    # Agent audio after the clear never reached the caller: far less than the 2 s generated.
    assert len(caller.media_in) / 8 < (barge_in_at * 1000) + 200

    import wave

    import numpy as np

    from voiceagents.audio.g711 import ulaw_decode

    assert call.recording
    with wave.open(call.recording.path) as wav:
        assert wav.getnchannels() == 2
        assert wav.getframerate() == 8000
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    duration_ms = len(frames) / 8
    assert abs(duration_ms - call.metrics["duration_ms"]) <= SLACK_MS
    caller_sent = ulaw_decode(ulaw_tone(3000, 300)).astype(float)
    left = frames[:, 0].astype(float)
    # The caller channel holds the sent tone (timestamps from Twilio place it at 0 ms).
    n = min(len(left), len(caller_sent))
    # At most a little short: the call ended with the audio (on an idle machine within 50 ms; a
    # late fake caller catching up sends timestamps ahead of the call clock, which ends first).
    assert n >= len(caller_sent) - 8 * 2 * SLACK_MS
    corr = np.dot(left[:n], caller_sent[:n]) / (
        np.linalg.norm(left[:n]) * np.linalg.norm(caller_sent[:n])
    )
    assert corr > 0.95
    right = frames[:, 1].astype(float)
    cut_ms = entries[0].end_ms
    assert np.abs(right[: int(cut_ms * 8)]).mean() > 1000  # the agent talked until the barge-in...
    assert np.abs(right[int((cut_ms + 60) * 8) :]).max() == 0  # ...and not after it


async def test_caller_audio_sent_before_the_provider_is_ready_is_buffered_in_order(
    create_call, connect_caller, fake_openai
):
    fake_openai.created_delay = 0.3
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    audio = bytes(range(256)) * 5
    await caller.stream_audio(audio, realtime=False)  # all of it before session.created
    await fake_openai.wait_for(
        lambda: fake_openai.sessions and len(fake_openai.session.audio_in) >= len(audio)
    )
    assert bytes(fake_openai.session.audio_in) == audio
    await caller.stop()
    await caller.wait_closed()


@pytest.mark.parametrize(
    "frame",
    [
        "this is not json",
        '["an", "array"]',
        '{"no_event": 1}',
        '{"event": "teleport"}',
        '{"event": "media", "media": {"payload": "***not base64***"}}',
        '{"event": "media", "media": {}}',
        '{"event": "mark"}',
        '{"event": "dtmf", "dtmf": null}',
        "x" * (1024 * 1024),
    ],
    ids=[
        "not-json",
        "array",
        "no-event",
        "unknown-event",
        "bad-base64",
        "no-payload",
        "mark-no-name",
        "dtmf-null",
        "1MB",
    ],
)
async def test_malformed_frames_are_counted_and_the_call_goes_on(
    create_call, connect_caller, fake_openai, frame
):
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await caller.media(b"\x01" * 160)
    await fake_openai.wait_for(
        lambda: fake_openai.sessions and len(fake_openai.session.audio_in) == 160
    )
    await caller.communicator.send_to(text_data=frame)
    await caller.media(b"\x02" * 160)
    await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) == 320)
    assert bytes(fake_openai.session.audio_in[160:]) == b"\x02" * 160
    await caller.stop()
    await caller.wait_closed()
    call = await Call.objects.aget(pk=setup.call.pk)
    assert call.status == CallStatus.COMPLETED
    assert call.metrics["malformed_frames"] == 1


@pytest.mark.parametrize("how", ["drop", "error"])
async def test_provider_failure_mid_call_fails_the_call_and_keeps_the_transcript(
    create_call, connect_caller, fake_openai, how, voiceagents_settings
):
    voiceagents_settings["PROVIDER_MAX_FAILURES"] = 1  # a drop is not reconnected
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await fake_openai.wait_for(lambda: fake_openai.events_of("response.done") or caller.media_in)
    item = await fake_openai.speech_started(audio_start_ms=100)
    await fake_openai.caller_transcript(item, "Hello?")
    await asyncio.sleep(0.3)
    if how == "drop":
        await fake_openai.drop(1011, "internal error")
    else:
        await fake_openai.error("The server had an error", code="server_error")
    await caller.wait_closed(timeout=5)  # raises if the server never closes the stream

    call = await ended_call(setup.call.pk)
    assert call.status == CallStatus.FAILED
    assert call.end_reason == ("provider_error" if how == "error" else "provider_lost")
    assert ("server_error" if how == "error" else "1011") in call.error
    texts = [e.text async for e in TranscriptEntry.objects.filter(call=call).order_by("seq")]
    assert "Hello?" in texts


async def test_dtmf_goes_to_the_model_and_the_timeline(create_call, connect_caller, fake_openai):
    from voiceagents.models import CallEvent

    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await asyncio.sleep(0.05)
    await caller.dtmf("5")
    created = await fake_openai.wait_for(lambda: fake_openai.events_of("conversation.item.create"))
    assert "5" in created[0]["item"]["content"][0]["text"]
    await caller.stop()
    await caller.wait_closed()
    assert await CallEvent.objects.filter(
        call_id=setup.call.pk, kind="dtmf", data__digit="5"
    ).aexists()


@pytest.mark.parametrize("problem", ["missing", "expired", "reused", "other-call"])
async def test_bad_stream_tokens_are_refused_before_the_provider_is_contacted(
    create_call, connect_caller, fake_openai, problem
):
    import time

    from voiceagents.call import streamtokens

    setup = await create_call()
    params = setup.parameters
    if problem == "missing":
        params = {"call_id": params["call_id"]}
    elif problem == "expired":
        params["stream_token"] = streamtokens.mint(setup.call.pk, now=time.time() - 3600)
    elif problem == "other-call":
        import uuid

        params["stream_token"] = streamtokens.mint(uuid.uuid4())
    elif problem == "reused":
        _, first = await connect_caller()
        await first.connected()
        await first.start(dict(params), call_sid=setup.call.carrier_call_id)
        await fake_openai.wait_for(lambda: fake_openai.connection_attempts == 1)
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(params, call_sid=setup.call.carrier_call_id)
    expected = closecodes.BAD_START if problem == "missing" else closecodes.FORBIDDEN
    assert await caller.wait_closed() == expected
    assert fake_openai.connection_attempts == (1 if problem == "reused" else 0)


async def test_unsigned_stream_handshake_is_refused(connect_caller, fake_openai):
    connected, _ = await connect_caller(headers=[(b"host", b"voice.example.test")])
    assert not connected
    assert fake_openai.connection_attempts == 0


async def test_no_database_query_or_thread_hop_while_media_flows(
    create_call, connect_caller, fake_openai, monkeypatch
):
    from asgiref.sync import SyncToAsync

    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    # Let the first message play out and its transcript row be written.
    await fake_openai.wait_for(lambda: len(caller.media_in) >= 1600)
    await asyncio.sleep(0.6)

    hops = []
    original = SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    before = len(fake_openai.session.audio_in)
    await caller.stream_audio(ulaw_tone(1000), realtime=True)
    await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) - before == 8000)
    assert hops == []
    monkeypatch.setattr(SyncToAsync, "__call__", original)
    await caller.stop()
    await caller.wait_closed()


async def test_hangup_through_the_control_plane_ends_the_call(
    create_call, connect_caller, fake_openai
):
    from voiceagents.call.control import asend_call_command

    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await asend_call_command(setup.call.pk, "hangup", reason="operator_hangup")
    await caller.wait_closed()
    call = await ended_call(setup.call.pk)
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "operator_hangup"


async def test_max_call_duration_ends_the_call(create_call, connect_caller, fake_openai):
    from voiceagents.models import Agent

    setup = await create_call()
    # Below the admin's 10 s minimum on purpose: the session must honour whatever is stored.
    await Agent.objects.filter(pk=setup.agent.pk).aupdate(max_call_duration=1)
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await caller.wait_closed(timeout=5)
    call = await ended_call(setup.call.pk)
    assert call.end_reason == "max_duration"
    assert call.status == CallStatus.COMPLETED


async def test_agent_audio_reaches_twilio_in_order_paced_in_real_time(
    create_call, connect_caller, fake_openai
):
    from tests.fakes.openai_realtime import ScriptedResponse

    pattern = bytes(range(256)) * 47  # 12032 bytes: 1504 ms of μ-law, not a whole number of frames
    fake_openai.responses.append(
        ScriptedResponse(audio=pattern, transcript="Counting.", chunk=1000)
    )
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await fake_openai.wait_for(lambda: len(caller.media_in) >= len(pattern), timeout=5)
    # In order, byte for byte; the last partial frame padded with μ-law silence.
    assert bytes(caller.media_in[: len(pattern)]) == pattern
    assert set(caller.media_in[len(pattern) :]) <= {0xFF}
    # Paced: OpenAI sent 1.5 s of audio at once; it reaches the carrier on a real-time grid, at
    # most the pacer's lead (80 ms) ahead of the playout clock.
    first_time, _ = caller.media_times[0]
    for when, received in caller.media_times:
        ahead_ms = received / 8 - (when - first_time) * 1000
        # Lead + the frame in flight + scheduling slack (a late first read shifts them all);
        # without pacing the whole 1.5 s would be ahead.
        assert ahead_ms <= 80 + 20 + SLACK_MS
    span = caller.media_times[-1][0] - first_time
    assert span >= 1.3
    # Marks follow the audio, in increasing stream positions (probe marks, sent while nothing is
    # queued to time the round trip, are named probe-N).
    names = [int(n) for m in caller.events("mark") if (n := m["mark"]["name"]).isdigit()]
    assert names == sorted(names) and names[-1] >= 1500
    await caller.stop()
    await caller.wait_closed()


async def test_a_valid_token_on_another_calls_stream_is_refused(
    create_call, connect_caller, fake_openai
):
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid="CA" + "f" * 32)
    assert await caller.wait_closed() == closecodes.FORBIDDEN
    assert fake_openai.connection_attempts == 0
