"""``CarrierLink``: what the session needs from a carrier's media consumer (and nothing more)."""

from __future__ import annotations

from typing import Protocol

from ..audio.formats import AudioFormat


class CarrierLink(Protocol):
    """What the session needs from a carrier's media consumer."""

    #: Format of the agent audio the carrier leg takes (and, unless ``caller_format`` differs,
    #: of the caller audio it sends).
    carrier_format: AudioFormat
    #: Format of the caller audio handed to ``CallSession.caller_audio``: the carrier's inbound
    #: format as it really arrives (Telnyx may stream another codec than the one negotiated). The
    #: session converts it once, straight to the provider's input format.
    caller_format: AudioFormat
    #: Whether the carrier echoes marks when the audio before them has played (may change during
    #: a call: Telnyx falls back to the pacer's estimate when its echoes stop).
    has_marks: bool

    async def send_media(self, payload: str) -> None: ...

    async def send_mark(self, name: str) -> None: ...

    async def send_clear(self) -> None: ...

    async def end_call(self) -> None:
        """Close the stream from our side (the carrier then hangs up, unless the call was
        transferred: then only our stream ends)."""

    async def transfer(self, number: str, *, announcement: str = "") -> None:
        """Hand the caller to ``number`` on the carrier; raises ``CarrierAPIError`` when the
        carrier refuses and ``UnsupportedFeature`` when it cannot transfer."""
