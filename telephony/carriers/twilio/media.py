"""Twilio Media Streams consumer (protocols.md §2): bidirectional ``<Connect><Stream>``.

Frames from Twilio: ``connected`` → ``start`` → ``media``/``dtmf``/``mark`` → ``stop``. We answer
with ``media`` (μ-law 8 kHz, base64), ``mark`` and ``clear``. Our outgoing frames are built by
string concatenation: the payloads are base64 and the stream SID is checked to be alphanumeric,
so nothing needs JSON escaping, and json.dumps per frame would be the most expensive thing here.
"""

from __future__ import annotations

import binascii
import logging

from voiceagents.audio.formats import MULAW_8K
from voiceagents.exceptions import ConfigurationError, WebhookValidationFailure

from ... import closecodes
from ...media import MediaStreamConsumer
from .signature import acheck_stream_handshake

logger = logging.getLogger(__name__)

#: How far a media timestamp may run ahead of the call clock (Twilio's starts with the stream).
MAX_TIMESTAMP_LEAD_MS = 10_000
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class TwilioMediaConsumer(MediaStreamConsumer):
    carrier_id = "twilio"
    carrier_format = MULAW_8K
    has_marks = True
    frame_events = {
        "media": "_media",
        "mark": "_mark",
        "start": "_start",
        "dtmf": "_dtmf",
        "stop": "_stop",
    }
    ignored_events = frozenset({"connected"})

    async def authenticate_handshake(self) -> bool:
        self.stream_sid = ""
        self._timestamp_limit = -1
        try:
            await acheck_stream_handshake(self.scope)
        except WebhookValidationFailure:
            return False
        except ConfigurationError as err:
            logger.error("Twilio media stream refused: %s", err)
            return False
        return True

    async def _stop(self, frame: dict) -> None:
        await self.end_session("caller_hangup", by_carrier=True)
        await self.end_call()

    async def _media(self, frame: dict) -> None:
        session = self.session
        if session is None:
            self.malformed("media before start")
            return
        try:
            media = frame["media"]
            payload = media["payload"]
            audio = binascii.a2b_base64(payload, strict_mode=True)
        except (KeyError, TypeError, binascii.Error, ValueError):
            self.malformed("media without a valid base64 payload")
            return
        track = media.get("track", "inbound")
        if track != "inbound":
            if not isinstance(track, str):
                self.malformed("media track is not a string")
            return
        try:
            timestamp = int(media["timestamp"])
        except (KeyError, TypeError, ValueError, OverflowError):
            timestamp = None
        else:
            if (timestamp < 0 or timestamp > self._timestamp_limit) and not self._plausible(
                session, timestamp
            ):
                timestamp = None
        await session.caller_audio(payload, audio, timestamp)

    def _plausible(self, session, timestamp: int) -> bool:
        """A timestamp far ahead of the call clock would make the recording pad silence up to it."""
        self._timestamp_limit = session.call_ms() + MAX_TIMESTAMP_LEAD_MS
        if 0 <= timestamp <= self._timestamp_limit:
            return True
        self.malformed(f"media timestamp {str(timestamp)[:20]} far from the call clock")
        return False

    async def _mark(self, frame: dict) -> None:
        try:
            name = frame["mark"]["name"]
        except (KeyError, TypeError):
            name = None
        if not isinstance(name, str):
            self.malformed("mark without a name")
            return
        if self.session is not None:
            self.session.mark_echoed(name)

    async def _dtmf(self, frame: dict) -> None:
        try:
            digit = frame["dtmf"]["digit"]
        except (KeyError, TypeError):
            digit = None
        if not isinstance(digit, str) or digit not in DTMF_DIGITS:
            self.malformed("dtmf without a digit")
            return
        if self.session is not None:
            await self.session.dtmf(digit)

    async def _start(self, frame: dict) -> None:
        if self.started:
            self.malformed("second start")
            return
        start = frame.get("start")
        params = start.get("customParameters") if isinstance(start, dict) else None
        if not isinstance(params, dict):
            await self.refuse(closecodes.BAD_START, "start without customParameters")
            return
        call_id, token = params.get("call_id"), params.get("stream_token")
        stream_sid, call_sid = start.get("streamSid"), start.get("callSid")
        if not all(isinstance(v, str) and v for v in (call_id, token, stream_sid, call_sid)):
            await self.refuse(closecodes.BAD_START, "start without call_id/stream_token/callSid")
            return
        if not stream_sid.isalnum() or len(stream_sid) > 64:
            await self.refuse(closecodes.BAD_START, "start with an invalid streamSid")
            return
        self.stream_sid = stream_sid
        self._media_prefix = (
            '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        )
        self._mark_prefix = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        await self.begin_call(call_id, token, stream_sid, call_sid)

    # -- CarrierLink ------------------------------------------------------------------------------

    async def send_media(self, payload: str) -> None:
        await self.send_text(self._media_prefix + payload + '"}}')

    async def send_mark(self, name: str) -> None:
        await self.send_text(self._mark_prefix + name + '"}}')

    async def send_clear(self) -> None:
        await self.send_text('{"event":"clear","streamSid":"' + self.stream_sid + '"}')
