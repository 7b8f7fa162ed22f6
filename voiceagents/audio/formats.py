"""Audio formats: what the bytes on a leg mean.

Every carrier and provider declares the formats it sends and accepts as :class:`AudioFormat`
values; the bridge compares them and builds a :class:`~voiceagents.audio.convert.Converter`
only where they differ. Wire audio is headerless, so the format is the only description of the
bytes there is (docs/audio.md#wire-formats).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "ALAW_8K",
    "AudioFormat",
    "Encoding",
    "MULAW_8K",
    "PCM16_8K",
    "PCM16_16K",
    "PCM16_24K",
]


class Encoding(enum.StrEnum):
    """Sample encodings found on the carrier and provider legs."""

    #: G.711 µ-law (PCMU): Twilio, Telnyx default, OpenAI ``audio/pcmu``, ElevenLabs ``ulaw_8000``.
    MULAW = "mulaw"
    #: G.711 A-law (PCMA).
    ALAW = "alaw"
    #: Signed 16-bit little-endian PCM ("linear16", ``pcm_*``, ``audio/pcm``).
    PCM16 = "pcm16"
    #: Signed 16-bit big-endian PCM: RTP L16 per RFC 3551. Telnyx's L16 byte order is unconfirmed
    #: (docs/audio.md#wire-formats), so a carrier can pick this one if a test tone proves it
    #: big-endian.
    PCM16BE = "pcm16be"


_SAMPLE_WIDTH = {
    Encoding.MULAW: 1,
    Encoding.ALAW: 1,
    Encoding.PCM16: 2,
    Encoding.PCM16BE: 2,
}

#: The byte that decodes to zero, used to pad frames and to make silence.
_SILENCE_BYTE = {
    Encoding.MULAW: 0xFF,
    Encoding.ALAW: 0xD5,
    Encoding.PCM16: 0x00,
    Encoding.PCM16BE: 0x00,
}


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """An immutable description of headerless audio: encoding, sample rate, channel count.

    Equal formats mean identical bytes, so ``src == dst`` is the test for pass-through.
    Multi-channel audio is interleaved sample by sample.
    """

    encoding: Encoding
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "encoding", Encoding(self.encoding))
        except ValueError:
            choices = ", ".join(e.value for e in Encoding)
            raise ValueError(
                f"unknown audio encoding {self.encoding!r}; expected one of {choices}"
            ) from None
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {self.sample_rate!r}")
        if not isinstance(self.channels, int) or self.channels <= 0:
            raise ValueError(f"channels must be a positive int, got {self.channels!r}")

    def __str__(self) -> str:
        layout = "mono" if self.channels == 1 else f"{self.channels}ch"
        return f"{self.encoding.value}/{self.sample_rate}/{layout}"

    @property
    def sample_width(self) -> int:
        """Bytes per sample of one channel."""
        return _SAMPLE_WIDTH[self.encoding]

    @property
    def frame_width(self) -> int:
        """Bytes per sample frame (one sample of every channel)."""
        return _SAMPLE_WIDTH[self.encoding] * self.channels

    @property
    def bytes_per_second(self) -> int:
        return self.frame_width * self.sample_rate

    @property
    def silence_byte(self) -> int:
        """The byte value that decodes to 0 (0xFF for µ-law, 0xD5 for A-law, 0 for PCM)."""
        return _SILENCE_BYTE[self.encoding]

    @property
    def is_g711(self) -> bool:
        return self.encoding in (Encoding.MULAW, Encoding.ALAW)

    def samples_for_ms(self, ms: float) -> int:
        """Sample frames in ``ms`` milliseconds; raises if that is not a whole number."""
        exact = Fraction(ms).limit_denominator(1000) * self.sample_rate / 1000
        if exact.denominator != 1:
            raise ValueError(f"{ms} ms is not a whole number of samples at {self.sample_rate} Hz")
        return int(exact)

    def bytes_for_ms(self, ms: float) -> int:
        """Bytes in ``ms`` milliseconds: 20 ms of µ-law 8k is 160, of PCM16 16k is 640."""
        return self.samples_for_ms(ms) * self.frame_width

    def duration_ms(self, nbytes: int) -> float:
        """Milliseconds of audio in ``nbytes`` bytes (partial sample frames count fractionally)."""
        return nbytes * 1000.0 / self.bytes_per_second

    def silence(self, ms: float) -> bytes:
        """``ms`` milliseconds of digital silence in this format."""
        return bytes([self.silence_byte]) * self.bytes_for_ms(ms)


MULAW_8K = AudioFormat(Encoding.MULAW, 8000)
ALAW_8K = AudioFormat(Encoding.ALAW, 8000)
PCM16_8K = AudioFormat(Encoding.PCM16, 8000)
PCM16_16K = AudioFormat(Encoding.PCM16, 16000)
PCM16_24K = AudioFormat(Encoding.PCM16, 24000)
