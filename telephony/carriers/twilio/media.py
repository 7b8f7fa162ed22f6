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

from ...media import MediaStreamConsumer
from .signature import acheck_stream_handshake

logger = logging.getLogger(__name__)


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
        if media.get("track", "inbound") != "inbound":
            return
        try:
            timestamp = int(media["timestamp"])
        except (KeyError, TypeError, ValueError):
            timestamp = None
        await session.caller_audio(payload, audio, timestamp)

    async def _mark(self, frame: dict) -> None:
        try:
            name = frame["mark"]["name"]
        except (KeyError, TypeError):
            self.malformed("mark without a name")
            return
        if self.session is not None:
            self.session.mark_echoed(str(name))

    async def _dtmf(self, frame: dict) -> None:
        try:
            digit = str(frame["dtmf"]["digit"])[:1]
        except (KeyError, TypeError):
            self.malformed("dtmf without a digit")
            return
        if self.session is not None and digit:
            await self.session.dtmf(digit)

    async def _start(self, frame: dict) -> None:
        if self.session is not None or self.call_id is not None:
            self.malformed("second start")
            return
        try:
            start = frame["start"]
            stream_sid = start["streamSid"]
            params = start.get("customParameters") or {}
            call_id, token = params["call_id"], params["stream_token"]
        except (KeyError, TypeError, AttributeError):
            logger.warning("Twilio media stream refused: start without call_id/stream_token")
            await self.close(code=1008)
            return
        if not isinstance(stream_sid, str) or not stream_sid.isalnum():
            self.malformed("start with an invalid streamSid")
            await self.close(code=1008)
            return
        self.stream_sid = stream_sid
        self._media_prefix = (
            '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        )
        self._mark_prefix = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        await self.begin_call(str(call_id), str(token), stream_sid, str(start.get("callSid") or ""))

    # -- CarrierLink ------------------------------------------------------------------------------

    async def send_media(self, payload: str) -> None:
        await self.send_text(self._media_prefix + payload + '"}}')

    async def send_mark(self, name: str) -> None:
        await self.send_text(self._mark_prefix + name + '"}}')

    async def send_clear(self) -> None:
        await self.send_text('{"event":"clear","streamSid":"' + self.stream_sid + '"}')
