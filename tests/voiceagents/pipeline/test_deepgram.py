"""Deepgram live speech-to-text against the loopback fake (docs/stages/deepgram.md)."""

import asyncio
import json
import socket
from contextlib import asynccontextmanager

import numpy as np
import pytest

from tests.fakes.deepgram import NET_0001, FakeDeepgram
from voiceagents.audio.formats import MULAW_8K, PCM16_8K, PCM16_16K
from voiceagents.audio.g711 import ulaw_encode
from voiceagents.exceptions import ProviderAPIError, ProviderConnectionError
from voiceagents.pipeline.base import SpeechStarted, StageContext, Transcript, UtteranceEnd
from voiceagents.pipeline.deepgram import DeepgramSTT
from voiceagents.providers.base import StageConfig


def make(url, *, key="dg-test-key", model="nova-3", carrier=MULAW_8K, options=None, **kwargs):
    config = StageConfig(id="deepgram", api_key=key, base_url=url, model=model, language="en-US")
    context = StageContext(
        call_id="call-1", carrier_format=carrier, connect_timeout=5, options=options or {}
    )
    return DeepgramSTT(config, context, **kwargs)


@pytest.fixture
async def fake():
    async with FakeDeepgram() as server:
        yield server


@asynccontextmanager
async def opened(stage: DeepgramSTT):
    await stage.open()
    try:
        yield stage
    finally:
        await stage.close()


async def collect(stage, count, timeout=5.0):
    events = []

    async def run():
        async for event in stage.events():
            events.append(event)
            if len(events) >= count:
                return

    await asyncio.wait_for(run(), timeout)
    return events


async def drain(stage, timeout=5.0):
    """Every event until the stream ends (raises what ``events()`` raises)."""
    events = []

    async def run():
        async for event in stage.events():
            events.append(event)

    await asyncio.wait_for(run(), timeout)
    return events


# -- connecting ----------------------------------------------------------------------------------


async def test_mulaw_carrier_streams_mulaw_8k_with_the_token_header(fake):
    async with opened(make(fake.url)) as stage:
        await fake.wait_for(lambda: fake.streams)
        stream = fake.stream
        assert stream.headers["Authorization"] == "Token dg-test-key"
        assert stream.path.startswith("/v1/listen?")
        assert stream.params == {
            "model": "nova-3",
            "encoding": "mulaw",
            "sample_rate": "8000",
            "channels": "1",
            "language": "en-US",
            "interim_results": "true",
            "endpointing": "300",
            "utterance_end_ms": "1000",
            "vad_events": "true",
            "punctuate": "true",
            "smart_format": "true",
        }
        assert stage.input_format == MULAW_8K


@pytest.mark.parametrize("carrier", [PCM16_16K, PCM16_8K])
async def test_other_carriers_stream_linear16_at_16k(fake, carrier):
    async with opened(make(fake.url, carrier=carrier)) as stage:
        await fake.wait_for(lambda: fake.streams)
        assert fake.stream.params["encoding"] == "linear16"
        assert fake.stream.params["sample_rate"] == "16000"
        assert fake.stream.params["channels"] == "1"
        assert stage.input_format == PCM16_16K


async def test_options_set_endpointing_and_pass_stt_options_through(fake):
    options = {
        "endpointing_ms": 550,
        "stt_options": {
            "keyterm": ["Acme", "Invisalign"],
            "diarize": True,
            "numerals": False,
            "utterance_end_ms": 1500,
            "smart_format": None,
            "encoding": "opus",
            "sample_rate": 48000,
        },
    }
    async with opened(make(fake.url, options=options)):
        await fake.wait_for(lambda: fake.streams)
        stream = fake.stream
        assert stream.params["endpointing"] == "550"
        assert stream.param_lists["keyterm"] == ["Acme", "Invisalign"]
        assert stream.params["diarize"] == "true"
        assert stream.params["numerals"] == "false"
        assert stream.params["utterance_end_ms"] == "1500"
        assert "smart_format" not in stream.params
        # The format describes the bytes we send: options cannot change it.
        assert stream.params["encoding"] == "mulaw"
        assert stream.params["sample_rate"] == "8000"


