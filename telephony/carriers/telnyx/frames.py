"""Telnyx media-streaming frames (docs/carriers/telnyx.md): ``connected`` (with the auth token),
``start``, ``media``/``dtmf``/``mark``/``error``, ``stop`` from Telnyx; ``media``, ``mark`` and
``clear`` from us (a bidirectional RTP stream needs no stream id in them)."""

from __future__ import annotations

from ...frames import (
    OTHER_TRACK,
    Connected,
    Error,
    FrameCodec,
    Malformed,
    Media,
    Start,
    as_dict,
    as_int,
    as_str,
    decode_payload,
    dtmf,
    json_safe,
)
from .events import ClientState

AUTH_HEADER = "x-telnyx-streaming-auth-token"
#: Telnyx limits ``stream_auth_token`` to 4000 characters.
MAX_TOKEN_CHARS = 4000
#: ``media.track`` values of the caller's audio (``stream_track: inbound_track``).
INBOUND_TRACKS = frozenset({None, "inbound", "inbound_track"})
MAX_ID_CHARS = 128


def custom_parameters(value) -> dict[str, str]:
    """``start.custom_parameters`` as a dict: Telnyx shows an object; we sent a name/value list."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items() if isinstance(v, str)}
    if isinstance(value, list):
        return {
            str(p.get("name")): p.get("value")
            for p in value
            if isinstance(p, dict) and isinstance(p.get("value"), str)
        }
    return {}


class TelnyxCodec(FrameCodec):
    readers = {
        "media": "read_media",
        "mark": "read_mark",
        "start": "read_start",
        "connected": "read_connected",
        "dtmf": "read_dtmf",
        "error": "read_error",
        "stop": "read_stop",
    }

    def read_media(self, obj: dict) -> Media | Malformed:
        media = obj["media"]
        payload = media["payload"]
        audio = decode_payload(payload)
        track = media.get("track")
        if track is not None:
            if type(track) is not str:
                return Malformed("track is not a string")
            if track not in INBOUND_TRACKS:
                return OTHER_TRACK
        frame = self.media_frame
        frame.payload, frame.audio = payload, audio
        frame.number = chunk = as_int(media.get("chunk"))
        frame.sequence = as_int(obj.get("sequence_number")) if chunk is None else None
        return frame

    def read_dtmf(self, obj: dict):
        inner = obj.get("dtmf")
        return dtmf(inner.get("digit") if isinstance(inner, dict) else obj.get("digit"))

    def read_connected(self, obj: dict) -> Connected:
        inner = obj.get("connected")
        token = inner.get(AUTH_HEADER) if isinstance(inner, dict) else None
        token = token or obj.get(AUTH_HEADER)
        if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_CHARS:
            return Connected(token)
        return Connected(None)

    def read_error(self, obj: dict) -> Error:
        details = obj.get("payload") or obj.get("error") or {}
        if not isinstance(details, dict):
            details = {"detail": str(details)}
        code = str(details.get("code", ""))[:32]
        return Error(code, str(details.get("title") or details.get("detail") or "")[:200])

    def read_start(self, obj: dict) -> Start:
        """The call id comes in our ``client_state`` or, failing that, a custom parameter; the
        token is not in ``start`` (it came with the handshake)."""
        start = as_dict(obj.get("start"))
        state = ClientState.decode(start.get("client_state"))
        call_id = (state.call_id if state else "") or custom_parameters(
            start.get("custom_parameters")
        ).get("call_id", "")
        stream_id = as_str(obj.get("stream_id")) or as_str(start.get("stream_id"))
        return Start(
            call_id=call_id,
            token="",
            stream_id=stream_id[:MAX_ID_CHARS],
            carrier_call_id=as_str(start.get("call_control_id"))[:MAX_ID_CHARS],
            details=start,
        )

    def media(self, payload: str) -> str:
        return '{"event":"media","media":{"payload":"' + payload + '"}}'

    def mark(self, name: str) -> str:
        return '{"event":"mark","mark":{"name":"' + json_safe(name) + '"}}'

    def clear(self) -> str:
        return '{"event":"clear"}'
