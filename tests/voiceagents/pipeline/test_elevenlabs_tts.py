"""The ElevenLabs text-to-speech stage against the fake ElevenLabs API (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from tests.fakes.elevenlabs_api import API_KEY, FakeElevenLabsAPI, tone
from voiceagents.audio.formats import ALAW_8K, MULAW_8K, PCM16_16K
from voiceagents.exceptions import ProviderAPIError, ProviderConnectionError, UnsupportedFeature
from voiceagents.pipeline.base import StageContext
from voiceagents.pipeline.elevenlabs_tts import ElevenLabsTTS
from voiceagents.providers.base import StageConfig

RACHEL = "21m00Tcm4TlvDq8ikWAM"
ADAM = "pNInz6obpgDQGcFmaJgB"
#: Generous bound for anything the fake has to notice (never a timing assertion).
WAIT = 10


@pytest.fixture
def fake():
    with FakeElevenLabsAPI() as api:
        yield api


def make_tts(
    url: str,
    carrier=MULAW_8K,
    *,
    key: str = API_KEY,
    model: str = "eleven_flash_v2_5",
    voice: str = "rachel",
    language: str = "en-GB",
    **options,
) -> ElevenLabsTTS:
    config = StageConfig(
        id="elevenlabs", api_key=key, base_url=url, model=model, voice=voice, language=language
    )
    context = StageContext(call_id="CA1", carrier_format=carrier, options=options)
    return ElevenLabsTTS(config, context)


async def speak(tts: ElevenLabsTTS, text: str) -> list[bytes]:
    return [chunk async for chunk in tts.synthesize(text)]


async def wait_done(request) -> None:
    """Wait for the fake to be done with ``request`` (the client may have every byte a moment
    before the fake's thread records how the request ended)."""
    assert await asyncio.to_thread(request.done.wait, WAIT), "the fake never finished the request"


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- the request -----------------------------------------------------------------------------------


async def test_mulaw_carrier_asks_for_ulaw_and_gets_the_bytes_unchanged(fake):
    fake.tts_chunk_size = 160
    tts = make_tts(fake.url, MULAW_8K)
    await tts.open()
    try:
        chunks = await speak(tts, "Hello, thanks for calling.")
    finally:
        await tts.close()
    assert tts.output_format == MULAW_8K
    request = fake.tts_requests[0]
    assert request.voice_id == RACHEL
    assert request.query == {"output_format": "ulaw_8000"}
    assert request.headers["xi-api-key"] == API_KEY
    assert request.json == {
        "text": "Hello, thanks for calling.",
        "model_id": "eleven_flash_v2_5",
        "language_code": "en",
    }
    await wait_done(request)
    assert request.completed
    # The fake's own 1 kHz μ-law tone, byte for byte: no transcoding on the way.
    assert b"".join(chunks) == bytes(request.sent) == tone(8000, 26 * 60, mulaw=True)


@pytest.mark.parametrize("carrier", [PCM16_16K, ALAW_8K])
async def test_other_carriers_get_pcm_16k(fake, carrier):
    tts = make_tts(fake.url, carrier)
    await tts.open()
    try:
        audio = b"".join(await speak(tts, "Hi."))
    finally:
        await tts.close()
    assert tts.output_format == PCM16_16K
    assert fake.tts_requests[0].query == {"output_format": "pcm_16000"}
    assert audio == tone(16000, 180)


async def test_tts_model_option_and_tts_options(fake):
    tts = make_tts(
        fake.url,
        model="eleven_flash_v2_5",
        tts_model="eleven_multilingual_v2",
        tts_options={
            "voice_settings": {"stability": 0.4, "similarity_boost": 0.8},
            "optimize_streaming_latency": 3,
            "enable_logging": False,
            "output_format": "mp3_44100_128",  # ignored: the carrier decides
        },
    )
    await tts.open()
    try:
        await speak(tts, "Bonjour.")
    finally:
        await tts.close()
    request = fake.tts_requests[0]
    assert request.query == {
        "output_format": "ulaw_8000",
        "optimize_streaming_latency": "3",
        "enable_logging": "false",
    }
    # multilingual v2 takes no language_code: it is left out.
    assert request.json == {
        "text": "Bonjour.",
        "model_id": "eleven_multilingual_v2",
        "voice_settings": {"stability": 0.4, "similarity_boost": 0.8},
    }


async def test_turbo_v2_5_gets_the_language_and_an_empty_model_the_default(fake):
    for model in ("eleven_turbo_v2_5", ""):
        tts = make_tts(fake.url, model=model, language="pt-BR")
        await tts.open()
        try:
            await speak(tts, "Olá.")
        finally:
            await tts.close()
    assert [r.json["model_id"] for r in fake.tts_requests] == [
        "eleven_turbo_v2_5",
        "eleven_flash_v2_5",
    ]
    assert [r.json["language_code"] for r in fake.tts_requests] == ["pt", "pt"]


async def test_voice_names_resolve_and_ids_pass_through(fake):
    for voice in ("Adam", RACHEL):
        tts = make_tts(fake.url, voice=voice)
        await tts.open()
        try:
            await speak(tts, "Hi.")
        finally:
            await tts.close()
    assert [r.voice_id for r in fake.tts_requests] == [ADAM, RACHEL]


async def test_unknown_voice_name_is_refused_before_any_request(fake):
    tts = make_tts(fake.url, voice="nobody")
    with pytest.raises(UnsupportedFeature, match="Unknown ElevenLabs voice 'nobody'"):
        await tts.open()
    await tts.close()
    assert fake.tts_requests == []


async def test_empty_text_sends_nothing(fake):
    tts = make_tts(fake.url)
    await tts.open()
    try:
        assert await speak(tts, "  ") == []
    finally:
        await tts.close()
    assert fake.tts_requests == []


async def test_sentences_share_one_connection(fake):
    tts = make_tts(fake.url)
    await tts.open()
    try:
        await speak(tts, "First sentence.")
        await speak(tts, "Second sentence.")
    finally:
        await tts.close()
    first, second = fake.tts_requests
    assert first.client == second.client


# -- streaming -------------------------------------------------------------------------------------


async def test_audio_is_yielded_before_the_response_is_finished(fake):
    fake.tts_gate = threading.Event()
    fake.tts_chunk_size = 320
    tts = make_tts(fake.url, PCM16_16K)
    await tts.open()
    try:
        stream = tts.synthesize("A sentence long enough for several chunks.")
        first = await anext(stream)
        request = fake.tts_requests[0]
        # The fake is holding the rest of the body until the gate opens.
        assert request.chunks == 1 and not request.completed
        assert first == bytes(request.sent)
        fake.tts_gate.set()
        rest = [chunk async for chunk in stream]
    finally:
        await tts.close()
    await wait_done(request)
    assert request.completed and request.chunks > 1
    assert first + b"".join(rest) == bytes(request.sent)


async def test_pcm_chunks_keep_whole_samples(fake):
    # Odd chunks split samples in two; the first one is held at the gate so it arrives alone.
    fake.tts_gate = threading.Event()
    fake.tts_chunk_size = 333
    tts = make_tts(fake.url, PCM16_16K)
    await tts.open()
    try:
        stream = tts.synthesize("Odd chunks, whole samples.")
        first = await anext(stream)
        fake.tts_gate.set()
        chunks = [first] + [chunk async for chunk in stream]
    finally:
        await tts.close()
    # At most the 333 bytes sent so far arrived: an odd byte waits for its other half.
    assert 0 < len(first) <= 333
    assert all(len(chunk) % 2 == 0 for chunk in chunks)
    assert b"".join(chunks) == bytes(fake.tts_requests[0].sent)


async def test_closing_the_stream_closes_the_request(fake):
    fake.tts_gate = threading.Event()
    tts = make_tts(fake.url)
    await tts.open()
    try:
        stream = tts.synthesize("The caller will interrupt this sentence.")
        await anext(stream)
        await stream.aclose()  # a barge-in
        request = fake.tts_requests[0]
        await wait_done(request)
        assert request.disconnected and not request.completed
        assert request.chunks == 1
        # The next sentence still works, on a new connection.
        fake.tts_gate = None
        assert await speak(tts, "Sorry, go ahead.")
    finally:
        fake.tts_gate = None
        await tts.close()
    await wait_done(fake.tts_requests[1])
    assert fake.tts_requests[1].completed
    assert fake.tts_requests[1].client != request.client


async def test_cancelling_the_task_closes_the_request(fake):
    fake.tts_gate = threading.Event()
    tts = make_tts(fake.url, PCM16_16K)
    await tts.open()
    first_chunk = asyncio.Event()

    async def play():
        async for _ in tts.synthesize("This will be cancelled mid-sentence."):
            first_chunk.set()

    task = asyncio.create_task(play())
    try:
        await asyncio.wait_for(first_chunk.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        request = fake.tts_requests[0]
        await wait_done(request)
        assert request.disconnected and not request.completed
    finally:
        await tts.close()


# -- errors ----------------------------------------------------------------------------------------


async def test_wrong_key_is_an_api_error_with_the_vendors_message(fake):
    tts = make_tts(fake.url, key="sk_wrong")
    await tts.open()
    try:
        with pytest.raises(ProviderAPIError) as caught:
            await speak(tts, "Hello.")
    finally:
        await tts.close()
    assert caught.value.status_code == 401
    assert "Invalid API key" in str(caught.value)
    assert "check the API key" in str(caught.value)
    assert "sk_wrong" not in str(caught.value)


async def test_unknown_voice_id_is_an_api_error_with_the_vendors_message(fake):
    tts = make_tts(fake.url, voice="AAAAAAAAAAAAAAAAAAAA")
    await tts.open()
    try:
        with pytest.raises(ProviderAPIError) as caught:
            await speak(tts, "Hello.")
    finally:
        await tts.close()
    assert caught.value.status_code == 404
    assert "A voice with the voice_id AAAAAAAAAAAAAAAAAAAA was not found." in str(caught.value)
    assert caught.value.vendor == "elevenlabs"
    assert caught.value.call_id == "CA1"


async def test_refusal_by_script_keeps_the_vendors_status(fake):
    fake.fail_next(
        429,
        {"detail": {"status": "too_many_concurrent_requests", "message": "Too many requests"}},
    )
    tts = make_tts(fake.url)
    await tts.open()
    try:
        with pytest.raises(ProviderAPIError, match="Too many requests") as caught:
            await speak(tts, "Hello.")
    finally:
        await tts.close()
    assert caught.value.status_code == 429


async def test_unreachable_service_is_a_connection_error():
    tts = make_tts(closed_port_url())
    await tts.open()
    try:
        with pytest.raises(ProviderConnectionError, match="cannot reach ElevenLabs"):
            await speak(tts, "Hello.")
    finally:
        await tts.close()


async def test_connection_closed_without_an_answer_is_a_connection_error(fake):
    fake.drop_next()
    tts = make_tts(fake.url)
    await tts.open()
    try:
        with pytest.raises(ProviderConnectionError):
            await speak(tts, "Hello.")
    finally:
        await tts.close()


async def test_drop_in_the_middle_of_the_audio_is_a_connection_error(fake):
    fake.tts_drop_after = 2
    fake.tts_chunk_size = 160
    tts = make_tts(fake.url)
    await tts.open()
    received = bytearray()
    try:
        with pytest.raises(ProviderConnectionError, match="dropped"):
            async for chunk in tts.synthesize("A sentence cut short by the vendor."):
                received += chunk
    finally:
        await tts.close()
    assert fake.tts_requests[0].dropped
    assert bytes(received) == bytes(fake.tts_requests[0].sent)


async def test_close_is_idempotent_and_synthesize_after_close_refuses(fake):
    tts = make_tts(fake.url)
    await tts.open()
    await tts.close()
    await tts.close()
    with pytest.raises(ProviderConnectionError, match="not open"):
        await speak(tts, "Hello.")
