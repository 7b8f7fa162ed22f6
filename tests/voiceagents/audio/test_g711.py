import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagents.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

audioop = pytest.importorskip("audioop", reason="audioop (stdlib up to 3.12, audioop-lts after)")

EVERY_INT16 = np.arange(65536, dtype=np.uint16).view(np.int16)
EVERY_CODE = bytes(range(256))
int16_lists = st.lists(st.integers(-32768, 32767), min_size=1, max_size=400)


def lin2ulaw_reference(s: int) -> int:
    """The classic public-domain encoder (docs/audio.md#two-mu-law-encoders)."""
    sign = 0x80 if s < 0 else 0x00
    if s < 0:
        s = -s
    s = min(s, 32635) + 0x84
    exponent, mask = 7, 0x4000
    while exponent > 0 and not (s & mask):
        exponent -= 1
        mask >>= 1
    mantissa = (s >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def codes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).astype(np.int32)


def test_ulaw_decode_is_bit_exact_with_audioop_for_all_codes():
    expected = np.frombuffer(audioop.ulaw2lin(EVERY_CODE, 2), dtype="<i2")
    np.testing.assert_array_equal(ulaw_decode(EVERY_CODE), expected)


def test_alaw_decode_is_bit_exact_with_audioop_for_all_codes():
    expected = np.frombuffer(audioop.alaw2lin(EVERY_CODE, 2), dtype="<i2")
    np.testing.assert_array_equal(alaw_decode(EVERY_CODE), expected)


def test_ulaw_encode_is_within_one_code_of_audioop_for_every_input():
    ours = codes(ulaw_encode(EVERY_INT16))
    theirs = codes(audioop.lin2ulaw(EVERY_INT16.tobytes(), 2))
    assert np.abs(ours - theirs).max() == 1
    # docs/audio.md#two-mu-law-encoders: identical for non-negative input, 381 negative inputs
    # one code apart.
    assert np.count_nonzero(ours != theirs) == 381
    assert np.all(EVERY_INT16[ours != theirs] < 0)


def test_ulaw_encode_audioop_compatible_mode_matches_byte_for_byte():
    pcm = EVERY_INT16.tobytes()
    assert ulaw_encode(EVERY_INT16, audioop_compatible=True) == audioop.lin2ulaw(pcm, 2)


def test_alaw_encode_matches_audioop_for_every_input():
    pcm = EVERY_INT16.tobytes()
    assert alaw_encode(EVERY_INT16) == audioop.lin2alaw(pcm, 2)
    assert alaw_encode(EVERY_INT16, audioop_compatible=True) == audioop.lin2alaw(pcm, 2)


def test_ulaw_encode_matches_the_protocols_reference_algorithm():
    expected = bytes(lin2ulaw_reference(int(s)) for s in EVERY_INT16)
    assert ulaw_encode(EVERY_INT16) == expected


def test_ulaw_checked_facts_from_protocols():
    assert ulaw_encode(np.array([0], dtype=np.int16)) == b"\xff"
    assert ulaw_decode(b"\xff\x7f\x00\x80").tolist() == [0, 0, -32124, 32124]


def test_encoders_accept_pcm16_bytes_and_reject_odd_lengths():
    samples = np.array([0, 1000, -1000, 32767], dtype=np.int16)
    assert ulaw_encode(samples.tobytes()) == ulaw_encode(samples)
    assert alaw_encode(samples.tobytes()) == alaw_encode(samples)
    with pytest.raises(ValueError):
        ulaw_encode(b"\x00\x01\x02")


def test_silence_codes_decode_to_zero():
    assert ulaw_decode(b"\xff").tolist() == [0]
    assert alaw_decode(b"\xd5").tolist() == [8]  # A-law has no zero code: 0xD5 is the smallest.
    assert alaw_encode(np.zeros(1, dtype=np.int16)) == b"\xd5"


@settings(max_examples=60, deadline=None)
@given(int16_lists)
def test_ulaw_round_trip_error_is_within_half_a_step(values):
    x = np.array(values, dtype=np.int16)
    for compatible in (False, True):
        y = ulaw_decode(ulaw_encode(x, audioop_compatible=compatible)).astype(np.int32)
        error = np.abs(y - x.astype(np.int32))
        assert np.all(error <= (np.abs(x.astype(np.int32)) + 132) // 32 + 4)


@settings(max_examples=60, deadline=None)
@given(int16_lists)
def test_alaw_round_trip_error_is_within_half_a_step(values):
    x = np.array(values, dtype=np.int16)
    y = alaw_decode(alaw_encode(x)).astype(np.int32)
    error = np.abs(y - x.astype(np.int32))
    assert np.all(error <= np.abs(x.astype(np.int32)) // 32 + 16)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=400))
def test_decoded_codes_reencode_to_the_same_level(data):
    for decode, encode in ((ulaw_decode, ulaw_encode), (alaw_decode, alaw_encode)):
        level = decode(data)
        np.testing.assert_array_equal(decode(encode(level)), level)


@settings(max_examples=60, deadline=None)
@given(int16_lists)
def test_ulaw_encode_is_symmetric_around_zero(values):
    x = np.array(values, dtype=np.int16)
    x = x[x > -32768]
    positive = codes(ulaw_encode(np.abs(x)))
    negative = codes(ulaw_encode(-np.abs(x)))
    assert np.all((positive ^ negative)[np.abs(x) > 0] == 0x80)
