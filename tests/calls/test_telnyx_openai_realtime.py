"""Telnyx calls answered by an OpenAI Realtime agent: the webhook, the media consumer, the session.

Every call starts at the signed ``call.initiated`` webhook; the stream token, ``client_state`` and
codec are taken from the ``streaming_start`` command that reached the loopback fake Telnyx API, and
a ``WebsocketCommunicator`` then plays Telnyx's media stream with them.
"""

from __future__ import annotations

import asyncio
import base64
import time
import wave
from dataclasses import dataclass

import numpy as np
import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from telephony import closecodes
from tests.calls.harness import ring_telnyx
from tests.fakes import telnyx as fake
from tests.fakes.openai_realtime import ScriptedResponse
from tests.voiceagents.audio.signals import db, fit_tone, peak_frequency, rms, tone
from voiceagents.audio.g711 import ulaw_encode
from voiceagents.models import (
    Agent,
    Call,
    CallEvent,
    CallStatus,
    TranscriptEntry,
)

pytestmark = pytest.mark.django_db(transaction=True)

KEY = fake.keypair("telnyx call-path tests")
MEDIA_PATH = "/telephony/telnyx/media/"
#: Scheduling slack for figures that follow the wall clock (on an idle machine a frame or two):
#: wide enough for a busy 2-core machine. Speed figures belong in ``make bench``.
SLACK_MS = 250
L16_BYTES_PER_MS = 32  # 16 kHz, 16-bit
PCM24_BYTES_PER_MS = 48  # OpenAI audio/pcm: 24 kHz, 16-bit little-endian


@pytest.fixture(autouse=True)
def _no_telnyx_settings_from_the_environment(monkeypatch):
    for name in ("TELNYX_PUBLIC_KEY", "TELNYX_API_KEY", "TELNYX_API_URL", "TELNYX_L16_BYTE_ORDER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api():
    with fake.FakeTelnyxAPI() as server:
        yield server


@dataclass
class Incoming:
    """What Telnyx knows about a call we answered: from our answer and streaming_start commands."""

    call_id: str
    call_control_id: str
    token: str
    client_state: str
    codec: str


@pytest.fixture
def ring(fake_openai, recordings_dir, api, async_client):
    """``await ring(codec)``: a signed call.initiated for a number with that codec."""

    async def ring(codec: str = "L16") -> Incoming:
        got = await ring_telnyx(async_client, api, KEY, fake_openai.url, codec)
        return Incoming(
            got.call_id, got.carrier_call_id, got.token, got.extra["client_state"], codec
        )

    return ring


class CommunicatorCaller(fake.FakeTelnyxCaller):
    """The fake Telnyx media stream over Channels' WebsocketCommunicator."""

    def __init__(self, communicator: WebsocketCommunicator, **kwargs):
        self.communicator = communicator
        self.close_code = None
        super().__init__(self._send, self._receive, **kwargs)

    async def _send(self, text: str):
        await self.communicator.send_to(text_data=text)

    async def _receive(self, timeout: float):
        message = await self.communicator.receive_output(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code")
            return None
        return message.get("text")

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code


@pytest.fixture
async def connect():
    """``await connect(incoming)``: Telnyx opens the media stream; returns ``(accepted, caller)``."""
    from telephony.routing import websocket_urlpatterns

    opened: list[WebsocketCommunicator] = []
    callers: list[CommunicatorCaller] = []

    async def connect(incoming: Incoming, *, header_token: str | None = "same", frame_token=None):
        token = incoming.token if header_token == "same" else header_token
        headers = [(b"host", b"voice.example.test")]
        if token is not None:
            headers.append((b"x-telnyx-streaming-auth-token", token.encode()))
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), MEDIA_PATH, headers=headers
        )
        opened.append(communicator)
        accepted, _ = await communicator.connect(timeout=10)
        caller = CommunicatorCaller(
            communicator,
            call_control_id=incoming.call_control_id,
            bytes_per_ms=L16_BYTES_PER_MS if incoming.codec == "L16" else 8,
        )
        callers.append(caller)
        return accepted, caller

    yield connect
    for caller in callers:
        await caller.aclose()
    for communicator in opened:
        try:
            await communicator.disconnect(timeout=10)
        except Exception:  # noqa: BLE001 - already closed by the server
            pass


