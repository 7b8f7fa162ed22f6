"""Telnyx media-streaming consumer (protocols.md §3.4): a bidirectional RTP stream.

Telnyx connects with the single-use stream token as its ``x-telnyx-streaming-auth-token`` header
(also repeated in the ``connected`` frame), then sends ``start`` with our ``client_state`` (the call
id and codec), then ``media``/``dtmf``/``mark``/``error`` and finally ``stop``. The token is
checked against the call id on ``start``, before any provider socket opens; a handshake without it
is refused (HTTP 403), a bad one closes the stream with ``closecodes.FORBIDDEN``.

Audio is L16 16 kHz or PCMU 8 kHz both ways (``codecs``). Inbound frames can come out of order:
they are put back in order by ``media.chunk`` within a small window (``reorder``), and only the
inbound track is used. Outbound we send ``media`` in the stream's codec, a ``mark`` after agent
audio, and ``clear`` on barge-in.

Telnyx echoes a mark once the audio before it has played, which is how the session knows what the
caller heard. If echoes stop coming (a mark is overdue by ``TELNYX_MARK_GRACE_MS`` past the time it
should have played), ``has_marks`` turns False and the session falls back to the pacer's estimate
until the overdue echoes arrive.

Closing the WebSocket does not end a Telnyx call, so ending a call from our side is a REST
``hangup`` (``end_call``).
"""

from __future__ import annotations

import asyncio
import binascii
import hmac
import json
import logging
from collections import deque

from channels.db import database_sync_to_async

from voiceagents import streamtokens
from voiceagents.audio.formats import Encoding
from voiceagents.conf import get_setting
from voiceagents.exceptions import CarrierAPIError, ConfigurationError, WebhookValidationFailure

from ... import closecodes
from ...media import MediaStreamConsumer
from . import calls
from .codecs import StreamCodec, l16_encoding, reported_format
from .events import ClientState
from .reorder import Reorder
from .rest import TelnyxCallControl

logger = logging.getLogger(__name__)

