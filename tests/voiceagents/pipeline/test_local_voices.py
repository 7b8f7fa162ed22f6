"""The offline stages, for real: eSpeak NG speaks, PocketSphinx listens, no network."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voiceagents.audio.convert import Converter
from voiceagents.audio.formats import PCM16_16K, AudioFormat, Encoding
from voiceagents.exceptions import ConfigurationError, ImproperlyInstalled, ProviderAPIError
from voiceagents.pipeline.base import (
    SpeechEnded,
    SpeechStarted,
    SpeechSustained,
    StageContext,
    Transcript,
    UtteranceEnd,
)
from voiceagents.pipeline.local_packages import require
from voiceagents.pipeline.local_stt import LocalSTT
from voiceagents.pipeline.local_tts import LocalTTS
from voiceagents.providers.base import StageConfig

WAIT = 30.0
#: The eSpeak voice and rate PocketSphinx understands best (docs/stages/local.md).
CLEAR_VOICE = "en-us+klatt4"
CLEAR_RATE = 150


def context(**options):
    return StageContext(call_id="CA1", carrier_format=PCM16_16K, options=options)


async def speak(text: str, *, voice: str = CLEAR_VOICE, rate: int = CLEAR_RATE) -> bytes:
    """eSpeak's audio for ``text``, resampled to 16 kHz by the audio core as a call would."""
    tts = LocalTTS(
        StageConfig(id="local", voice=voice, language="en"),
        context(tts_options={"rate": rate}),
    )
    await tts.open()
    convert = Converter(tts.output_format, PCM16_16K)
    pcm = b"".join([convert.convert(chunk) async for chunk in tts.synthesize(text)])
    await tts.close()
    return pcm + convert.flush()


async def hear(pcm: bytes, utterances: int = 1) -> list:
    """LocalSTT's events for ``pcm`` (16 kHz, fed in 20 ms frames as a call would), up to the
    end of the ``utterances``-th utterance."""
    stt = LocalSTT(StageConfig(id="local", language="en-US"), context())
    await stt.open()
    assert stt.input_format == PCM16_16K
    step = PCM16_16K.bytes_for_ms(20)
    for i in range(0, len(pcm), step):
        await stt.send_audio(pcm[i : i + step])
    events = []
    try:
        stream = stt.events()
        while sum(isinstance(e, Transcript | UtteranceEnd) for e in events) < utterances:
            events.append(await asyncio.wait_for(anext(stream), WAIT))
    finally:
        await stt.close()
    return events


def transcripts(events) -> list[str]:
    return [event.text for event in events if isinstance(event, Transcript)]


def silence(seconds: float) -> bytes:
    return PCM16_16K.silence(seconds * 1000)


async def test_offline_round_trip_hears_hello():
    heard = await hear(silence(0.5) + await speak("hello world") + silence(1.0))
    [text] = transcripts(heard)
    assert "hello" in text.split()
    kinds = [type(event) for event in heard]
    assert kinds[0] is SpeechStarted
    assert SpeechSustained in kinds and SpeechEnded in kinds
    final = heard[-1]
    assert final.final and final.end_of_turn
    assert final.audio_start_ms < final.audio_end_ms


async def test_two_utterances_apart_give_two_transcripts():
    pcm = (
        silence(0.5)
        + await speak("hello world")
        + silence(1.5)
        + await speak("what time is it")
        + silence(1.0)
    )
    heard = await hear(pcm, utterances=2)
    first, second = [event for event in heard if isinstance(event, Transcript)]
    assert first.end_of_turn and second.end_of_turn
    assert first.audio_end_ms < second.audio_start_ms
    assert "hello" in first.text.split()
    assert sum(isinstance(event, SpeechStarted) for event in heard) == 2


async def test_silence_and_noise_give_no_transcript():
    # A burst the VAD takes for speech but with no words in it ends the utterance with no text.
    rng = np.random.default_rng(1)
    tone = (3000 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)).astype("<i2")
    tone = (tone + rng.integers(-50, 50, tone.size)).astype("<i2").tobytes()
    heard = await hear(silence(0.5) + tone + silence(1.0))
    assert not transcripts(heard)
    assert isinstance(heard[-1], UtteranceEnd)


async def test_tts_speaks_pcm16_at_22050_in_chunks():
    tts = LocalTTS(StageConfig(id="local", voice="en", language="en"), context())
    await tts.open()
    assert tts.output_format == AudioFormat(Encoding.PCM16, 22050)
    chunks = [chunk async for chunk in tts.synthesize("Hello there, this is a test.")]
    await tts.close()
    assert len(chunks) > 3  # streamed in ~100 ms pieces, not one block
    assert all(len(chunk) % 2 == 0 for chunk in chunks)
    samples = np.frombuffer(b"".join(chunks), "<i2")
    assert 0.5 < samples.size / 22050 < 5
    assert np.abs(samples).max() > 3000
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    assert rms > 300


async def test_tts_voice_defaults_to_the_language():
    tts = LocalTTS(StageConfig(id="local", language="de-DE"), context())
    assert tts.voice == "de"
    tts = LocalTTS(StageConfig(id="local", voice="en-gb", language="de-DE"), context())
    assert tts.voice == "en-gb"


async def test_tts_closing_the_stream_early_stops_the_speech():
    tts = LocalTTS(StageConfig(id="local", voice="en"), context())
    await tts.open()
    stream = tts.synthesize("This is a long sentence that goes on and on for a while. " * 5)
    first = await anext(stream)
    await stream.aclose()
    assert first
    # The engine is free again: the next text is spoken whole.
    chunks = [chunk async for chunk in tts.synthesize("Next.")]
    assert chunks


async def test_tts_unknown_voice_is_refused_at_open():
    tts = LocalTTS(StageConfig(id="local", voice="no-such-voice"), context())
    with pytest.raises(ProviderAPIError, match="no-such-voice"):
        await tts.open()


async def test_stt_refuses_a_language_it_has_no_model_for():
    stt = LocalSTT(StageConfig(id="local", language="fr-FR"), context())
    with pytest.raises(ConfigurationError, match="English"):
        await stt.open()


def test_a_missing_package_names_the_offline_extra():
    with pytest.raises(ImproperlyInstalled) as raised:
        require("voiceagents_no_such_module", "pocketsphinx")
    assert "pip install 'django-voiceagents[offline]'" in str(raised.value)
    assert raised.value.missing_package == "pocketsphinx"
    assert require("pocketsphinx", "pocketsphinx").Decoder
