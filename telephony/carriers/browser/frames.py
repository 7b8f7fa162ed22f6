"""The browser test call's frames (docs/carriers/browser.md).

From the page: ``start`` (call id, stream token, stream id and carrier call id, as the page's view
handed them out), ``media`` (base64 PCM16 16 kHz little-endian), ``mark`` (the audio before a mark
we sent has played), ``dtmf`` (a key, for pages that offer a keypad) and ``stop`` (hang up). From us: ``media``, ``mark`` and ``clear`` (drop the
audio queued for playing). One socket carries one call, so no frame names the stream.
"""

from __future__ import annotations

from ...frames import (
    FrameCodec,
    Malformed,
    Mark,
    Media,
    Start,
    as_str,
    decode_payload,
    dtmf,
    json_safe,
)

#: Longest stream id we accept (the view hands out a 32-character hex id).
MAX_STREAM_ID = 64

CLEAR = '{"event":"clear"}'


class BrowserCodec(FrameCodec):
    readers = {
        "start": "read_start",
        "media": "read_media",
        "mark": "read_mark",
        "dtmf": "read_dtmf",
        "stop": "read_stop",
    }

    def read_start(self, obj: dict) -> Start:
        return Start(
            call_id=as_str(obj.get("call_id")),
            token=as_str(obj.get("token")),
            stream_id=as_str(obj.get("stream_id")),
            carrier_call_id=as_str(obj.get("carrier_call_id")),
            details=obj,
        )

    def read_media(self, obj: dict) -> Media:
        payload = obj["payload"]
        frame = self.media_frame  # one per stream, refilled (see telephony.frames.Media)
        frame.payload, frame.audio = payload, decode_payload(payload)
        return frame

    def read_mark(self, obj: dict) -> Mark | Malformed:
        name = obj["name"]
        return Mark(name) if isinstance(name, str) else Malformed("mark without a name")

    def read_dtmf(self, obj: dict):
        return dtmf(obj["digit"])

    def bind(self, start: Start) -> str | None:
        sid = start.stream_id
        if not sid.isascii() or not sid.replace("-", "").isalnum() or len(sid) > MAX_STREAM_ID:
            return "invalid stream_id"
        return None

    def media(self, payload: str) -> str:
        return '{"event":"media","payload":"' + payload + '"}'

    def mark(self, name: str) -> str:
        return '{"event":"mark","name":"' + json_safe(name) + '"}'

    def clear(self) -> str:
        return CLEAR
