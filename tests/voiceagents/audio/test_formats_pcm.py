import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagents.audio import (
    ALAW_8K,
    MULAW_8K,
    PCM16_16K,
    AudioFormat,
    Encoding,
    SampleCarry,
    apply_gain,
    as_samples,
    db_to_gain,
    downmix,
    mix,
    rms_dbfs,
    silence,
    to_bytes,
    upmix,
)

from .signals import random_splits


def test_audio_format_is_immutable_and_coerces_encoding_names():
    fmt = AudioFormat("pcm16", 24000)
    assert fmt.encoding is Encoding.PCM16 and fmt == AudioFormat(Encoding.PCM16, 24000, 1)
    assert str(fmt) == "pcm16/24000/mono"
    with pytest.raises(AttributeError):
        fmt.sample_rate = 8000  # type: ignore[misc]
    assert len({fmt, AudioFormat("pcm16", 24000)}) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"encoding": "opus", "sample_rate": 8000},
        {"encoding": "mulaw", "sample_rate": 0},
        {"encoding": "mulaw", "sample_rate": 8000.0},
        {"encoding": "mulaw", "sample_rate": 8000, "channels": 0},
    ],
)
def test_audio_format_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        AudioFormat(**kwargs)


def test_frame_sizes_and_durations_follow_protocols():
    assert MULAW_8K.bytes_for_ms(20) == 160
    assert AudioFormat("pcm16", 8000).bytes_for_ms(20) == 320
    assert PCM16_16K.bytes_for_ms(20) == 640
    assert AudioFormat("pcm16", 24000).bytes_for_ms(20) == 960
    assert AudioFormat("pcm16", 22050).bytes_for_ms(20) == 882
    assert AudioFormat("pcm16", 8000, 2).bytes_for_ms(20) == 640
    assert MULAW_8K.duration_ms(8) == 1.0
    assert PCM16_16K.duration_ms(640) == 20.0
    with pytest.raises(ValueError):
        AudioFormat("pcm16", 22050).bytes_for_ms(1)


def test_silence_uses_the_encodings_zero_byte():
    assert MULAW_8K.silence(20) == b"\xff" * 160
    assert ALAW_8K.silence(1) == b"\xd5" * 8
    assert PCM16_16K.silence(1) == b"\x00" * 32
    assert silence(20, 8000) == bytes(320)
    assert silence(20, 8000, channels=2) == bytes(640)


def test_as_samples_is_a_zero_copy_view():
    data = np.arange(-5, 5, dtype="<i2").tobytes()
    samples = as_samples(data)
    assert samples.base is not None and not samples.flags.owndata
    assert samples.tolist() == list(range(-5, 5))
    buf = bytearray(data)
    view = as_samples(buf)
    buf[0:2] = b"\x07\x00"
    assert view[0] == 7
    with pytest.raises(ValueError):
        as_samples(b"\x00\x01\x02")


def test_big_endian_round_trip():
    x = np.array([1, -2, 300, -32768, 32767], dtype=np.int16)
    data = to_bytes(x, big_endian=True)
    assert data[:2] == b"\x00\x01"
    assert as_samples(data, big_endian=True).tolist() == x.tolist()


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=12), st.sampled_from([2, 4]))
def test_sample_carry_never_splits_a_frame(data, cuts, width):
    carry = SampleCarry(width)
    out = b""
    for piece in random_splits(data, cuts):
        whole = carry.feed(piece)
        assert len(whole) % width == 0
        out += bytes(whole)
        assert carry.pending < width
    usable = len(data) - len(data) % width
    assert out == data[:usable]
    assert carry.reset() == data[usable:]


def test_sample_carry_returns_whole_chunks_unchanged():
    carry = SampleCarry(2)
    chunk = b"\x01\x02\x03\x04"
    assert carry.feed(chunk) is chunk


def test_gain_scales_and_saturates():
    x = np.array([1000, -1000, 20000, -20000], dtype=np.int16)
    assert apply_gain(x, 0.5).tolist() == [500, -500, 10000, -10000]
    assert apply_gain(x, 2.0).tolist() == [2000, -2000, 32767, -32768]
    assert db_to_gain(20) == pytest.approx(10.0)
    assert db_to_gain(-6.0206) == pytest.approx(0.5, rel=1e-4)


def test_mix_saturates_and_pads_the_shorter_track():
    a = np.array([30000, -30000, 5], dtype=np.int16)
    b = np.array([10000, -10000], dtype=np.int16)
    assert mix(a, b).tolist() == [32767, -32768, 5]
    assert mix().size == 0


def test_downmix_and_upmix():
    stereo = np.array([100, 300, -100, -301], dtype=np.int16)
    assert downmix(stereo, 2).tolist() == [200, -201]
    assert upmix(np.array([1, 2], dtype=np.int16), 2).tolist() == [1, 1, 2, 2]


def test_rms_dbfs():
    assert rms_dbfs(np.zeros(10, dtype=np.int16)) == float("-inf")
    full = np.full(100, 32767, dtype=np.int16)
    assert rms_dbfs(full) == pytest.approx(0.0, abs=0.01)
    sine = np.rint(16384 * np.sin(np.arange(800) * 2 * np.pi / 80)).astype(np.int16)
    assert rms_dbfs(sine) == pytest.approx(-9.03, abs=0.05)