async def test_a_base_url_with_a_query_keeps_it(fake):
    async with opened(make(fake.url + "?tag=support")):
        await fake.wait_for(lambda: fake.streams)
        assert fake.stream.params["tag"] == "support"
        assert fake.stream.params["model"] == "nova-3"


async def test_a_refused_key_raises_the_vendor_message_with_the_status(fake):
    stage = make(fake.url, key="dg-wrong")
    with pytest.raises(ProviderAPIError) as caught:
        await stage.open()
    assert not isinstance(caught.value, ProviderConnectionError)
    assert caught.value.status_code == 401
    assert "Invalid credentials." in str(caught.value)
    assert "dg-wrong" not in str(caught.value)
    assert json.loads(caught.value.response)["err_code"] == "INVALID_AUTH"
    assert fake.refused[0][0] == 401 and not fake.streams
    await stage.close()  # quiet after a failed open


async def test_refused_parameters_raise_the_vendor_message(fake):
    with pytest.raises(ProviderAPIError) as caught:
        await make(fake.url, model="nova-9").open()
    assert caught.value.status_code == 400
    assert "No such model/language/tier combination found." in str(caught.value)


async def test_an_unreachable_service_raises_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderConnectionError):
        await make(f"ws://127.0.0.1:{port}/v1/listen").open()


# -- audio -----------------------------------------------------------------------------------------


async def test_audio_goes_out_byte_identical_as_binary_frames(fake):
    frames = [bytes([i]) * 160 for i in range(0x10, 0x20)] + [bytes(range(256))]
    async with opened(make(fake.url)) as stage:
        for frame in frames:
            await stage.send_audio(frame)
        await fake.wait_for(lambda: len(fake.stream.frames) == len(frames))
        assert fake.stream.frames == frames
        assert fake.stream.texts == []


async def test_keepalive_text_frames_while_no_audio_is_sent(fake):
    async with opened(make(fake.url, keepalive_interval=0.05)):
        await fake.wait_for(lambda: len(fake.stream.messages("KeepAlive")) >= 3)
        assert set(fake.stream.texts) == {'{"type": "KeepAlive"}'}
        assert fake.stream.frames == []


async def test_keepalives_hold_an_idle_stream_open_past_the_idle_timeout():
    async with FakeDeepgram(idle_timeout=0.3) as fake:
        async with opened(make(fake.url, keepalive_interval=0.05)) as stage:
            listening = asyncio.create_task(drain(stage))
            await asyncio.sleep(0.9)
            assert not listening.done()
            assert fake.stream.connection.close_code is None
        assert await listening == []  # closed by us: the stream ends quietly


async def test_no_keepalive_while_audio_flows(fake):
    async with opened(make(fake.url, keepalive_interval=0.3)) as stage:
        for _ in range(40):  # 0.8 s of 20 ms frames
            await stage.send_audio(b"\xff" * 160)
            await asyncio.sleep(0.02)
        assert fake.stream.messages("KeepAlive") == []


async def test_an_idle_stream_without_keepalives_is_closed_with_net_0001():
    async with FakeDeepgram(idle_timeout=0.2) as fake:
        async with opened(make(fake.url, keepalive_interval=60)) as stage:
            with pytest.raises(ProviderConnectionError) as caught:
                await drain(stage)
        assert "1011" in str(caught.value)
        assert NET_0001 in str(caught.value)


# -- events --------------------------------------------------------------------------------------


