"""G.711 µ-law and A-law over whole buffers, with numpy lookup tables.

Decoding is one 256-entry table lookup, encoding one 65,536-entry lookup indexed by the sample's
bit pattern, so a 20 ms frame costs about a microsecond and no per-sample Python runs.

Two µ-law encoders exist and both are valid G.711 (docs/audio.md#two-mu-law-encoders):

* the classic reference (BIAS 0x84, CLIP 32635), the default, symmetric around zero;
* the Sun g711.c variant used by CPython's ``audioop``, which shifts to 14 bits first and so
  differs by one code for 381 negative inputs. ``audioop_compatible=True`` selects it, for tests
  that compare bytes with recordings made by ``audioop``.

A-law has a single definition (Sun g711.c, identical to ``audioop``); the flag is accepted for
symmetry and changes nothing. Decoding is bit-exact with ``audioop`` for all 256 codes of both laws.
"""

from __future__ import annotations

import numpy as np

from .pcm import as_samples

__all__ = [
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

_BIAS = 0x84
_CLIP = 32635


def _all_int16() -> np.ndarray:
    """Every int16 value, ordered by its unsigned bit pattern (index == value & 0xFFFF)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _highest_bit(values: np.ndarray) -> np.ndarray:
    """Index of the highest set bit of positive ints (exact: frexp is exact on integers)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int32) - 1


def _build_ulaw_encode_classic() -> np.ndarray:
    s = _all_int16()
    sign = np.where(s < 0, 0x80, 0x00)
    mag = np.minimum(np.abs(s), _CLIP) + _BIAS
    exponent = _highest_bit(mag) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def _build_ulaw_encode_audioop() -> np.ndarray:
    s = _all_int16() >> 2
    mask = np.where(s < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(s), 8159) + 0x21
    seg_end = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    return (np.where(seg >= 8, 0x7F, code) ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def _build_alaw_encode() -> np.ndarray:
    s = _all_int16() >> 3
    negative = s < 0
    mask = np.where(negative, 0x55, 0xD5)
    mag = np.where(negative, -s - 1, s)
    seg_end = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    shift = np.where(seg < 2, 1, seg)
    code = (np.minimum(seg, 7) << 4) | ((mag >> shift) & 0x0F)
    return (np.where(seg >= 8, 0x7F, code) ^ mask).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    mantissa = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    mag = np.where(seg == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, mag, -mag).astype(np.int16)


def _frozen(table: np.ndarray) -> np.ndarray:
    table.flags.writeable = False
    return table


_ULAW_ENCODE = _frozen(_build_ulaw_encode_classic())
_ULAW_ENCODE_AUDIOOP = _frozen(_build_ulaw_encode_audioop())
_ULAW_DECODE = _frozen(_build_ulaw_decode())
_ALAW_ENCODE = _frozen(_build_alaw_encode())
_ALAW_DECODE = _frozen(_build_alaw_decode())


def _codes(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.view(np.uint8) if data.dtype != np.uint8 else data
    return np.frombuffer(data, dtype=np.uint8)


def _bit_patterns(samples: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if not isinstance(samples, np.ndarray):
        samples = as_samples(samples)
    elif samples.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {samples.dtype}")
    return samples.view(np.uint16)


def ulaw_decode(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """µ-law bytes to int16 samples (a new array, bit-exact with ``audioop.ulaw2lin``)."""
    return _ULAW_DECODE[_codes(data)]


def ulaw_encode(
    samples: bytes | bytearray | memoryview | np.ndarray, *, audioop_compatible: bool = False
) -> bytes:
    """int16 samples (array, or PCM16 little-endian bytes) to µ-law bytes."""
    table = _ULAW_ENCODE_AUDIOOP if audioop_compatible else _ULAW_ENCODE
    return table[_bit_patterns(samples)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A-law bytes to int16 samples (a new array, bit-exact with ``audioop.alaw2lin``)."""
    return _ALAW_DECODE[_codes(data)]


def alaw_encode(
    samples: bytes | bytearray | memoryview | np.ndarray, *, audioop_compatible: bool = False
) -> bytes:
    """int16 samples (array, or PCM16 little-endian bytes) to A-law bytes (same as ``audioop``)."""
    return _ALAW_ENCODE[_bit_patterns(samples)].tobytes()
