"""Twilio Media Streams frames (docs/carriers/twilio.md): ``connected`` → ``start`` →
``media``/``dtmf``/``mark`` → ``stop`` from Twilio; ``media`` (μ-law 8 kHz), ``mark`` and
``clear`` from us, each naming the stream's ``streamSid``."""

from __future__ import annotations

from ...frames import (
    OTHER_TRACK,
    FrameCodec,
    Malformed,
    Media,
    Start,
    as_dict,
    as_str,
    decode_payload,
    dtmf,
    json_safe,
)

#: Longest ``streamSid`` we put into our frames (Twilio's are 34 characters).
MAX_STREAM_SID = 64


class TwilioCodec(FrameCodec):
    readers = {
        "media": "read_media",
        "mark": "read_mark",
        "start": "read_start",
        "dtmf": "read_dtmf",
        "stop": "read_stop",
    }
    ignored_events = frozenset({"connected"})

    def __init__(self) -> None:
        super().__init__()
        self._media_prefix = self._mark_prefix = self._clear = ""

    def read_media(self, obj: dict) -> Media | Malformed:
        media = obj["media"]
        payload = media["payload"]
        audio = decode_payload(payload)
        track = media.get("track", "inbound")
        if track != "inbound":
            return OTHER_TRACK if isinstance(track, str) else Malformed("track is not a string")
        try:
            timestamp = int(media["timestamp"])
        except (KeyError, TypeError, ValueError, OverflowError):
            timestamp = None
        frame = self.media_frame
        frame.payload, frame.audio, frame.timestamp = payload, audio, timestamp
        return frame

    def read_dtmf(self, obj: dict):
        return dtmf(obj["dtmf"]["digit"])

    def read_start(self, obj: dict) -> Start:
        start = as_dict(obj.get("start"))
        params = as_dict(start.get("customParameters"))
        return Start(
            call_id=as_str(params.get("call_id")),
            token=as_str(params.get("stream_token")),
            stream_id=as_str(start.get("streamSid")),
            carrier_call_id=as_str(start.get("callSid")),
            details=start,
        )

    def bind(self, start: Start) -> str | None:
        sid = start.stream_id
        if not sid.isalnum() or not sid.isascii() or len(sid) > MAX_STREAM_SID:
            return "invalid streamSid"
        self._media_prefix = '{"event":"media","streamSid":"' + sid + '","media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":"' + sid + '","mark":{"name":"'
        self._clear = '{"event":"clear","streamSid":"' + sid + '"}'
        return None

    def media(self, payload: str) -> str:
        return self._media_prefix + payload + '"}}'

    def mark(self, name: str) -> str:
        return self._mark_prefix + json_safe(name) + '"}}'

    def clear(self) -> str:
        return self._clear