async def answered(connect, incoming: Incoming, **start_kwargs) -> CommunicatorCaller:
    accepted, caller = await connect(incoming)
    assert accepted
    await caller.connected(incoming.token)
    if incoming.codec == "PCMU":
        start_kwargs.setdefault("encoding", "PCMU")
        start_kwargs.setdefault("sample_rate", 8000)
    await caller.start(incoming.client_state, **start_kwargs)
    return caller


async def wait_final(call_id, timeout: float = 5.0) -> Call:
    deadline = time.monotonic() + timeout
    while True:
        call = await Call.objects.aget(pk=call_id)
        if call.is_final or time.monotonic() > deadline:
            return call
        await asyncio.sleep(0.05)


# -- audio helpers ---------------------------------------------------------------------------------


def l16(samples: np.ndarray, order: str = "big") -> bytes:
    return samples.astype(">i2" if order == "big" else "<i2").tobytes()


def from_l16(data: bytes, order: str = "big") -> np.ndarray:
    return np.frombuffer(data[: len(data) // 2 * 2], dtype=">i2" if order == "big" else "<i2")


def assert_clean_tone(samples: np.ndarray, rate: int, freq: float = 1000.0) -> None:
    """A pure ``freq`` tone: the peak is there and the rest is at least 30 dB below it."""
    assert abs(peak_frequency(samples, rate) - freq) < 3
    amplitude, residual = fit_tone(samples, freq, rate)
    assert db(amplitude / np.sqrt(2) / max(rms(residual), 1e-9)) > 30, "the tone is not clean"


# -- audio both ways -------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["big", "little"])
async def test_l16_tone_from_telnyx_reaches_openai_as_clean_24k_pcm(
    ring, connect, fake_openai, voiceagents_settings, order
):
    voiceagents_settings["TELNYX_L16_BYTE_ORDER"] = order
    incoming = await ring("L16")
    caller = await answered(connect, incoming)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    update = fake_openai.events_of("session.update")[0]["session"]
    assert update["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}

    await caller.stream_audio(l16(tone(1000, 16000, 2.0, 8000), order), realtime=False)
    received = await fake_openai.wait_for(
        lambda: len(fake_openai.session.audio_in) >= 1980 * PCM24_BYTES_PER_MS
    )
    await asyncio.sleep(0.1)  # nothing more is coming
    received = bytes(fake_openai.session.audio_in)
    assert abs(len(received) / PCM24_BYTES_PER_MS - 2000) <= 20
    samples = np.frombuffer(received, dtype="<i2")
    assert_clean_tone(samples[2400:-2400], 24000)  # away from the filter's edges
    await caller.stop()
    await caller.wait_closed()


@pytest.mark.parametrize("order", ["big", "little"])
async def test_agent_audio_returns_as_l16_16k_of_the_right_duration(
    ring, connect, fake_openai, voiceagents_settings, order
):
    voiceagents_settings["TELNYX_L16_BYTE_ORDER"] = order
    agent_audio = tone(1000, 24000, 1.0, 8000).astype("<i2").tobytes()  # OpenAI audio/pcm
    fake_openai.responses.append(
        ScriptedResponse(audio=agent_audio, transcript="Beep.", chunk=4800)
    )
    incoming = await ring("L16")
    caller = await answered(connect, incoming)

    await fake_openai.wait_for(lambda: len(caller.media_in) >= 980 * L16_BYTES_PER_MS, timeout=5)
    await asyncio.sleep(0.2)
    frames = caller.events("media")
    assert all(len(base64.b64decode(f["media"]["payload"])) == 640 for f in frames)
    assert set(frames[0]) == {"event", "media"} and set(frames[0]["media"]) == {"payload"}
    assert abs(len(caller.media_in) / L16_BYTES_PER_MS - 1000) <= 20
    samples = from_l16(bytes(caller.media_in), order)
    assert_clean_tone(samples[1600:-1600], 16000)
    assert caller.events("mark")
    await caller.stop()
    await caller.wait_closed()


async def test_pcmu_passes_through_unchanged_both_ways(ring, connect, fake_openai):
    pattern = ulaw_encode(tone(440, 8000, 0.6, 8000))
    fake_openai.responses.append(ScriptedResponse(audio=pattern, transcript="Hi."))
    incoming = await ring("PCMU")
    caller = await answered(connect, incoming)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    update = fake_openai.events_of("session.update")[0]["session"]
    assert update["audio"]["input"]["format"] == {"type": "audio/pcmu"}

    audio = bytes(range(256)) * 10
    await caller.stream_audio(audio, realtime=False)
    await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) >= len(audio))
    assert bytes(fake_openai.session.audio_in) == audio
    await fake_openai.wait_for(lambda: len(caller.media_in) >= len(pattern))
    assert bytes(caller.media_in[: len(pattern)]) == pattern
    assert all(len(base64.b64decode(f["media"]["payload"])) == 160 for f in caller.events("media"))
    await caller.stop()
    await caller.wait_closed()


async def test_inbound_audio_in_another_format_than_negotiated_is_converted(
    ring, connect, fake_openai
):
    """Telnyx may not honour stream_codec: the start frame says what really comes."""
    incoming = await ring("L16")
    caller = await answered(connect, incoming, encoding="PCMU", sample_rate=8000)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    caller.frame_bytes = 160
    await caller.stream_audio(ulaw_encode(tone(1000, 8000, 1.0, 8000)), realtime=False)
    await fake_openai.wait_for(
        lambda: len(fake_openai.session.audio_in) >= 980 * PCM24_BYTES_PER_MS
    )
    samples = np.frombuffer(bytes(fake_openai.session.audio_in), dtype="<i2")
    assert_clean_tone(samples[2400:-2400], 24000)
    await caller.stop()
    await caller.wait_closed()


# -- barge-in --------------------------------------------------------------------------------------


async def _barge_in(ring, connect, fake_openai, *, ack_marks: bool, after: float):
    fake_openai.responses.append(
        ScriptedResponse(
            audio=tone(300, 24000, 3.0, 8000).astype("<i2").tobytes(),
            transcript="A long greeting.",
            chunk=4800,
        )
    )
    incoming = await ring("L16")
    caller = await answered(connect, incoming)
    caller.ack_marks = ack_marks
    await fake_openai.wait_for(lambda: caller.media_in)
    await asyncio.sleep(after)
    item = await fake_openai.speech_started(audio_start_ms=int(after * 1000))
    await fake_openai.wait_for(lambda: caller.clears, timeout=2)
    truncate = (
        await fake_openai.wait_for(lambda: fake_openai.events_of("conversation.item.truncate"))
    )[0]
    await fake_openai.speech_stopped(item, audio_end_ms=int(after * 1000) + 500)
    await fake_openai.caller_transcript(item, "Wait.")
    await caller.stop()
    await caller.wait_closed()
    return incoming, caller, truncate


async def test_barge_in_clears_telnyx_and_truncates_to_the_acknowledged_marks(
    ring, connect, fake_openai, voiceagents_settings
):
    voiceagents_settings["MARK_INTERVAL_MS"] = 20  # a mark per frame: "± one frame" is exact
    incoming, caller, truncate = await _barge_in(
        ring, connect, fake_openai, ack_marks=True, after=0.7
    )
    assert caller.clears == 1 and caller.events("clear") == [{"event": "clear"}]
    played, acked = caller.at_clear[0]
    # A mark per frame: the acknowledged marks, give or take what a busy machine acks meanwhile.
    assert abs(truncate["audio_end_ms"] - acked) <= SLACK_MS
    assert 500 <= truncate["audio_end_ms"] <= 700 + SLACK_MS < 3000

    call = await wait_final(incoming.call_id)
    entries = [e async for e in TranscriptEntry.objects.filter(call=call).order_by("seq")]
    assert [(e.role, e.interrupted) for e in entries] == [("agent", True), ("caller", False)]
    assert entries[0].end_ms - entries[0].start_ms == truncate["audio_end_ms"]
    assert call.metrics["telnyx"]["mark_fallbacks"] == 0


async def test_without_mark_echoes_barge_in_uses_the_pacers_estimate(ring, connect, fake_openai):
    incoming, caller, truncate = await _barge_in(
        ring, connect, fake_openai, ack_marks=False, after=1.2
    )
    played, acked = caller.at_clear[0]
    assert acked == 0  # Telnyx confirmed nothing...
    assert abs(truncate["audio_end_ms"] - played) <= 40  # ...yet the truncation is what was heard
    call = await wait_final(incoming.call_id)
    assert call.metrics["telnyx"]["mark_fallbacks"] == 1
    # Marks stopped once the first was overdue (sent at 40 ms, due ~80 ms later plus the 500 ms
    # grace); the audio went on to the barge-in.
    last_mark = max(int(n) for f in caller.events("mark") if (n := f["mark"]["name"]).isdigit())
    assert last_mark < 800 < 1100 < call.metrics["frames_out"] * 20


async def test_without_mark_echoes_a_second_barge_in_is_estimated_too(ring, connect, fake_openai):
    """A clear must not make us trust marks again that Telnyx never echoes."""
    long_reply = tone(300, 24000, 3.0, 8000).astype("<i2").tobytes()
    fake_openai.responses.append(ScriptedResponse(audio=long_reply, transcript="One.", chunk=4800))
    incoming = await ring("L16")
    caller = await answered(connect, incoming)
    caller.ack_marks = False
    await fake_openai.wait_for(lambda: caller.media_in)
    await asyncio.sleep(1.0)
    await fake_openai.speech_started(audio_start_ms=1000)
    await fake_openai.wait_for(lambda: caller.clears == 1, timeout=2)
    heard_before = len(caller.media_in)
    await fake_openai.respond(ScriptedResponse(audio=long_reply, transcript="Two.", chunk=4800))
    await fake_openai.wait_for(lambda: len(caller.media_in) > heard_before, timeout=2)
    await asyncio.sleep(0.3)  # well within the mark grace: only the pacer can know
    await fake_openai.speech_started(audio_start_ms=2000)
    await fake_openai.wait_for(lambda: caller.clears == 2, timeout=2)
    truncates = await fake_openai.wait_for(
        lambda: (
            len(fake_openai.events_of("conversation.item.truncate")) == 2
            and fake_openai.events_of("conversation.item.truncate")
        )
    )
    (first_played, _), (second_played, _) = caller.at_clear
    assert abs(truncates[1]["audio_end_ms"] - (second_played - first_played)) <= SLACK_MS
    assert truncates[1]["audio_end_ms"] < 3000  # truncated: not the whole reply
    assert truncates[1]["audio_end_ms"] >= 200
    await caller.stop()
    await caller.wait_closed()


# -- the end of the call ---------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["webhook", "stop"])
async def test_hangup_webhook_completes_the_call_with_transcript_and_recording(
    ring, connect, fake_openai, async_client, first
):
    incoming = await ring("L16")
    caller = await answered(connect, incoming)
    sent = tone(1000, 16000, 1.5, 8000)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await caller.stream_audio(l16(sent), realtime=True)
    await fake_openai.wait_for(lambda: caller.media_in)  # the first message (33 ms of audio)
    hangup = fake.call_hangup(incoming.call_control_id, "normal_clearing", "caller")
    if first == "webhook":
        assert (await fake.post(async_client, hangup, KEY)).status_code == 200
        await caller.stop()
        await caller.wait_closed()
    else:
        await caller.stop()
        await caller.wait_closed()
        await asyncio.sleep(0.2)
        assert (await fake.post(async_client, hangup, KEY)).status_code == 200
    await asyncio.sleep(0.3)

    call = await Call.objects.aget(pk=incoming.call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    assert call.duration is not None
    texts = [e.text async for e in TranscriptEntry.objects.filter(call=call).order_by("seq")]
    assert "Hello from Acme!" in texts[0]
    assert call.recording
    with wave.open(call.recording.path) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert abs(len(frames) / 8 - call.metrics["duration_ms"]) <= SLACK_MS
    left = frames[:, 0]
    voiced = left[np.abs(left) > 0]
    assert len(voiced) / 8 >= 1400  # the caller's 1.5 s tone is on the left channel...
    assert_clean_tone(voiced[800:-800], 8000)  # ...intact after 16 kHz → 8 kHz
    assert np.abs(frames[:, 1]).max() > 0  # and the agent's first message on the right


async def test_provider_lost_hangs_up_over_rest_and_stays_failed(
    ring, connect, fake_openai, api, async_client, voiceagents_settings
):
    voiceagents_settings["PROVIDER_MAX_FAILURES"] = 3
    incoming = await ring("L16")
    caller = await answered(connect, incoming)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    # Two drops are reconnected; the third failure ends the call.
    await fake_openai.drop_and_wait_reconnect()
    await fake_openai.drop_and_wait_reconnect()
    assert not api.of("hangup")
    await fake_openai.drop(1011, "internal error")
    await caller.wait_closed()
    hangups = await api.wait_for(lambda: api.of("hangup"))
    assert hangups[0].call_control_id == incoming.call_control_id
    # Telnyx then reports our hang-up; the session's reason stands.
    await fake.post(
        async_client, fake.call_hangup(incoming.call_control_id, "normal_clearing", "callee"), KEY
    )
    call = await wait_final(incoming.call_id)
    await asyncio.sleep(0.2)
    call = await Call.objects.aget(pk=incoming.call_id)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "provider_lost")
    assert "1011" in call.error


async def test_hangup_through_the_control_plane_hangs_up_over_rest(ring, connect, fake_openai, api):
    from voiceagents.call.control import asend_call_command

    incoming = await ring("PCMU")
    caller = await answered(connect, incoming)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await asend_call_command(incoming.call_id, "hangup", reason="operator_hangup")
    await caller.wait_closed()
    (hangup,) = await api.wait_for(lambda: api.of("hangup"))
    assert hangup.call_control_id == incoming.call_control_id
    call = await wait_final(incoming.call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "operator_hangup")


# -- stream authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["forged", "other-call", "mismatch"])
async def test_bad_stream_auth_is_refused_before_any_provider_connection(
    ring, connect, fake_openai, api, problem
):
    from voiceagents.call import streamtokens

    incoming = await ring("L16")
    header, frame = incoming.token, incoming.token
    if problem == "forged":
        header = frame = incoming.token[:-2] + "xx"
    elif problem == "other-call":
        import uuid

        header = frame = streamtokens.mint(uuid.uuid4())
    else:
        frame = streamtokens.mint(incoming.call_id)  # valid, but not the header's
    accepted, caller = await connect(incoming, header_token=header)
    assert accepted
    await caller.connected(frame)
    await caller.start(incoming.client_state)
    assert await caller.wait_closed() == closecodes.FORBIDDEN
    assert fake_openai.connection_attempts == 0
    assert not api.of("hangup")


async def test_a_handshake_without_the_auth_token_is_refused(ring, connect, fake_openai):
    """The token in the ``connected`` frame alone is not enough: the upgrade must carry it."""
    incoming = await ring("PCMU")
    accepted, _ = await connect(incoming, header_token=None)
    assert not accepted
    assert fake_openai.connection_attempts == 0


async def test_the_call_id_may_come_from_custom_parameters(ring, connect, fake_openai):
    incoming = await ring("PCMU")
    accepted, caller = await connect(incoming)
    await caller.connected()
    await caller.start(
        None, encoding="PCMU", sample_rate=8000, custom_parameters={"call_id": incoming.call_id}
    )
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await caller.stop()
    await caller.wait_closed()


async def test_a_replayed_token_is_refused_without_hanging_up_the_real_call(
    ring, connect, fake_openai, api
):
    incoming = await ring("PCMU")
    first = await answered(connect, incoming)
    await fake_openai.wait_for(lambda: fake_openai.connection_attempts == 1)
    second = await answered(connect, incoming)
    assert await second.wait_closed() == closecodes.FORBIDDEN
    await asyncio.sleep(0.2)
    assert not api.of("hangup") and not first.closed.is_set()
    await first.stop()
    await first.wait_closed()


async def test_a_stream_for_an_agent_gone_meanwhile_is_hung_up(ring, connect, fake_openai, api):
    incoming = await ring("PCMU")
    await Agent.objects.all().aupdate(enabled=False)
    accepted, caller = await connect(incoming)
    await caller.connected()
    await caller.start(incoming.client_state, encoding="PCMU", sample_rate=8000)
    assert await caller.wait_closed() == closecodes.CALL_UNAVAILABLE
    (hangup,) = await api.wait_for(lambda: api.of("hangup"))
    assert hangup.call_control_id == incoming.call_control_id
    assert fake_openai.connection_attempts == 0


# -- robustness ------------------------------------------------------------------------------------


async def test_frames_out_of_order_are_put_back_duplicates_and_the_outbound_track_dropped(
    ring, connect, fake_openai
):
    incoming = await ring("PCMU")
    caller = await answered(connect, incoming)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    frames = {n: bytes([n]) * 160 for n in range(1, 13)}
    order = [1, 3, 2, 4, 5, 7, 6, 8, 8, 5]  # swaps, a repeat and a late one
    for n in order:
        await caller.send(
            fake.media(caller.stream_id, frames[n], chunk=n, sequence_number=caller.next_seq())
        )
    await caller.send(
        fake.media(
            caller.stream_id,
            b"\x00" * 160,
            chunk=99,
            sequence_number=caller.next_seq(),
            track="outbound",
        )
    )
    for n in (10, 11, 12):  # 9 is lost
        await caller.send(
            fake.media(caller.stream_id, frames[n], chunk=n, sequence_number=caller.next_seq())
        )
    expected = b"".join(frames[n] for n in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12))
    await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) >= len(expected))
    await asyncio.sleep(0.1)
    assert bytes(fake_openai.session.audio_in) == expected
    await caller.stop()
    await caller.wait_closed()
    call = await wait_final(incoming.call_id)
    stats = call.metrics["telnyx"]
    assert (stats["late_frames"], stats["missing_frames"], stats["other_track_frames"]) == (2, 1, 1)
    assert stats["reordered_frames"] >= 2


