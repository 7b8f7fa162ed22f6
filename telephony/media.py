"""The one media-stream consumer: every carrier's stream, its call, and the call's control plane.

A carrier plugs in with a ``FrameCodec`` (``telephony.frames``: its frames as typed values, and
the frames we send) and a subclass of ``MediaStreamConsumer`` that names it and overrides the
hooks it needs: ``authenticate_handshake``, ``prepare_start``, ``after_start``, ``on_media``,
``mark_echoed``, ``on_connected``, ``end_call``. Everything else is here, once: the start timeout,
authentication and the call's start, media/mark/dtmf/stop/error, malformed-frame counting, the
control plane (``controlplane.ControlListener``) and one ending for every way out.
docs/media-streams.md is the contract; its close codes are in ``closecodes``.

The session sees this consumer as its ``CarrierLink`` and the consumer sees the session only
through its narrow handle (``caller_audio``, ``mark_echoed``, ``dtmf``, ``say``, ``amd_result``,
``end``, ``call_ms``, ``playout_buffered_ms``, ``record_event``, ``carrier_metrics``).

Channels (4.2+) runs ``aclose_old_connections()``, a ``sync_to_async`` thread hop, before every
handler. For ``websocket.receive`` (50 frames a second per call) ``dispatch`` goes straight to the
codec; connect and disconnect skip the hop too (the call's database work runs in the database
thread, ``voiceagents.dbthread``, and that hop would run there and close the connection it keeps),
and so does ``websocket_disconnect``'s own one at its end; control messages keep the default.
"""

from __future__ import annotations

import asyncio
import logging

from channels.consumer import get_handler_name
from channels.exceptions import InvalidChannelLayerError, StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from voiceagents import dbthread
from voiceagents.audio.formats import AudioFormat
from voiceagents.call import callsetup, streamtokens, transfer
from voiceagents.call.control import call_group, operator_transfer_refusal
from voiceagents.call.session import CallSession
from voiceagents.conf import get_setting
from voiceagents.exceptions import (
    ConfigurationError,
    UnsupportedFeature,
    VoiceAgentsError,
    WebhookValidationFailure,
)
from voiceagents.providers import build_provider

from . import closecodes, limits
from .controlplane import ControlListener
from .frames import (
    Connected,
    Dtmf,
    Error,
    FrameCodec,
    Ignored,
    Malformed,
    Mark,
    Media,
    Start,
    Stop,
)
from .receiveloop import FastReceiveLoop

logger = logging.getLogger(__name__)

#: Messages whose handlers run without Channels' ``aclose_old_connections`` hop (see ``dispatch``).
_OWN_DATABASE_WORK = frozenset({"websocket.connect", "websocket.disconnect"})
#: Frames larger than this are refused (a 20 ms media frame is ~300 bytes of JSON).
MAX_FRAME_BYTES = 64 * 1024
#: Malformed frames logged per call at WARNING; the rest are only counted.
MALFORMED_LOG_LIMIT = 5
#: Longest wait, on ``stop``, for the answer of a transfer request that was on its way.
TRANSFER_STOP_WAIT_S = 15.0
#: How far a carrier's media timestamp may run ahead of the call clock: one far off would make
#: the recording pad silence up to it.
MAX_TIMESTAMP_LEAD_MS = 10_000