async def test_each_server_message_is_mapped(fake):
    async with opened(make(fake.url)) as stage:
        await fake.wait_for(lambda: fake.streams)
        await fake.speech_started(0.52)
        await fake.send_results("", is_final=False, start=0.0, duration=0.5)  # silence: skipped
        await fake.send_results("I'd like", is_final=False, start=0.5, duration=0.4)
        await fake.send_results("I'd like to book.", is_final=True, start=0.5, duration=1.25)
        await fake.send({"type": "Metadata", "request_id": "r-1", "duration": 2.0})  # ignored
        await fake.send_results(
            "Tomorrow.", is_final=True, speech_final=True, start=1.75, duration=0.5
        )
        await fake.utterance_end(2.25)
        events = await collect(stage, 5)

    assert events == [
        SpeechStarted(520),
        Transcript("I'd like", final=False, audio_start_ms=500, audio_end_ms=900),
        Transcript("I'd like to book.", final=True, audio_start_ms=500, audio_end_ms=1750),
        Transcript(
            "Tomorrow.", final=True, end_of_turn=True, audio_start_ms=1750, audio_end_ms=2250
        ),
        UtteranceEnd(2250),
    ]
    assert events[0].raw["type"] == "SpeechStarted"
    assert events[1].raw["channel"]["alternatives"][0]["transcript"] == "I'd like"


async def test_an_empty_speech_final_result_ends_the_turn(fake):
    async with opened(make(fake.url)) as stage:
        await fake.wait_for(lambda: fake.streams)
        await fake.send_results("Hello.", is_final=True, start=0.0, duration=0.8)
        await fake.send_results("", is_final=True, speech_final=True, start=0.8, duration=0.4)
        events = await collect(stage, 2)
    assert events == [
        Transcript("Hello.", final=True, audio_start_ms=0, audio_end_ms=800),
        UtteranceEnd(1200),
    ]


async def test_an_error_message_raises_the_vendor_description(fake):
    async with opened(make(fake.url)) as stage:
        await fake.wait_for(lambda: fake.streams)
        await fake.speech_started(0.1)
        await fake.error("Unrecognized message type: Bogus", message='{"type": "Bogus"}')
        events = []
        with pytest.raises(ProviderAPIError) as caught:
            async for event in stage.events():
                events.append(event)
    assert events == [SpeechStarted(100)]
    assert "Unrecognized message type: Bogus" in str(caught.value)
    assert caught.value.context["variant"] == "SchemaError"


async def test_a_drop_raises_a_connection_error(fake):
    async with opened(make(fake.url)) as stage:
        await fake.wait_for(lambda: fake.streams)
        await fake.drop()
        with pytest.raises(ProviderConnectionError) as caught:
            await drain(stage)
    assert "1006" in str(caught.value)


async def test_a_close_we_did_not_ask_for_raises_with_code_and_reason(fake):
    async with opened(make(fake.url)) as stage:
        await fake.wait_for(lambda: fake.streams)
        await fake.close(1011, "NET-0000: internal server error")
        with pytest.raises(ProviderConnectionError) as caught:
            await drain(stage)
        with pytest.raises(ProviderConnectionError):
            await stage.send_audio(b"\xff" * 160)
    assert "code 1011: NET-0000: internal server error" in str(caught.value)


async def test_even_a_normal_close_we_did_not_ask_for_is_a_connection_error(fake):
    async with opened(make(fake.url)) as stage:
        await fake.wait_for(lambda: fake.streams)
        await fake.close(1000)
        with pytest.raises(ProviderConnectionError):
            await drain(stage)


# -- closing -------------------------------------------------------------------------------------


async def test_close_sends_closestream_and_the_stream_ends_with_the_last_results(fake):
    stage = make(fake.url)
    await stage.open()
    listening = asyncio.create_task(drain(stage))
    fake.transcribe_next("See you then.")
    for frame in speech_mulaw(silence_ms=0, speech_ms=300, tail_ms=0):
        await stage.send_audio(frame)
    await fake.wait_for(lambda: fake.stream.speaking is not None)

    await stage.close()
    events = await listening

    assert fake.stream.messages("CloseStream") == [{"type": "CloseStream"}]
    assert fake.stream.connection.close_code == 1000
    # The final result that Deepgram flushed after CloseStream still reached the listener.
    assert [e.text for e in events if isinstance(e, Transcript) and e.final] == ["See you then."]
    await stage.close()  # idempotent
    await stage.send_audio(b"\xff" * 160)  # late audio after close is dropped, not an error
    assert len(fake.stream.messages("CloseStream")) == 1


