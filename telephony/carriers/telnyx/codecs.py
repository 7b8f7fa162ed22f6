"""What a Telnyx media stream carries, and the ``streaming_start`` fields that ask for it.

Two codecs are offered (``PhoneNumber.carrier_data["codec"]``): **L16 at 16 kHz** (wideband, the
default) and **PCMU at 8 kHz** (G.711 µ-law, identical to Twilio's audio and OpenAI's ``audio/pcmu``).

Telnyx takes the inbound codec (``stream_codec``) and the bidirectional codec and rate
(``stream_bidirectional_codec``/``_sampling_rate``) separately; leaving ``stream_codec`` out
silently gives PCMU/8000 inbound while we send L16, so they are always set together here.

RTP L16 is big-endian (RFC 3551), but Telnyx does not document its byte order
(docs/carriers/telnyx.md#stream-codecs-and-l16-byte-order), so it is the ``TELNYX_L16_BYTE_ORDER``
setting, ``"big"`` by default. A wrong byte order keeps a tone's pitch but turns it into noise;
``docs/carriers/telnyx.md`` says how to check.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceagents.audio.formats import AudioFormat, Encoding
from voiceagents.conf import get_setting
from voiceagents.exceptions import ConfigurationError

L16 = "L16"
PCMU = "PCMU"

#: Telnyx ``media_format.encoding`` names we can decode → our encodings (L16 resolved later).
_ENCODINGS = {
    "PCMU": Encoding.MULAW,
    "AUDIO/X-MULAW": Encoding.MULAW,
    "PCMA": Encoding.ALAW,
    "AUDIO/X-ALAW": Encoding.ALAW,
}


def l16_encoding(byte_order: str | None = None) -> Encoding:
    """Our encoding for Telnyx L16: ``TELNYX_L16_BYTE_ORDER`` (``big`` or ``little``)."""
    order = byte_order or str(get_setting("L16_BYTE_ORDER", vendor="telnyx", default="big"))
    order = order.strip().lower()
    if order not in ("big", "little"):
        raise ConfigurationError(
            f"VOICEAGENTS['TELNYX_L16_BYTE_ORDER'] = {order!r}: use 'big' or 'little'"
        )
    return Encoding.PCM16BE if order == "big" else Encoding.PCM16


@dataclass(frozen=True)
class StreamCodec:
    """One codec choice: its Telnyx name and rate, and the audio format it means for us."""

    name: str
    sample_rate: int

    @classmethod
    def named(cls, name: str | None) -> StreamCodec:
        """``L16`` (16 kHz) or ``PCMU`` (8 kHz); anything else falls back to the default."""
        if (name or "").upper() == PCMU:
            return cls(PCMU, 8000)
        return cls(L16, 16000)

    def audio_format(self, byte_order: str | None = None) -> AudioFormat:
        """The format of the stream's audio, both directions, as the session sees it."""
        if self.name == PCMU:
            return AudioFormat(Encoding.MULAW, self.sample_rate)
        return AudioFormat(l16_encoding(byte_order), self.sample_rate)

    def streaming_params(
        self, stream_url: str, *, auth_token: str, client_state: str, call_id: str
    ) -> dict:
        """The body of ``streaming_start`` for a bidirectional RTP stream in this codec.

        ``auth_token`` comes back as the ``x-telnyx-streaming-auth-token`` header of the
        WebSocket upgrade (docs/carriers/telnyx.md#media-stream-frames). The call id travels in
        ``client_state`` and, in case the ``start`` frame lacks it (its keys are unconfirmed), as
        a custom parameter too.
        """
        return {
            "stream_url": stream_url,
            "stream_track": "inbound_track",
            "stream_codec": self.name,
            "stream_bidirectional_mode": "rtp",
            "stream_bidirectional_codec": self.name,
            "stream_bidirectional_sampling_rate": self.sample_rate,
            "stream_bidirectional_target_legs": "self",
            "stream_auth_token": auth_token,
            "custom_parameters": [{"name": "call_id", "value": call_id}],
            "client_state": client_state,
        }


def reported_format(media_format: object, byte_order: str | None = None) -> AudioFormat | None:
    """The format a ``start`` frame's ``media_format`` announces, or None if we cannot decode it."""
    if not isinstance(media_format, dict):
        return None
    name = str(media_format.get("encoding") or "").upper()
    try:
        rate = int(media_format.get("sample_rate") or 0)
        channels = int(media_format.get("channels") or 1)
    except (TypeError, ValueError):
        return None
    if name == L16:
        encoding = l16_encoding(byte_order)
    elif name in _ENCODINGS:
        encoding = _ENCODINGS[name]
    else:
        return None
    if rate <= 0 or channels != 1:
        return None
    return AudioFormat(encoding, rate)
