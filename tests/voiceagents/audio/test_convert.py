import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagents.audio import (
    ALAW_8K,
    MULAW_8K,
    PCM16_8K,
    PCM16_16K,
    PCM16_24K,
    AudioFormat,
    Converter,
    alaw_encode,
    as_samples,
    ulaw_decode,
    ulaw_encode,
)
from voiceagents.audio.convert import decode

from .signals import RATES, peak_frequency, random_splits, tone

WIRE_FORMATS = [
    MULAW_8K,
    ALAW_8K,
    AudioFormat("pcm16be", 16000),
    *(AudioFormat("pcm16", rate) for rate in RATES),
]
PATHS = [(a, b) for a in WIRE_FORMATS for b in WIRE_FORMATS if a != b]


def encoded_tone(fmt: AudioFormat, freq: float = 1000, seconds: float = 1.0) -> bytes:
    samples = tone(freq, fmt.sample_rate, seconds, amplitude=12000)
    return Converter(AudioFormat("pcm16", fmt.sample_rate), fmt).convert(samples.tobytes())


@pytest.mark.parametrize("fmt", [*WIRE_FORMATS, AudioFormat("pcm16", 8000, 2)], ids=str)
def test_matching_formats_pass_the_very_same_object_through(fmt):
    converter = Converter(fmt, AudioFormat(fmt.encoding, fmt.sample_rate, fmt.channels))
    chunk = bytes(range(256)) * 3
    assert converter.passthrough
    assert converter.convert(chunk) is chunk
    assert converter(chunk) is chunk
    assert converter.latency_ms == 0 and converter.flush() == b""


@pytest.mark.parametrize(("src", "dst"), PATHS, ids=lambda f: str(f))
def test_a_1_khz_tone_keeps_its_frequency_through_every_path(src, dst):
    converter = Converter(src, dst)
    out = converter.convert(encoded_tone(src)) + converter.flush()
    samples = decode(out, dst.encoding)
    settle = dst.sample_rate // 50
    assert peak_frequency(samples[settle:-settle], dst.sample_rate) == pytest.approx(1000, abs=0.5)
    assert abs(len(samples) - dst.sample_rate) <= dst.sample_rate * 0.01


def test_same_rate_transcoding_is_the_g711_codec():
    samples = tone(440, 8000, 0.1)
    assert Converter(PCM16_8K, MULAW_8K).convert(samples.tobytes()) == ulaw_encode(samples)
    assert Converter(PCM16_8K, ALAW_8K).convert(samples.tobytes()) == alaw_encode(samples)
    data = ulaw_encode(samples)
    assert Converter(MULAW_8K, PCM16_8K).convert(data) == ulaw_decode(data).tobytes()


def test_audioop_compatible_flag_reaches_the_encoder():
    samples = np.arange(-2000, 0, dtype=np.int16)
    out = Converter(PCM16_8K, MULAW_8K, audioop_compatible=True).convert(samples.tobytes())
    assert out == ulaw_encode(samples, audioop_compatible=True)
    assert out != ulaw_encode(samples)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([(PCM16_24K, MULAW_8K), (MULAW_8K, PCM16_24K), (PCM16_16K, PCM16_8K)]),
    st.lists(st.integers(0, 1600), max_size=20),
)
def test_any_split_including_odd_bytes_converts_like_the_whole(pair, cuts):
    src, dst = pair
    data = encoded_tone(src, 700, 0.05)
    whole = Converter(src, dst).convert(data)
    converter = Converter(src, dst)
    assert b"".join(converter.convert(part) for part in random_splits(data, cuts)) == whole


def test_stereo_is_mixed_down_and_mono_duplicated_up():
    stereo = AudioFormat("pcm16", 8000, 2)
    frames = np.array([100, 300, -50, -150], dtype=np.int16)
    assert as_samples(Converter(stereo, PCM16_8K).convert(frames.tobytes())).tolist() == [200, -100]
    up = Converter(PCM16_8K, stereo).convert(np.array([5, -7], dtype=np.int16).tobytes())
    assert as_samples(up).tolist() == [5, 5, -7, -7]


def test_stereo_resampling_keeps_channels_apart():
    stereo_16k = AudioFormat("pcm16", 16000, 2)
    stereo_8k = AudioFormat("pcm16", 8000, 2)
    left, right = tone(500, 16000, 0.5), tone(1500, 16000, 0.5)
    data = np.column_stack((left, right)).ravel().tobytes()
    out = as_samples(Converter(stereo_16k, stereo_8k).convert(data)).reshape(-1, 2)
    assert peak_frequency(out[100:, 0], 8000) == pytest.approx(500, abs=1)
    assert peak_frequency(out[100:, 1], 8000) == pytest.approx(1500, abs=1)


def test_reset_forgets_carried_bytes_and_history():
    converter = Converter(PCM16_24K, MULAW_8K)
    data = tone(1000, 24000, 0.05).tobytes()
    first = converter.convert(data)
    converter.convert(b"\x01")
    converter.reset()
    assert converter.convert(data) == first