async def test_close_is_bounded_when_the_server_never_answers(fake):
    fake.answer_close_stream = False
    stage = make(fake.url, close_timeout=0.2)
    await stage.open()
    await fake.wait_for(lambda: fake.streams)
    await asyncio.wait_for(stage.close(), 5)
    assert fake.stream.messages("CloseStream") == [{"type": "CloseStream"}]
    await fake.wait_for(lambda: fake.stream.connection.close_code is not None)


async def test_close_after_a_drop_is_quiet(fake):
    stage = make(fake.url)
    await stage.open()
    await fake.wait_for(lambda: fake.streams)
    await fake.drop()
    with pytest.raises(ProviderConnectionError):
        await drain(stage)
    await stage.close()


async def test_a_cancelled_listener_does_not_hold_up_close(fake):
    stage = make(fake.url)
    await stage.open()
    listening = asyncio.create_task(drain(stage))
    await fake.wait_for(lambda: fake.streams)
    await asyncio.sleep(0.05)
    listening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listening
    await asyncio.wait_for(stage.close(), 5)
    assert fake.stream.messages("CloseStream") == [{"type": "CloseStream"}]
    assert fake.stream.connection.close_code == 1000


# -- the fake's transcription mode ----------------------------------------------------------------


def frames_of(audio: bytes, frame_bytes: int) -> list[bytes]:
    return [audio[i : i + frame_bytes] for i in range(0, len(audio), frame_bytes)]


def sine(ms: int, rate: int, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def speech_mulaw(silence_ms=200, speech_ms=500, tail_ms=400) -> list[bytes]:
    audio = (
        b"\xff" * (8 * silence_ms) + ulaw_encode(sine(speech_ms, 8000)) + b"\xff" * (8 * tail_ms)
    )
    return frames_of(audio, 160)


def speech_pcm16k(silence_ms=200, speech_ms=500, tail_ms=400) -> list[bytes]:
    audio = bytes(32 * silence_ms) + sine(speech_ms, 16000).tobytes() + bytes(32 * tail_ms)
    return frames_of(audio, 640)


@pytest.mark.parametrize(
    ("carrier", "frames"), [(MULAW_8K, speech_mulaw()), (PCM16_16K, speech_pcm16k())]
)
async def test_the_fake_transcribes_the_next_burst_of_speech(fake, carrier, frames):
    fake.transcribe_next("I'd like to book an appointment.")
    async with opened(make(fake.url, carrier=carrier)) as stage:
        for frame in frames:
            await stage.send_audio(frame)
        events = await collect(stage, 3)

    started, interim, final = events
    assert started == SpeechStarted(200)
    assert isinstance(interim, Transcript) and not interim.final
    assert interim.text and "appointment" not in interim.text
    assert final == Transcript(
        "I'd like to book an appointment.",
        final=True,
        end_of_turn=True,
        audio_start_ms=200,
        audio_end_ms=700,
    )


async def test_the_fake_ends_a_turn_without_speech_final_by_utterance_end(fake):
    fake.transcribe_next("Um.", speech_final=False)
    async with opened(make(fake.url)) as stage:
        for frame in speech_mulaw(silence_ms=0, speech_ms=300, tail_ms=1200):
            await stage.send_audio(frame)
        events = await collect(stage, 4)
    assert [type(e).__name__ for e in events] == [
        "SpeechStarted",
        "Transcript",
        "Transcript",
        "UtteranceEnd",
    ]
    assert events[2].final and not events[2].end_of_turn
    assert events[3] == UtteranceEnd(300)


async def test_the_fake_ignores_speech_with_nothing_scripted(fake):
    async with opened(make(fake.url)) as stage:
        for frame in speech_mulaw():
            await stage.send_audio(frame)
        await fake.wait_for(lambda: len(fake.stream.frames) == len(speech_mulaw()))
        fake.transcribe_next("Second.")
        for frame in speech_mulaw():
            await stage.send_audio(frame)
        events = await collect(stage, 3)
    assert events[0] == SpeechStarted(1300)
    assert events[2].text == "Second." and events[2].end_of_turn