@pytest.mark.parametrize(
    "frame",
    [
        "this is not json",
        '["an", "array"]',
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
        "unknown-event",
        "bad-base64",
        "no-payload",
        "mark-no-name",
        "dtmf-null",
        "1MB",
    ],
)
async def test_malformed_frames_are_counted_and_the_call_goes_on(ring, connect, fake_openai, frame):
    incoming = await ring("PCMU")
    caller = await answered(connect, incoming)
    await caller.media(b"\x01" * 160)
    await fake_openai.wait_for(
        lambda: fake_openai.sessions and len(fake_openai.session.audio_in) == 160
    )
    await caller.communicator.send_to(text_data=frame)
    await caller.media(b"\x02" * 160)
    await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) == 320)
    await caller.stop()
    await caller.wait_closed()
    call = await wait_final(incoming.call_id)
    assert call.metrics["malformed_frames"] == 1


async def test_dtmf_and_stream_errors_reach_the_model_and_the_timeline(ring, connect, fake_openai):
    incoming = await ring("PCMU")
    caller = await answered(connect, incoming)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await asyncio.sleep(0.05)
    await caller.dtmf("7")
    await caller.error(code=100003, title="Malformed frame")
    created = await fake_openai.wait_for(lambda: fake_openai.events_of("conversation.item.create"))
    assert "7" in created[0]["item"]["content"][0]["text"]
    await caller.stop()
    await caller.wait_closed()
    call = await wait_final(incoming.call_id)
    assert call.metrics["telnyx"]["stream_errors"] == 1
    assert await CallEvent.objects.filter(call=call, kind="dtmf", data__digit="7").aexists()
    assert await CallEvent.objects.filter(call=call, kind="error", data__code="100003").aexists()


async def test_no_database_query_or_thread_hop_while_media_flows(
    ring, connect, fake_openai, monkeypatch
):
    from asgiref.sync import SyncToAsync

    incoming = await ring("L16")
    caller = await answered(connect, incoming)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await fake_openai.wait_for(lambda: caller.media_in)
    await asyncio.sleep(0.6)  # the first message played and its transcript row written

    hops = []
    original = SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    before = len(fake_openai.session.audio_in)
    await caller.stream_audio(l16(tone(440, 16000, 1.0, 8000)), realtime=True)
    await fake_openai.wait_for(
        lambda: len(fake_openai.session.audio_in) - before >= 990 * PCM24_BYTES_PER_MS
    )
    assert hops == []
    monkeypatch.setattr(SyncToAsync, "__call__", original)
    await caller.stop()
    await caller.wait_closed()
