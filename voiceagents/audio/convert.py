"""Format conversion between two legs: decode, resample, encode, with state across chunks.

Build one :class:`Converter` per direction per call. When both sides use the same format (Twilio
µ-law to OpenAI ``audio/pcmu``, the recommended setup) it is a pass-through that returns the very
object it was given, so the common path costs nothing.
"""

from __future__ import annotations

import logging

import numpy as np

from . import g711
from .formats import AudioFormat, Encoding
from .pcm import SampleCarry, as_samples, downmix, to_bytes, upmix
from .resample import Resampler

__all__ = ["Converter", "decode", "encode"]

logger = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview


def decode(data: Buffer, encoding: Encoding) -> np.ndarray:
    """Bytes of one encoding to int16 samples (a zero-copy view for little-endian PCM16)."""
    if encoding is Encoding.MULAW:
        return g711.ulaw_decode(data)
    if encoding is Encoding.ALAW:
        return g711.alaw_decode(data)
    return as_samples(data, big_endian=encoding is Encoding.PCM16BE)


def encode(samples: np.ndarray, encoding: Encoding, *, audioop_compatible: bool = False) -> bytes:
    """int16 samples to bytes of one encoding."""
    if encoding is Encoding.MULAW:
        return g711.ulaw_encode(samples, audioop_compatible=audioop_compatible)
    if encoding is Encoding.ALAW:
        return g711.alaw_encode(samples)
    return to_bytes(samples, big_endian=encoding is Encoding.PCM16BE)


class Converter:
    """Streams audio from ``src`` to ``dst`` format, one chunk at a time.

    Partial sample frames are carried to the next chunk and the resampler keeps its filter
    history, so a stream cut into chunks anywhere converts exactly like the whole. Mono and
    stereo convert either way (averaging down, duplicating up).
    """

    def __init__(
        self, src: AudioFormat, dst: AudioFormat, *, audioop_compatible: bool = False
    ) -> None:
        self.src = src
        self.dst = dst
        #: True when the formats match and :meth:`convert` returns its argument unchanged.
        self.passthrough = src == dst
        self._audioop_compatible = audioop_compatible
        self._carry = SampleCarry(src.frame_width)
        # Downmix before resampling when the destination is mono, upmix after: never resample
        # more channels than needed.
        self._mono_path = dst.channels == 1 or src.channels != dst.channels
        lanes = 1 if self._mono_path else src.channels
        self._resamplers = [Resampler(src.sample_rate, dst.sample_rate) for _ in range(lanes)]
        self._resampling = src.sample_rate != dst.sample_rate

    def __repr__(self) -> str:
        return f"<Converter {self.src} -> {self.dst}>"

    @property
    def latency_ms(self) -> float:
        """Delay added by resampling (0 without it)."""
        return self._resamplers[0].latency_ms

    def convert(self, chunk: Buffer) -> bytes:
        """Convert the next chunk; the pass-through returns ``chunk`` itself."""
        if self.passthrough:
            return chunk  # type: ignore[return-value]
        whole = self._carry.feed(chunk)
        if not whole:
            return b""
        return self._encode(self._transform(decode(whole, self.src.encoding)))

    __call__ = convert

    def flush(self) -> bytes:
        """End of stream: emit the resampler's delayed tail and reset all state."""
        if self.passthrough:
            return b""
        self._carry.reset()
        if not self._resampling:
            return b""
        tails = [r.flush() for r in self._resamplers]
        return self._encode(self._shape_output(tails))

    def reset(self) -> None:
        """Drop carried bytes and filter history (e.g. after a barge-in discards a stream)."""
        self._carry.reset()
        for r in self._resamplers:
            r.reset()

    def _transform(self, samples: np.ndarray) -> np.ndarray:
        src_ch = self.src.channels
        if self._mono_path:
            lanes = [downmix(samples, src_ch) if src_ch != 1 else samples]
        else:
            frames = samples.reshape(-1, src_ch)
            lanes = [frames[:, c] for c in range(src_ch)]
        if self._resampling:
            lanes = [
                r.process(np.ascontiguousarray(x))
                for r, x in zip(self._resamplers, lanes, strict=True)
            ]
        return self._shape_output(lanes)

    def _shape_output(self, lanes: list[np.ndarray]) -> np.ndarray:
        if len(lanes) > 1:
            return np.column_stack(lanes).ravel()
        return upmix(lanes[0], self.dst.channels)

    def _encode(self, samples: np.ndarray) -> bytes:
        return encode(samples, self.dst.encoding, audioop_compatible=self._audioop_compatible)
