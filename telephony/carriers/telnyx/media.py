"""Telnyx media-streaming consumer: a bidirectional RTP stream (docs/carriers/telnyx.md).

The frames are ``frames.TelnyxCodec``'s; the stream, its call and its ending are the shared
``MediaStreamConsumer``'s. What Telnyx adds, as hooks:

* the handshake: Telnyx connects with the single-use stream token as its
  ``x-telnyx-streaming-auth-token`` header (repeated in the ``connected`` frame); an upgrade
  without it is refused. ``start`` carries our ``client_state`` (call id and codec).
* formats: L16 16 kHz or PCMU 8 kHz both ways (``codecs``); if ``start`` reports another inbound
  format than negotiated, the session converts from it (``inbound_format``).
* order: inbound frames may come out of order; ``inbound.InboundAudio`` puts them back.
* marks: Telnyx echoes a mark once the audio before it has played, which is how the session knows
  what the caller heard. If echoes stop coming (one is overdue by ``TELNYX_MARK_GRACE_MS`` past
  the time it should have played), ``has_marks`` turns False and the session falls back to the
  pacer's estimate until the overdue echoes arrive.
* ending: closing the WebSocket does not end a Telnyx call, so our side hangs up over REST
  (``end_call``); a stream refused after its token checked out is hung up too.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque

from voiceagents import dbthread
from voiceagents.audio.formats import Encoding
from voiceagents.call import streamtokens
from voiceagents.conf import get_setting
from voiceagents.exceptions import CarrierAPIError, ConfigurationError, WebhookValidationFailure

from ... import closecodes
from ...frames import OTHER_TRACK, Connected, Error, Ignored, Media, Start
from ...media import MediaStreamConsumer
from . import calls, transfer
from .codecs import StreamCodec, l16_encoding, reported_format
from .events import ClientState
from .frames import AUTH_HEADER, MAX_TOKEN_CHARS, TelnyxCodec
from .inbound import InboundAudio
from .rest import TelnyxCallControl

logger = logging.getLogger(__name__)

#: Default of ``TELNYX_MARK_GRACE_MS``: how late an echo may be before the pacer takes over.
DEFAULT_MARK_GRACE_MS = 500
_AUTH_HEADER = AUTH_HEADER.encode()


class TelnyxMediaConsumer(MediaStreamConsumer):
    carrier_id = "telnyx"
    codec_class = TelnyxCodec
    stop_reason = "stream_stopped"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_token: str | None = None
        self.frame_token: str | None = None
        self.stats = {
            "other_track_frames": 0,
            "stream_errors": 0,
            "mark_fallbacks": 0,
            "late_frames": 0,
            "missing_frames": 0,
            "reordered_frames": 0,
        }
        self.inbound = InboundAudio(self.stats)
        self._deliver = self.inbound.deliver
        self._pending_marks: deque[tuple[str, float]] = deque()
        self._marks_late = False
        self._target = None

    async def connect(self):
        self._loop = asyncio.get_running_loop()
        try:
            self.byte_order = "big" if l16_encoding() is Encoding.PCM16BE else "little"
            grace = get_setting(
                "MARK_GRACE_MS", vendor="telnyx", default=DEFAULT_MARK_GRACE_MS, cast=int
            )
            self.mark_grace_s = int(grace) / 1000.0
        except (ConfigurationError, ValueError) as err:
            logger.error("Telnyx media stream refused: %s", err)
            await self.close()
            return
        await super().connect()

    async def authenticate_handshake(self) -> bool:
        """The stream auth token must come with the upgrade: an anonymous stream is refused."""
        for name, value in self.scope.get("headers", ()):
            if name.lower() == _AUTH_HEADER:
                token = value.decode("latin-1")
                if not token or len(token) > MAX_TOKEN_CHARS:
                    return False
                self.header_token = token
        return self.header_token is not None

    # -- hooks of the shared consumer ---------------------------------------------------------------

    async def on_connected(self, connected: Connected) -> None:
        self.frame_token = connected.token

    async def prepare_start(self, start: Start) -> tuple[int, str] | None:
        if self.frame_token and not hmac.compare_digest(
            self.header_token.encode(), self.frame_token.encode()
        ):
            return (
                closecodes.FORBIDDEN,
                "the auth tokens of the header and the connected frame differ",
            )
        start.token = self.header_token
        if start.call_id:
            self._choose_formats(start)
        return None

    async def after_start(self, start: Start, started: bool) -> None:
        if started:
            session = self.session
            session.carrier_metrics("telnyx", self.stats)
            # Audio in another format than negotiated is converted once, by the session.
            self.inbound.attach(
                session.caller_audio, session.call_ms, self.caller_format.duration_ms
            )
            return
        if start.carrier_call_id and self._token_valid(start.call_id, start.token):
            # Nobody will talk to the caller: hang up rather than leave them in silence.
            target = await dbthread.run(
                calls.stream_hangup_target, start.call_id, start.stream_id, start.carrier_call_id
            )
            if target is not None:
                await self._hangup(target, start.call_id)

    async def on_media(self, media: Media) -> None:
        if not await self._deliver(media):
            self.malformed(f"media numbered far from the stream ({media.number or media.sequence})")

    async def on_ignored(self, ignored: Ignored) -> None:
        if ignored is OTHER_TRACK:
            self.stats["other_track_frames"] += 1

    async def on_error(self, error: Error) -> None:
        self.stats["stream_errors"] += 1
        await super().on_error(error)

    def mark_echoed(self, name: str) -> None:
        pending = self._pending_marks
        if any(sent == name for sent, _ in pending):
            # Echoes come in order: everything before this mark has played too.
            while pending and pending.popleft()[0] != name:
                pass

    @staticmethod
    def _token_valid(call_id: str, token: str) -> bool:
        try:
            streamtokens.check(call_id, token)
        except WebhookValidationFailure:
            return False
        return True

    def _choose_formats(self, start: Start) -> None:
        """The stream's format (the codec we asked for) and, if Telnyx reports another inbound
        format, that one for the caller audio: inbound follows ``stream_codec``, which Telnyx may
        not honour.
        """
        state = ClientState.decode(start.details.get("client_state"))
        media_format = start.details.get("media_format")
        name = (state.codec if state else "") or (
            media_format.get("encoding") if isinstance(media_format, dict) else ""
        )
        self.carrier_format = StreamCodec.named(str(name)).audio_format(self.byte_order)
        reported = reported_format(media_format, self.byte_order)
        if media_format is not None and reported is None:
            logger.warning(
                "call %s: unreadable Telnyx media_format; assuming %s",
                start.call_id,
                self.carrier_format,
            )
        elif reported is not None and reported != self.carrier_format:
            logger.warning(
                "call %s: Telnyx streams %s inbound, not the negotiated %s; converting",
                start.call_id,
                reported,
                self.carrier_format,
            )
            self.inbound_format = reported

    # -- CarrierLink ----------------------------------------------------------------------------

    @property
    def has_marks(self) -> bool:
        """True while Telnyx echoes marks in time; read by the session at every frame and barge-in."""
        pending = self._pending_marks
        if not pending or self.session is None or self._loop.time() <= pending[0][1]:
            return True
        if not self._marks_late:
            self._marks_late = True
            self.stats["mark_fallbacks"] += 1
            logger.warning(
                "call %s: Telnyx did not echo a mark in time; estimating playback", self.call_id
            )
        return False

    async def send_mark(self, name: str) -> None:
        session = self.session
        if session is not None:
            # The echo is due once the audio sent so far has played, plus the grace.
            now = self._loop.time()
            due = now + session.playout_buffered_ms(now) / 1000.0 + self.mark_grace_s
            self._pending_marks.append((name, due))
            self._marks_late = False
        await super().send_mark(name)

    # Clear: Telnyx returns the queued marks at once (the session ignores them); the pending ones
    # stay pending here, so a Telnyx that echoes nothing stays on the pacer's estimate.

    async def carry_out_transfer(self, number: str, announcement: str) -> None:
        # Telnyx's transfer has no announcement (its audio_url is ringback): the agent speaks first.
        target = await dbthread.run(transfer.transfer_target, self.call_id)
        self._target = (target.carrier_call_id, target.account)
        await transfer.transfer(target, number)

    async def end_call(self) -> None:
        """Our side ends the call: hang it up over REST (closing the stream would not), then close.

        A transferred call is not hung up: our leg now carries the caller to the target.
        """
        if self.closing:
            return
        self.closing = True
        if self.call_id is not None and not self.transferred:
            if self._target is None:
                self._target = await dbthread.run(calls.live_call_target, self.call_id)
            if self._target is not None:
                await self._hangup(self._target, self.call_id)
        await self.close(code=self.end_code)

    async def _hangup(self, target, call_id: str) -> None:
        call_control_id, account = target
        try:
            async with TelnyxCallControl(account) as rest:
                await rest.hangup(call_control_id, command_id=f"hangup-{call_id}")
        except CarrierAPIError as err:
            # Typically "call has already ended": the caller hung up at the same moment.
            logger.info("call %s: Telnyx hangup not done: %s", call_id, err)