class MediaStreamConsumer(FastReceiveLoop, AsyncWebsocketConsumer):
    """Base of the carriers' media consumers; see the module docstring."""

    #: Carrier id, as registered in ``voiceagents.carriers.carriers``.
    carrier_id = ""
    #: The carrier's ``FrameCodec`` subclass; one instance per stream.
    codec_class: type[FrameCodec] = FrameCodec
    carrier_format: AudioFormat
    #: The caller audio's format as it arrives; ``None``: the same as ``carrier_format``.
    inbound_format: AudioFormat | None = None
    has_marks = True
    #: Close code when our side ends a started call (``end_call``).
    end_code = closecodes.NORMAL
    #: End reason when the carrier sends ``stop``.
    stop_reason = "caller_hangup"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.session: CallSession | None = None
        self.call_id: str | None = None
        self.codec = self.codec_class()
        self._parse = self.codec.parse
        self._on_media = self.on_media
        self.malformed_count = 0
        self.started = False
        self.closing = False
        self.control: ControlListener | None = None
        self._start_timer: asyncio.TimerHandle | None = None
        self._timestamp_limit = -1
        #: Set while the carrier is asked to transfer the call; its result says whether it went.
        self._transfer: asyncio.Future | None = None
        self.transferred = False
        #: The client IP holding a ``limits`` connection slot, and whether a call slot is held.
        self._ip: str | None = None
        self._holds_call = False
        # Bound once per connection, so each frame costs one dict lookup.
        self._frame_handlers = {
            Start: self.on_start,
            Mark: self.on_mark,
            Dtmf: self.on_dtmf,
            Stop: self.on_stop,
            Connected: self.on_connected,
            Error: self.on_error,
            Ignored: self.on_ignored,
            Malformed: self.on_malformed,
        }

    # -- the loop (receiveloop.FastReceiveLoop) --------------------------------------------------

    async def on_loop_start(self) -> None:
        if self.channel_layer is not None:
            # Its messages come through the process's one reader (controlplane.ControlHub).
            self.control = ControlListener(
                self.channel_layer, self.dispatch, self.handler_lock, self.label
            )

    async def on_loop_error(self, err: Exception) -> None:
        logger.error("%s: the media consumer failed", self.label(), exc_info=err)
        # The call's own ending closes the stream (end_call): with this code, not a normal one.
        self.end_code = closecodes.SERVER_ERROR
        await self.end_session("internal_error", by_carrier=False)
        await self.refuse(closecodes.SERVER_ERROR)

    async def on_loop_end(self) -> None:
        """The common tail of every exit: the call ended, the control group left, the timer off."""
        if self._start_timer is not None:
            self._start_timer.cancel()
        self._release_limits()
        try:
            await self._transfer_settled()
            reason = "transferred" if self.transferred else "stream_closed"
            await self.end_session(reason, by_carrier=True)
        finally:
            if self.control is not None:
                await self.control.stop()
                await self.control.leave()

    def label(self) -> str:
        return f"{self.carrier_id} call {self.call_id or '?'}"

    async def dispatch(self, message):
        if message["type"] == "websocket.receive":
            text = message.get("text")
            if text is None or len(text) > MAX_FRAME_BYTES:
                size = len(text) if text is not None else len(message.get("bytes") or b"")
                self.malformed(f"binary or oversized frame ({size} bytes)")
                return
            frame = self._parse(text)
            if type(frame) is Media:  # the hot path: 50 a second
                session = self.session
                if session is None:
                    self.malformed("media before start")
                elif self._on_media is not None:
                    await self._on_media(frame)
                else:
                    timestamp = frame.timestamp
                    if timestamp is not None and not 0 <= timestamp <= self._timestamp_limit:
                        timestamp = self._plausible(timestamp)
                    await session.caller_audio(frame.payload, frame.audio, timestamp)
                return
            await self._frame_handlers[type(frame)](frame)
            return
        if message["type"] in _OWN_DATABASE_WORK:
            # Their database work goes to the database thread (voiceagents.dbthread), which keeps
            # its connections: Channels' ``aclose_old_connections`` hop runs in that same thread
            # (asgiref's thread-sensitive one) and would close the connection it keeps.
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)

    async def websocket_disconnect(self, message):
        """``AsyncWebsocketConsumer``'s, without its trailing ``aclose_old_connections()``.

        That hop runs ``close_old_connections`` in asgiref's thread-sensitive thread, which is the
        database thread (``voiceagents.dbthread``): with ``CONN_MAX_AGE`` 0 it closed the SQLite
        connection that thread keeps, once per call, and the next call's webhook opened it again
        (~1 ms of a call's set-up). The consumer's own database work already ran there.
        """
        try:
            for group in self.groups:
                await self.channel_layer.group_discard(group, self.channel_name)
        except AttributeError:
            raise InvalidChannelLayerError(
                "BACKEND is unconfigured or doesn't support groups"
            ) from None
        await self.disconnect(message["code"])
        raise StopConsumer()

    def malformed(self, why: str) -> None:
        self.malformed_count += 1
        if self.session is not None:
            # Kept current (a rare path): the session may end on its own and report it.
            self.session.carrier_metrics("malformed_frames", self.malformed_count)
        if self.malformed_count <= MALFORMED_LOG_LIMIT:
            logger.warning(
                "%s: ignored a malformed frame (%s)%s",
                self.label(),
                why,
                "; further ones are only counted"
                if self.malformed_count == MALFORMED_LOG_LIMIT
                else "",
            )

    # -- handshake and start --------------------------------------------------------------------

    async def connect(self):
        ip = limits.scope_ip(self.scope)
        if not limits.open_connection(ip):
            logger.warning(
                "%s media stream from %s refused: over MEDIA_CONNECTIONS_PER_IP",
                self.carrier_id,
                ip,
            )
            await self.close()  # before accept: the server answers the upgrade with 403
            return
        self._ip = ip
        if not await self.authenticate_handshake():
            logger.warning("%s media stream refused: handshake not authenticated", self.carrier_id)
            await self.close()  # before accept: the server answers the upgrade with 403
            return
        try:
            timeout = float(get_setting("STREAM_START_TIMEOUT", cast=float))
        except (ConfigurationError, TypeError, ValueError) as err:
            logger.error("%s media stream refused: STREAM_START_TIMEOUT: %s", self.carrier_id, err)
            await self.close()
            return
        await self.accept()
        self._start_timer = asyncio.get_running_loop().call_later(
            timeout, lambda: asyncio.ensure_future(self._start_timed_out(timeout))
        )

    async def authenticate_handshake(self) -> bool:
        """Carriers verify their handshake (signature, token header) here."""
        return True

    async def _start_timed_out(self, timeout: float) -> None:
        async with self.handler_lock:
            if not self.started and not self.closing:
                await self.refuse(closecodes.START_TIMEOUT, f"no valid start within {timeout} s")

    async def refuse(self, code: int, why: str = "") -> None:
        """Close the stream, once, with one of ``closecodes`` (``why``: a refusal, logged)."""
        if why:
            logger.warning("%s media stream refused: %s", self.carrier_id, why)
        if not self.closing:
            self.closing = True
            self._release_call()  # the call is over for this process, whenever the socket goes
            await self.close(code=code)

    async def on_start(self, start: Start) -> None:
        if self.started:
            self.malformed("second start")
            return
        self.started = True
        if self._start_timer is not None:
            self._start_timer.cancel()
        refusal = await self.prepare_start(start)
        if refusal is not None:
            await self.refuse(*refusal)
            return
        missing = [
            name
            for name in ("call_id", "token", "stream_id", "carrier_call_id")
            if not getattr(start, name)
        ]
        unusable = f"start without {', '.join(missing)}" if missing else None
        if unusable is None:
            unusable = self.codec.bind(start)
            unusable = unusable and f"start with an {unusable}"
        if unusable:
            await self.refuse(closecodes.BAD_START, unusable)
            await self.refused_after_start(start, unusable)
            return
        if not limits.start_call():
            why = f"this process runs {limits.live_calls()} calls already (MAX_CALLS_PER_PROCESS)"
            await self.refuse(closecodes.AT_CAPACITY, why)
            await self.refused_after_start(
                start, why, reason=limits.AT_CAPACITY, error=limits.AT_CAPACITY_ERROR
            )
            return
        self._holds_call = True
        started = await self.begin_call(start)
        if not started:
            self._release_call()
        await self.after_start(start, started)

    def _release_call(self) -> None:
        if self._holds_call:
            self._holds_call = False
            limits.end_call()

    def _release_limits(self) -> None:
        """Give back this connection's ``limits`` slots, once."""
        self._release_call()
        if self._ip is not None:
            limits.close_connection(self._ip)
            self._ip = None

    async def refused_after_start(
        self, start: Start, why: str, *, reason: str = "bad_start", error: str = ""
    ) -> None:
        """A ``start`` refused: if it still proves to be its call's (valid token, same carrier
        call, no stream yet), the call fails with ``reason`` and the carrier's clean-up runs."""
        if not (start.call_id and start.token and start.carrier_call_id):
            return
        failed = await dbthread.run(
            callsetup.fail_refused_stream,
            start.call_id,
            start.token,
            start.carrier_call_id,
            reason,
            error or f"The {self.carrier_id} media stream was refused: {why}.",
        )
        if failed:
            await self.after_start(start, False)

    async def prepare_start(self, start: Start) -> tuple[int, str] | None:
        """Complete ``start`` from the handshake, or return ``(close code, why)`` to refuse it."""
        return None

    async def after_start(self, start: Start, started: bool) -> None:
        """After the call started (``started``) or was refused; carriers clean up here."""

    async def begin_call(self, start: Start) -> bool:
        """Authenticate the stream and start the session; refuse before any provider opens."""
        call_id = start.call_id
        try:
            streamtokens.check(call_id, start.token)
            context = await dbthread.run(
                callsetup.start_call,
                call_id,
                stream_id=start.stream_id,
                carrier_format=self.carrier_format,
                carrier_call_id=start.carrier_call_id,
            )
        except WebhookValidationFailure as err:
            await self.refuse(closecodes.FORBIDDEN, str(err))
            return False
        except callsetup.CallRejected as err:
            # Recorded on the call (failed, with the reason) unless it had ended already.
            logger.info("call %s: stream refused: %s", call_id, err.reason)
            await self.refuse(closecodes.CALL_UNAVAILABLE)
            return False
        except (ConfigurationError, VoiceAgentsError) as err:
            logger.error("call %s: cannot start: %s", call_id, err)
            await dbthread.run(
                callsetup.fail_before_start, call_id, "configuration_error", str(err)
            )
            await self.refuse(closecodes.SERVER_ERROR)
            return False
        self.call_id = call_id
        try:
            provider = build_provider(context.provider_id, context.provider_config)
        except VoiceAgentsError as err:
            await dbthread.run(
                callsetup.fail_before_start, call_id, "provider_unavailable", str(err)
            )
            await self.refuse(closecodes.SERVER_ERROR)
            return False
        self.session = CallSession(context, self, provider)
        self.session.carrier_metrics("malformed_frames", self.malformed_count)
        if self.control is not None:
            # Never fails: a channel layer that is down degrades the control plane, not the call.
            await self.control.join(call_group(call_id))
        self.session.start()
        return True

    # -- frames from the carrier ------------------------------------------------------------------

    #: ``async def on_media(self, media)`` in a carrier that handles caller audio itself
    #: (reordering); by default ``dispatch`` hands it to the session at once, its timestamp checked.
    on_media = None

    def _plausible(self, timestamp: int) -> int | None:
        self._timestamp_limit = self.session.call_ms() + MAX_TIMESTAMP_LEAD_MS
        if 0 <= timestamp <= self._timestamp_limit:
            return timestamp
        self.malformed(f"media timestamp {str(timestamp)[:20]} far from the call clock")
        return None

    async def on_mark(self, mark: Mark) -> None:
        self.mark_echoed(mark.name)
        if self.session is not None:
            self.session.mark_echoed(mark.name)

    def mark_echoed(self, name: str) -> None:
        """The carrier echoed a mark (before the session hears of it)."""

    async def on_dtmf(self, dtmf: Dtmf) -> None:
        if self.session is not None:
            await self.session.dtmf(dtmf.digit)

    async def on_stop(self, stop: Stop) -> None:
        await self._transfer_settled()
        reason = self.stop_reason
        if reason == "caller_hangup" and self.session is not None and self.session.ctx.outbound:
            reason = "callee_hangup"  # on a call we placed, the other party is the callee
        await self.end_session(reason, by_carrier=True)
        await self.refuse(closecodes.NORMAL)

    async def _transfer_settled(self) -> None:
        """A transfer's own stream end (Twilio ends the stream as it runs the ``<Dial>``) may come
        before the carrier's REST answer: wait for that answer, so the call ends as transferred."""
        pending = self._transfer
        if pending is not None and not pending.done():
            try:
                await asyncio.wait_for(asyncio.shield(pending), TRANSFER_STOP_WAIT_S)
            except TimeoutError:
                pass

    async def on_connected(self, connected: Connected) -> None:
        """The carrier's first frame; nothing to do unless the carrier says otherwise."""

    async def on_error(self, error: Error) -> None:
        logger.warning("%s: stream error %s: %s", self.label(), error.code, error.message)
        if self.session is not None:
            self.session.record_event(
                "error", source=self.carrier_id, code=error.code, message=error.message
            )

    async def on_ignored(self, ignored: Ignored) -> None:
        pass

    async def on_malformed(self, malformed: Malformed) -> None:
        self.malformed(malformed.why)

    # -- the end ----------------------------------------------------------------------------------

    async def end_session(self, reason: str, *, by_carrier: bool) -> None:
        session = self.session
        if session is None:
            return
        await session.end(reason, by_carrier=by_carrier)

    # -- CarrierLink ------------------------------------------------------------------------------

    @property
    def caller_format(self) -> AudioFormat:
        """What ``caller_audio`` gets (converted once, in the session)."""
        return self.inbound_format or self.carrier_format

    async def send_media(self, payload: str) -> None:
        # Straight to the ASGI server: the hot path of agent audio.
        await self.base_send({"type": "websocket.send", "text": self.codec.media(payload)})

    async def send_mark(self, name: str) -> None:
        await self.base_send({"type": "websocket.send", "text": self.codec.mark(name)})

    async def send_clear(self) -> None:
        await self.base_send({"type": "websocket.send", "text": self.codec.clear()})

    async def end_call(self) -> None:
        """Our side ends the call: close the stream (Twilio then hangs up)."""
        await self.refuse(self.end_code)

    async def transfer(self, number: str, *, announcement: str = "") -> None:
        """Hand the caller to ``number`` on the carrier (``carry_out_transfer``).

        Raises ``CarrierAPIError`` when the carrier refuses, ``UnsupportedFeature`` when it has
        no transfers. Once it went through, the stream's end is the transfer's (``transferred``).
        """
        if self.closing or self.call_id is None:
            raise UnsupportedFeature("The call has ended: there is nothing to transfer")
        self._transfer = pending = asyncio.get_running_loop().create_future()
        done = False
        try:
            await self.carry_out_transfer(number, announcement)
            done = True
            self.transferred = True
            self.stop_reason = "transferred"
        finally:
            pending.set_result(done)

    async def carry_out_transfer(self, number: str, announcement: str) -> None:
        """The carrier's transfer command; carriers that can transfer override it."""
        raise UnsupportedFeature(f"{self.carrier_id} calls cannot be transferred")

    # -- control plane (voiceagents.call.control) ------------------------------------------------------

    async def call_hangup(self, message):
        logger.info("call %s: hang-up requested (%s)", self.call_id, message.get("reason", ""))
        await self.end_session(message.get("reason") or "operator_hangup", by_carrier=False)

    async def call_amd(self, message):
        if self.session is not None:
            self.session.amd_result(str(message.get("answered_by") or ""))

    async def call_say(self, message):
        text = str(message.get("text") or "").strip()
        if self.session is None or not text:
            logger.info("call %s: say ignored (no session or no text)", self.call_id)
            return
        logger.info("call %s: say requested by an operator", self.call_id)
        self.session.record_event("other", action="say", by="operator", text=text[:500])
        await self.session.say(text)

    async def call_transfer(self, message):
        """An operator's transfer: checked here too (any process may send it), then carried out
        in the session's background: the handler runs under the lock the media path takes."""
        session = self.session
        if session is None:
            logger.info("call %s: transfer ignored: no call running here", self.call_id)
            return
        number = str(message.get("number") or "")
        refusal = operator_transfer_refusal(number, session.ctx.transfer_allowlist)
        if refusal:
            logger.warning(
                "call %s: operator transfer to %r refused: %s", self.call_id, number, refusal
            )
            session.record_event(
                "transfer", number=number[:32], by="operator", allowed=False, done=False
            )
            return
        session.background(
            self._operator_transfer(number, str(message.get("announcement") or "")), "transfer"
        )

    async def _operator_transfer(self, number: str, announcement: str) -> None:
        session = self.session
        refusal = await transfer.carry_out(
            session, number, by="operator", announcement=announcement, wait=False, allowed=True
        )
        if refusal is None:
            await transfer.end_transferred(session)