AUTH_HEADER = b"x-telnyx-streaming-auth-token"
#: Telnyx limits ``stream_auth_token`` to 4000 characters.
MAX_TOKEN_CHARS = 4000
#: ``media.track`` values of the caller's audio (``stream_track: inbound_track``).
INBOUND_TRACKS = frozenset({None, "inbound", "inbound_track"})
#: Early frames held while waiting for a missing one (each costs at most 20 ms of delay).
REORDER_WINDOW = 2
#: A frame number this far past the last one is not a gap but a corrupt frame (10 s of audio).
MAX_NUMBER_JUMP = 500
#: Late frames in a row after which the numbering is taken to have moved.
RESYNC_AFTER_LATE = 3
DTMF_DIGITS = frozenset("0123456789*#ABCD")
#: Default of ``TELNYX_MARK_GRACE_MS``: how late an echo may be before the pacer takes over.
DEFAULT_MARK_GRACE_MS = 500


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _custom_parameters(value) -> dict[str, str]:
    """``start.custom_parameters`` as a dict: Telnyx shows an object; we sent a name/value list."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(p.get("name")): str(p.get("value")) for p in value if isinstance(p, dict)}
    return {}


class TelnyxMediaConsumer(MediaStreamConsumer):
    carrier_id = "telnyx"
    frame_events = {
        "media": "_media",
        "mark": "_mark",
        "start": "_start",
        "connected": "_connected",
        "dtmf": "_dtmf",
        "error": "_error",
        "stop": "_stop",
    }

    async def connect(self):
        self.header_token: str | None = None
        self.frame_token: str | None = None
        self.call_control_id = ""
        self._starting = False
        self.inbound_format = None
        self._loop = asyncio.get_running_loop()
        self._by_chunk: Reorder = Reorder(REORDER_WINDOW)
        self._by_seq: Reorder = Reorder(0)
        self._late_run = 0
        self._counted = (0, 0, 0)  # late, missing, held, of the reorderers before a resync
        self._caller_pos: float | None = None
        self._last_chunk: int | None = None
        self._last_frame_ms = 20.0
        self._pending_marks: deque[tuple[str, float]] = deque()
        self._marks_late = False
        self._target = None
        self.stats = {
            "other_track_frames": 0,
            "stream_errors": 0,
            "mark_fallbacks": 0,
            "late_frames": 0,
            "missing_frames": 0,
            "reordered_frames": 0,
        }
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
            if name.lower() == AUTH_HEADER:
                token = value.decode("latin-1")
                if not token or len(token) > MAX_TOKEN_CHARS:
                    return False
                self.header_token = token
        return self.header_token is not None

    # -- frames from Telnyx ------------------------------------------------------------------------

    async def _stop(self, frame: dict) -> None:
        await self.end_session("stream_stopped", by_carrier=True)
        if not self.closing:
            self.closing = True
            await self.close()

    async def _connected(self, frame: dict) -> None:
        inner = frame.get("connected")
        token = inner.get(AUTH_HEADER.decode()) if isinstance(inner, dict) else None
        token = token or frame.get(AUTH_HEADER.decode())
        if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_CHARS:
            self.frame_token = token

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
        track = media.get("track")
        if track is not None and (not isinstance(track, str) or track not in INBOUND_TRACKS):
            if isinstance(track, str):
                self.stats["other_track_frames"] += 1
            else:
                self.malformed("media track is not a string")
            return
        chunk = _int(media.get("chunk"))
        if chunk is not None:
            if self._jumped(self._by_chunk, chunk):
                return
            ready = self._by_chunk.push(chunk, (payload, audio))
        else:
            sequence = _int(frame.get("sequence_number"))
            if sequence is None:
                ready = [(None, (payload, audio))]
            elif self._jumped(self._by_seq, sequence):
                return
            else:
                ready = [(None, item) for _, item in self._by_seq.push(sequence, (payload, audio))]
        if len(ready) != 1:
            self._count_reordering(ready)
        elif self._late_run:
            self._late_run = 0
        for number, (payload, audio) in ready:
            await self._caller_audio(session, number, payload, audio)

    def _jumped(self, reorder: Reorder, number: int) -> bool:
        """A number far ahead would make every later frame "late" (and pad the recording)."""
        expected = reorder.expected
        if expected is not None and number > expected + MAX_NUMBER_JUMP:
            self.malformed(f"media numbered {str(number)[:20]}, expected about {expected}")
            return True
        return False

    def _count_reordering(self, ready: list) -> None:
        # Only when something unusual happened (a frame held, dropped or released late).
        chunks, seqs, stats = self._by_chunk, self._by_seq, self.stats
        late = self._counted[0] + chunks.late + seqs.late
        if ready:
            self._late_run = 0
        elif late > stats["late_frames"]:
            self._late_run += 1
        stats["late_frames"] = late
        stats["missing_frames"] = self._counted[1] + chunks.missing
        stats["reordered_frames"] = self._counted[2] + chunks.held
        if self._late_run >= RESYNC_AFTER_LATE:
            # The numbering moved under us (a corrupt number passed for a jump): start over from
            # the frames now arriving rather than drop them all as late.
            logger.warning("call %s: Telnyx frame numbers moved; resynchronising", self.call_id)
            self._counted = (late, stats["missing_frames"], stats["reordered_frames"])
            self._by_chunk, self._by_seq = Reorder(REORDER_WINDOW), Reorder(0)
            self._late_run = 0

    async def _caller_audio(self, session, chunk: int | None, payload: str, audio: bytes) -> None:
        # Audio in another format than negotiated (``inbound_format``) is converted once, by the
        # session, straight to the provider's format.
        # Place the audio on the call clock by its position in the stream; a frame given up as
        # lost leaves a gap of one frame (Telnyx's media.timestamp units are undocumented).
        if self._caller_pos is None:
            self._caller_pos = float(session.call_ms())
        elif chunk is not None and self._last_chunk is not None and chunk > self._last_chunk + 1:
            self._caller_pos += (chunk - self._last_chunk - 1) * self._last_frame_ms
        if chunk is not None:
            self._last_chunk = chunk
        at_ms = self._caller_pos
        self._last_frame_ms = self.caller_format.duration_ms(len(audio))
        self._caller_pos += self._last_frame_ms
        await session.caller_audio(payload, audio, int(at_ms))

    async def _mark(self, frame: dict) -> None:
        try:
            name = frame["mark"]["name"]
        except (KeyError, TypeError):
            name = None
        if not isinstance(name, str):
            self.malformed("mark without a name")
            return
        pending = self._pending_marks
        if any(sent == name for sent, _ in pending):
            # Echoes come in order: everything before this mark has played too.
            while pending and pending.popleft()[0] != name:
                pass
        if self.session is not None:
            self.session.mark_echoed(name)

    async def _dtmf(self, frame: dict) -> None:
        inner = frame.get("dtmf")
        digit = inner.get("digit") if isinstance(inner, dict) else frame.get("digit")
        if isinstance(digit, int) and not isinstance(digit, bool):
            digit = str(digit)
        if not isinstance(digit, str) or digit not in DTMF_DIGITS:
            self.malformed("dtmf without a digit")
            return
        if self.session is not None:
            await self.session.dtmf(digit)

    async def _error(self, frame: dict) -> None:
        details = frame.get("payload") or frame.get("error") or {}
        if not isinstance(details, dict):
            details = {"detail": str(details)}
        code = str(details.get("code", ""))[:32]
        message = str(details.get("title") or details.get("detail") or "")[:200]
        self.stats["stream_errors"] += 1
        logger.warning("call %s: Telnyx stream error %s: %s", self.call_id or "?", code, message)
        if self.session is not None:
            self.session.record_event("error", source="telnyx", code=code, message=message)

    # -- start ----------------------------------------------------------------------------------

    async def _start(self, frame: dict) -> None:
        if self.started or self._starting:
            self.malformed("second start")
            return
        self._starting = True
        start = frame.get("start")
        if not isinstance(start, dict):
            await self.refuse(closecodes.BAD_START, "start without a start object")
            return
        state = ClientState.decode(start.get("client_state"))
        params = _custom_parameters(start.get("custom_parameters"))
        call_id = (state.call_id if state else "") or params.get("call_id", "")
        token = self.header_token
        call_control_id = start.get("call_control_id")
        if not call_id or not isinstance(call_control_id, str) or not call_control_id:
            await self.refuse(closecodes.BAD_START, "start without a call id or call_control_id")
            return
        if self.frame_token and not hmac.compare_digest(
            self.header_token.encode(), self.frame_token.encode()
        ):
            await self.refuse(
                closecodes.FORBIDDEN, "the auth tokens of the header and the connected frame differ"
            )
            return
        stream_id = frame.get("stream_id") or start.get("stream_id") or ""
        stream_id = str(stream_id)[:128]
        self.call_control_id = call_control_id[:128]
        self._choose_formats(call_id, state, start.get("media_format"))
        token_valid = self._token_valid(call_id, token)
        started = await self.begin_call(call_id, token, stream_id, self.call_control_id)
        if started:
            self.session.carrier_metrics("telnyx", self.stats)
        elif token_valid:
            # Nobody will talk to the caller: hang up rather than leave them in silence.
            target = await database_sync_to_async(calls.stream_hangup_target)(
                call_id, stream_id, self.call_control_id
            )
            if target is not None:
                await self._hangup(target, call_id)

    @staticmethod
    def _token_valid(call_id: str, token: str) -> bool:
        try:
            streamtokens.check(call_id, token)
        except WebhookValidationFailure:
            return False
        return True

    def _choose_formats(self, call_id: str, state: ClientState | None, media_format) -> None:
        """The stream's format (the codec we asked for) and, if Telnyx reports another inbound
        format, a converter from it: inbound follows ``stream_codec``, which Telnyx may not honour.
        """
        name = (state.codec if state else "") or (
            media_format.get("encoding") if isinstance(media_format, dict) else ""
        )
        self.carrier_format = StreamCodec.named(str(name)).audio_format(self.byte_order)
        reported = reported_format(media_format, self.byte_order)
        if media_format is not None and reported is None:
            logger.warning(
                "call %s: unreadable Telnyx media_format; assuming %s", call_id, self.carrier_format
            )
        elif reported is not None and reported != self.carrier_format:
            logger.warning(
                "call %s: Telnyx streams %s inbound, not the negotiated %s; converting",
                call_id,
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

    async def send_media(self, payload: str) -> None:
        await self.send_text('{"event":"media","media":{"payload":"' + payload + '"}}')

    async def send_mark(self, name: str) -> None:
        session = self.session
        if session is not None:
            # The echo is due once the audio sent so far has played, plus the grace.
            now = self._loop.time()
            due = now + session.playout_buffered_ms(now) / 1000.0 + self.mark_grace_s
            self._pending_marks.append((name, due))
            self._marks_late = False
        await self.send_text(json.dumps({"event": "mark", "mark": {"name": name}}))

    async def send_clear(self) -> None:
        # Telnyx returns the queued marks at once (the session ignores them); the pending ones
        # stay pending here, so a Telnyx that echoes nothing stays on the pacer's estimate.
        await self.send_text('{"event":"clear"}')

    async def end_call(self) -> None:
        """Our side ends the call: hang it up over REST (closing the stream would not), then close."""
        if self.closing:
            return
        self.closing = True
        if self.call_id is not None:
            if self._target is None:
                self._target = await database_sync_to_async(calls.live_call_target)(self.call_id)
            if self._target is not None:
                await self._hangup(self._target, self.call_id)
        await self.close()

    async def _hangup(self, target, call_id: str) -> None:
        call_control_id, account = target
        try:
            async with TelnyxCallControl(account) as rest:
                await rest.hangup(call_control_id, command_id=f"hangup-{call_id}")
        except CarrierAPIError as err:
            # Typically "call has already ended": the caller hung up at the same moment.
            logger.info("call %s: Telnyx hangup not done: %s", call_id, err)
