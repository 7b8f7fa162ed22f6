"""The OpenAI TTS stage against the fake OpenAI audio API (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import socket
import threading

import numpy as np
import pytest

from tests.fakes.openai_audio import API_KEY, TONE_HZ, FakeOpenAIAudio
from tests.voiceagents.audio.signals import peak_frequency
from voiceagents.audio.formats import MULAW_8K, PCM16_16K, PCM16_24K
from voiceagents.exceptions import ProviderAPIError, ProviderConnectionError
from voiceagents.pipeline.base import StageContext
from voiceagents.pipeline.openai_tts import MAX_INPUT_CHARS, OpenAITTS, split_input
from voiceagents.providers.base import StageConfig

TEXT = "Hello, thanks for calling. How can I help you today?"


@pytest.fixture
def fake():
    with FakeOpenAIAudio() as server:
        yield server


def make_tts(url, *, key=API_KEY, carrier=MULAW_8K, model="", voice="", **options):
    config = StageConfig(id="openai_tts", api_key=key, base_url=url, model=model, voice=voice)
    context = StageContext(
        call_id="CA1", carrier_format=carrier, connect_timeout=5, http_timeout=5, options=options
    )
    return OpenAITTS(config, context)


async def speak(tts, text=TEXT) -> list[bytes]:
    return [chunk async for chunk in tts.synthesize(text)]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/audio/speech"


async def wait_for(event: threading.Event) -> bool:
    return await asyncio.to_thread(event.wait, 5)


@pytest.mark.parametrize("carrier", [MULAW_8K, PCM16_16K])
async def test_output_is_pcm_24k_whatever_the_carrier(fake, carrier):
    tts = make_tts(fake.speech_url, carrier=carrier)
    await tts.open()
    assert tts.output_format == PCM16_24K
    audio = b"".join(await speak(tts))
    await tts.close()
    assert audio == fake.speech_pcm(TEXT)


async def test_request_defaults(fake):
    tts = make_tts(fake.speech_url)
    await tts.open()
    await speak(tts)
    await tts.close()
    [request] = fake.speech_requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {
        "model": "gpt-4o-mini-tts",
        "voice": "alloy",
        "input": TEXT,
        "response_format": "pcm",
    }


async def test_request_uses_config_and_options(fake):
    tts = make_tts(
        fake.speech_url,
        model="tts-1",
        voice="coral",
        tts_model="gpt-4o-mini-tts-2025-12-15",
        tts_options={"instructions": "Warm and brisk.", "speed": 1.2, "response_format": "mp3"},
    )
    await tts.open()
    await speak(tts)
    await tts.close()
    assert fake.speech_requests[0].json == {
        "model": "gpt-4o-mini-tts-2025-12-15",  # tts_model wins over the stage's model
        "voice": "coral",
        "instructions": "Warm and brisk.",
        "speed": 1.2,
        "input": TEXT,
        "response_format": "pcm",  # never anything we cannot play
    }


async def test_model_of_the_stage_when_no_tts_model(fake):
    tts = make_tts(fake.speech_url, model="tts-1-hd")
    await tts.open()
    await speak(tts)
    await tts.close()
    assert fake.speech_requests[0].json["model"] == "tts-1-hd"


@pytest.mark.parametrize("chunk_size", [1, 3, 4801, 1000])
async def test_chunks_are_whole_samples_and_the_audio_is_intact(fake, chunk_size):
    fake.chunk_size = chunk_size
    fake.ms_per_char = 5 if chunk_size < 10 else 40
    tts = make_tts(fake.speech_url)
    await tts.open()
    chunks = await speak(tts)
    await tts.close()
    assert all(len(chunk) % 2 == 0 and chunk for chunk in chunks)
    audio = b"".join(chunks)
    assert audio == fake.speech_pcm(TEXT)
    samples = np.frombuffer(audio, dtype="<i2")
    assert peak_frequency(samples, 24000) == pytest.approx(TONE_HZ, abs=5)


async def test_audio_arrives_before_the_response_is_complete(fake):
    fake.hold_after_first_chunk = threading.Event()
    tts = make_tts(fake.speech_url)
    await tts.open()
    stream = tts.synthesize(TEXT)
    first = await anext(stream)
    request = fake.speech_requests[0]
    assert first and not request.finished  # the fake is still holding the rest back
    fake.hold_after_first_chunk.set()
    rest = [chunk async for chunk in stream]
    await tts.close()
    assert first + b"".join(rest) == fake.speech_pcm(TEXT)
    assert request.finished


async def test_closing_the_stream_early_closes_the_request(fake):
    fake.chunk_size = 960
    fake.chunk_delay = 0.01
    tts = make_tts(fake.speech_url)
    await tts.open()
    stream = tts.synthesize(TEXT * 20)
    await anext(stream)
    await stream.aclose()
    request = fake.speech_requests[0]
    assert await wait_for(request.done)
    assert request.disconnected and not request.finished
    assert request.sent < len(fake.speech_pcm(TEXT * 20))
    await tts.close()


async def test_cancelling_the_task_closes_the_request(fake):
    fake.chunk_size = 960
    fake.chunk_delay = 0.01
    tts = make_tts(fake.speech_url)
    await tts.open()
    got_audio = asyncio.Event()

    async def play():
        async for _chunk in tts.synthesize(TEXT * 20):
            got_audio.set()

    task = asyncio.create_task(play())
    await asyncio.wait_for(got_audio.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    request = fake.speech_requests[0]
    assert await wait_for(request.done)
    assert request.disconnected and not request.finished
    await tts.close()


async def test_the_client_is_reused_after_a_barge_in(fake):
    fake.chunk_size = 960
    fake.chunk_delay = 0.01
    tts = make_tts(fake.speech_url)
    await tts.open()
    stream = tts.synthesize(TEXT * 20)
    await anext(stream)
    await stream.aclose()
    fake.chunk_delay = 0
    assert b"".join(await speak(tts, "Sorry, go ahead.")) == fake.speech_pcm("Sorry, go ahead.")
    await tts.close()


async def test_a_wrong_key_raises_openais_message(fake):
    tts = make_tts(fake.speech_url, key="sk-wrong")
    await tts.open()
    with pytest.raises(ProviderAPIError) as caught:
        await speak(tts)
    await tts.close()
    assert caught.value.status_code == 401
    assert caught.value.vendor == "openai"
    assert "Incorrect API key provided" in str(caught.value)


async def test_a_refused_request_raises_openais_message(fake):
    fake.fail_next(
        400,
        {
            "error": {
                "message": "Input should be 'alloy', 'ash', 'ballad' or 'coral'",
                "type": "invalid_request_error",
                "param": "voice",
                "code": None,
            }
        },
    )
    tts = make_tts(fake.speech_url, voice="rachel")
    await tts.open()
    with pytest.raises(ProviderAPIError, match="Input should be 'alloy'") as caught:
        await speak(tts)
    await tts.close()
    assert caught.value.status_code == 400


async def test_a_server_error_without_json_still_raises(fake):
    fake.fail_next(503, "upstream unavailable")
    tts = make_tts(fake.speech_url)
    await tts.open()
    with pytest.raises(ProviderAPIError, match="upstream unavailable") as caught:
        await speak(tts)
    await tts.close()
    assert caught.value.status_code == 503


async def test_unreachable_service_is_a_connection_error():
    tts = make_tts(closed_port_url())
    await tts.open()
    with pytest.raises(ProviderConnectionError):
        await speak(tts)
    await tts.close()


async def test_a_dropped_request_is_a_connection_error(fake):
    fake.drop_next()
    tts = make_tts(fake.speech_url)
    await tts.open()
    with pytest.raises(ProviderConnectionError):
        await speak(tts)
    await tts.close()


async def test_a_stream_cut_midway_is_a_connection_error(fake):
    fake.chunk_size = 960
    fake.cut_speech_after = 960 * 3
    tts = make_tts(fake.speech_url)
    await tts.open()
    received = []
    with pytest.raises(ProviderConnectionError):
        async for chunk in tts.synthesize(TEXT):
            received.append(chunk)
    await tts.close()
    assert 0 < len(b"".join(received)) <= 960 * 3


async def test_blank_text_makes_no_request(fake):
    tts = make_tts(fake.speech_url)
    await tts.open()
    assert await speak(tts, "  \n") == []
    await tts.close()
    assert fake.speech_requests == []


async def test_long_text_is_spoken_in_several_requests(fake):
    fake.ms_per_char = 1
    sentences = [f"This is sentence number {n} of a very long answer." for n in range(200)]
    text = " ".join(sentences)
    assert len(text) > MAX_INPUT_CHARS
    tts = make_tts(fake.speech_url)
    await tts.open()
    audio = b"".join(await speak(tts, text))
    await tts.close()
    inputs = [request.json["input"] for request in fake.speech_requests]
    assert len(inputs) == 3
    assert all(len(piece) <= MAX_INPUT_CHARS for piece in inputs)
    assert all(piece.endswith("long answer.") for piece in inputs)  # cut between sentences
    assert " ".join(inputs) == text
    assert audio == b"".join(fake.speech_pcm(piece) for piece in inputs)


def test_split_input_falls_back_to_words_then_characters():
    words = " ".join(["word"] * 30)  # one 149-character sentence
    pieces = split_input(words, limit=40)
    assert all(len(piece) <= 40 for piece in pieces)
    assert " ".join(pieces) == words
    assert all(set(piece.split()) == {"word"} for piece in pieces)
    assert split_input("x" * 100, limit=40) == ["x" * 40, "x" * 40, "x" * 20]
    assert split_input("Short. Text.", limit=40) == ["Short. Text."]


async def test_close_is_idempotent_and_synthesize_after_close_fails(fake):
    tts = make_tts(fake.speech_url)
    await tts.open()
    await tts.close()
    await tts.close()
    with pytest.raises(ProviderConnectionError):
        await speak(tts)
