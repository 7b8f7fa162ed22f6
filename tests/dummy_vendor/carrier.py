"""Dummy Tel: a carrier made up for the tests, defined here and nowhere else.

Its media stream speaks a vocabulary of its own, so nothing in the shared consumer can lean on
Twilio's or Telnyx's: from the carrier ``hello`` (call id, stream token, stream id and its own
call id, which it calls ``leg``), ``audio`` (16 kHz linear PCM, base64), ``played`` (a checkpoint
has played), ``key`` (DTMF) and ``bye``; from us ``play``, ``checkpoint`` and ``flush``. The
handshake carries a shared key in ``x-dummy-tel-key`` (``VOICEAGENTS['DUMMY_TEL_STREAM_KEY']``).
"""

from __future__ import annotations

import hmac

from telephony.frames import (
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
from telephony.media import MediaStreamConsumer
from voiceagents.audio.formats import PCM16_16K
from voiceagents.carriers import CarrierSpec
from voiceagents.conf import get_setting
from voiceagents.datafields import DataField
from voiceagents.vendors import VendorSpec

KEY_HEADER = b"x-dummy-tel-key"

VENDOR = VendorSpec(
    id="dummy_tel",
    name="Dummy Tel",
    secret_help="The account's API token.",
    data_fields=(DataField(key="account", label="Account", required=True),),
)
CARRIER = CarrierSpec(
    id="dummy_tel",
    name="Dummy Tel",
    vendor="dummy_tel",
    consumer="tests.dummy_vendor.carrier.DummyTelConsumer",
)


class DummyTelCodec(FrameCodec):
    readers = {
        "hello": "read_hello",
        "audio": "read_audio",
        "played": "read_played",
        "key": "read_key",
        "bye": "read_stop",
    }
    ignored_events = frozenset({"ping"})

    def read_hello(self, obj: dict) -> Start:
        return Start(
            call_id=as_str(obj.get("call")),
            token=as_str(obj.get("token")),
            stream_id=as_str(obj.get("stream")),
            carrier_call_id=as_str(obj.get("leg")),
            details=obj,
        )

    def read_audio(self, obj: dict) -> Media:
        payload = obj["pcm"]
        frame = self.media_frame  # one per stream, refilled (see telephony.frames.Media)
        frame.payload, frame.audio = payload, decode_payload(payload)
        return frame

    def read_played(self, obj: dict) -> Mark | Malformed:
        name = obj["id"]
        return Mark(name) if isinstance(name, str) else Malformed("played without an id")

    def read_key(self, obj: dict):
        return dtmf(obj["key"])

    def media(self, payload: str) -> str:
        return '{"event":"play","pcm":"' + payload + '"}'

    def mark(self, name: str) -> str:
        return '{"event":"checkpoint","id":"' + json_safe(name) + '"}'

    def clear(self) -> str:
        return '{"event":"flush"}'


class DummyTelConsumer(MediaStreamConsumer):
    carrier_id = "dummy_tel"
    codec_class = DummyTelCodec
    carrier_format = PCM16_16K
    has_marks = True
    stop_reason = "caller_hangup"

    async def authenticate_handshake(self) -> bool:
        expected = str(get_setting("STREAM_KEY", vendor="dummy_tel", default="")).encode()
        for name, value in self.scope.get("headers", ()):
            if name.lower() == KEY_HEADER:
                return bool(expected) and hmac.compare_digest(value, expected)
        return False
