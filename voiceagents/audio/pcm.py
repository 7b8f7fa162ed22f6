"""PCM16 helpers: bytes to samples without copying, byte carry across chunks, gain, mixing.

Network chunks split samples wherever they like (a WebSocket message of PCM16 may end on an odd
byte); :class:`SampleCarry` keeps the leftover so no sample is ever split or shifted, which is the
usual cause of "static" in bridges.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SampleCarry",
    "apply_gain",
    "as_samples",
    "db_to_gain",
    "downmix",
    "mix",
    "rms_dbfs",
    "silence",
    "to_bytes",
    "upmix",
]

_INT16_MIN = -32768
_INT16_MAX = 32767

Buffer = bytes | bytearray | memoryview


def as_samples(data: Buffer, *, big_endian: bool = False) -> np.ndarray:
    """View PCM16 bytes as int16 samples without copying.

    The view shares memory with ``data`` (read-only for ``bytes``). Big-endian input is byte
    swapped into a new native array. Raises ``ValueError`` on an odd byte count: use
    :class:`SampleCarry` for streams.
    """
    if len(data) % 2:
        raise ValueError(f"PCM16 data has an odd byte count ({len(data)})")
    if big_endian:
        return np.frombuffer(data, dtype=">i2").astype(np.int16)
    return np.frombuffer(data, dtype="<i2")


def to_bytes(samples: np.ndarray, *, big_endian: bool = False) -> bytes:
    """int16 samples to PCM16 bytes (one copy, the unavoidable one into a ``bytes`` object)."""
    dtype = ">i2" if big_endian else "<i2"
    return samples.astype(dtype, copy=False).tobytes()


def silence(ms: float, sample_rate: int, channels: int = 1) -> bytes:
    """``ms`` milliseconds of PCM16 silence (rounded to whole sample frames)."""
    return bytes(2 * channels * round(ms * sample_rate / 1000))


def db_to_gain(db: float) -> float:
    """Decibels to a linear amplitude factor."""
    return float(10.0 ** (db / 20.0))


def apply_gain(samples: np.ndarray, gain: float) -> np.ndarray:
    """Scale int16 samples by a linear factor, rounding and saturating (never wrapping)."""
    scaled = np.rint(samples * float(gain))
    np.clip(scaled, _INT16_MIN, _INT16_MAX, out=scaled)
    return scaled.astype(np.int16)


def mix(*tracks: np.ndarray) -> np.ndarray:
    """Sum int16 tracks sample by sample, saturating; shorter tracks count as silence at the end."""
    if not tracks:
        return np.zeros(0, dtype=np.int16)
    total = np.zeros(max(len(t) for t in tracks), dtype=np.int32)
    for track in tracks:
        total[: len(track)] += track
    np.clip(total, _INT16_MIN, _INT16_MAX, out=total)
    return total.astype(np.int16)


def downmix(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved multi-channel int16 to mono by averaging (rounded toward negative infinity)."""
    if channels == 1:
        return samples
    frames = samples.reshape(-1, channels).astype(np.int32)
    return (frames.sum(axis=1) // channels).astype(np.int16)


def upmix(samples: np.ndarray, channels: int) -> np.ndarray:
    """Mono int16 to interleaved multi-channel by repeating each sample."""
    if channels == 1:
        return samples
    return np.repeat(samples, channels)


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level relative to a full-scale square wave, in dB (-inf for digital silence)."""
    if samples.size == 0:
        return float("-inf")
    x = samples.astype(np.float64)
    power = float(np.dot(x, x)) / samples.size
    if power == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(power / (32768.0 * 32768.0)))


class SampleCarry:
    """Turns a stream of arbitrary byte chunks into whole sample frames.

    ``feed()`` returns every complete frame available and keeps the remainder for the next
    call. When there is no remainder and the chunk is whole, the result is a zero-copy view.
    """

    __slots__ = ("frame_width", "_pending")

    def __init__(self, frame_width: int = 2) -> None:
        #: Bytes per sample frame (2 for mono PCM16, 4 for stereo).
        self.frame_width = frame_width
        self._pending = b""

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of their sample frame."""
        return len(self._pending)

    def feed(self, data: Buffer) -> bytes | memoryview:
        """Return the whole frames of ``pending + data``; keep the partial tail."""
        if self._pending:
            data = self._pending + bytes(data)
        cut = len(data) - len(data) % self.frame_width
        if cut == len(data):
            self._pending = b""
            return data
        self._pending = bytes(data[cut:])
        return memoryview(data)[:cut]

    def reset(self) -> bytes:
        """Drop and return the partial frame (at the end of a stream it cannot be completed)."""
        pending, self._pending = self._pending, b""
        return pending
