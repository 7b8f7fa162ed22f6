"""The carrier-agnostic part of media-stream consumers.

A carrier's consumer subclass parses its own frames and calls the helpers here: ``begin_call``
(authenticate the stream token, snapshot the call, start the ``CallSession``), ``malformed`` (count
and rate-limited logging), ``end_session``. It also implements the session's ``CarrierLink``
(``send_media``, ``send_mark``, ``send_clear``, ``end_call``) in its own frame format.

Channels (4.2+) runs ``aclose_old_connections()``, a ``sync_to_async`` thread hop, before every
handler. For ``websocket.receive`` (50 frames a second per call) we route straight to the handler;
connect, disconnect and control messages keep the default (style.md §8).

Channels' consumer loop (``await_many_dispatch``) also costs, per message, an ``asyncio.wait`` over
the socket and channel-layer receives and a fresh task for the next receive. ``__call__`` below
reads the socket in the consumer's own task instead and the channel layer in a side task; a lock
keeps handlers one at a time, as Channels does (docs/benchmarks.md has the numbers).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from voiceagents import callsetup, streamtokens
from voiceagents.audio.formats import AudioFormat
from voiceagents.conf import get_setting
from voiceagents.control import call_group
from voiceagents.exceptions import ConfigurationError, VoiceAgentsError, WebhookValidationFailure
from voiceagents.providers import build_provider
from voiceagents.session import CallSession

from . import closecodes
from .controlplane import ControlListener

logger = logging.getLogger(__name__)

#: Frames larger than this are refused (a 20 ms media frame is ~300 bytes of JSON).
MAX_FRAME_BYTES = 64 * 1024
#: Malformed frames logged per call at WARNING; the rest are only counted.
MALFORMED_LOG_LIMIT = 5


class MediaStreamConsumer(AsyncWebsocketConsumer):
    """Base of the carriers' media consumers; subclasses implement ``on_text`` and the link."""

    #: Carrier id, as in ``voiceagents.models.Carrier``.
    carrier_id = ""
    carrier_format: AudioFormat
    #: The caller audio's format as it arrives; ``None``: the same as ``carrier_format``.
    inbound_format: AudioFormat | None = None
    has_marks = True
    #: Carrier frame ``event`` → name of the coroutine method that handles it; subclasses fill it.
    frame_events: dict[str, str] = {}
    #: Events that are valid but need no action.
    ignored_events: frozenset[str] = frozenset()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Bound once per connection, so each frame costs one dict lookup.
        self._frame_handlers = {
            event: getattr(self, name) for event, name in self.frame_events.items()
        }

    async def __call__(self, scope, receive, send):
        """``AsyncConsumer.__call__`` with the same semantics and no per-message task or wait.

        Handlers still run one at a time. The channel layer is read by a ``ControlListener``,
        whose failures never end the consumer; whatever way the loop ends, the call's ending runs.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        self._handler_lock = asyncio.Lock()
        self.control: ControlListener | None = None
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            self.control = ControlListener(
                self.channel_layer,
                self.channel_name,
                self.dispatch,
                self._handler_lock,
                lambda: f"call {getattr(self, 'call_id', None) or '?'}",
            )
            self.control.start()
        try:
            lock = self._handler_lock
            while True:
                message = await receive()
                async with lock:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        except Exception:
            logger.exception("%s media stream: consumer failed", self.carrier_id)
            await self.end_session("internal_error", by_carrier=False)
            await self.refuse(closecodes.SERVER_ERROR)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        """The common tail of every exit: the call ended, the control group left, the timer off."""
        timer = getattr(self, "_start_timer", None)
        if timer is not None:
            timer.cancel()
        try:
            await self.end_session("stream_closed", by_carrier=True)
        finally:
            if self.control is not None:
                await self.control.stop()
                await self.control.leave()

    async def dispatch(self, message):
        if message["type"] == "websocket.receive":
            # Every carrier frame comes through here: skip Channels' per-message
            # aclose_old_connections() hop (no ORM here) and, for a text frame of a sane size,
            # the generic websocket_receive() -> receive() layers too.
            text = message.get("text")
            if text is not None and len(text) <= MAX_FRAME_BYTES:
                await self._on_text_safely(text)
            else:
                await self.websocket_receive(message)  # receive() reports what is wrong
            return
        await super().dispatch(message)

    @property
    def caller_format(self) -> AudioFormat:
        """``CarrierLink.caller_format``: what ``caller_audio`` gets (converted once, in the session)."""
        return self.inbound_format or self.carrier_format

    async def send_text(self, text: str) -> None:
        """One text frame to the carrier, handed straight to the ASGI server (the hot path)."""
        await self.base_send({"type": "websocket.send", "text": text})

    async def connect(self):
        self.session: CallSession | None = None
        self.call_id: str | None = None
        self.malformed_count = 0
        self.closing = False
        self.started = False
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

    async def _start_timed_out(self, timeout: float) -> None:
        async with self._handler_lock:
            if self.started or self.closing:
                return
            logger.warning(
                "%s media stream closed: no valid start within %s s", self.carrier_id, timeout
            )
            await self.refuse(closecodes.START_TIMEOUT)

    async def refuse(self, code: int, why: str = "") -> None:
        """Close a stream that has no call (yet) with one of ``closecodes``."""
        if why:
            logger.warning("%s media stream refused: %s", self.carrier_id, why)
        if not self.closing:
            self.closing = True
            await self.close(code=code)

    async def authenticate_handshake(self) -> bool:
        """Subclasses verify the carrier's handshake signature where it sends one."""
        return True

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            self.malformed("binary frame")
            return
        if len(text_data) > MAX_FRAME_BYTES:
            self.malformed(f"frame of {len(text_data)} bytes (limit {MAX_FRAME_BYTES})")
            return
        await self._on_text_safely(text_data)

    async def _on_text_safely(self, text: str) -> None:
        # A frame the parser did not foresee (a list where a string belongs, an odd nesting) is
        # the carrier's problem, not the call's: it is counted and logged like any malformed one.
        try:
            await self.on_text(text)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as err:
            self.malformed(f"unreadable frame ({type(err).__name__}: {str(err)[:80]})")

    async def on_text(self, text: str) -> None:
        """Parse a carrier frame and hand it to the handler that ``frame_events`` names."""
        try:
            frame = json.loads(text)
            event = frame["event"]
        except (ValueError, TypeError, KeyError):
            self.malformed("not a JSON object with an event")
            return
        if not isinstance(event, str):
            self.malformed("event is not a string")
            return
        handler = self._frame_handlers.get(event)
        if handler is not None:
            await handler(frame)
        elif event not in self.ignored_events:
            self.malformed(f"unknown event {event[:40]!r}")

    def malformed(self, why: str) -> None:
        self.malformed_count += 1
        if self.malformed_count <= MALFORMED_LOG_LIMIT:
            logger.warning(
                "call %s: ignored a malformed %s frame (%s)%s",
                self.call_id or "?",
                self.carrier_id,
                why,
                "; further ones are only counted"
                if self.malformed_count == MALFORMED_LOG_LIMIT
                else "",
            )

    # -- call start ------------------------------------------------------------------------------

    async def begin_call(
        self, call_id: str, token: str, stream_id: str, carrier_call_id: str
    ) -> bool:
        """Authenticate the stream and start the session; refuse before any provider opens.

        ``carrier_call_id`` must be the carrier's id of the call the token was minted for.
        """
        self.started = True
        if not carrier_call_id:
            await self.refuse(closecodes.BAD_START, "start without the carrier call id")
            return False
        try:
            streamtokens.check(call_id, token)
            context = await database_sync_to_async(callsetup.start_call)(
                call_id,
                stream_id=stream_id,
                carrier_format=self.carrier_format,
                carrier_call_id=carrier_call_id,
            )
        except WebhookValidationFailure as err:
            await self.refuse(closecodes.FORBIDDEN, str(err))
            return False
        except callsetup.CallRejected as err:
            logger.info("call %s: stream refused: %s", call_id, err.reason)
            await self.refuse(closecodes.CALL_UNAVAILABLE)
            return False
        except (ConfigurationError, VoiceAgentsError) as err:
            logger.error("call %s: cannot start: %s", call_id, err)
            await database_sync_to_async(callsetup.fail_before_start)(
                call_id, "configuration_error", str(err)
            )
            await self.refuse(closecodes.SERVER_ERROR)
            return False
        self.call_id = call_id
        try:
            provider = build_provider(context.provider_id, context.provider_config)
        except VoiceAgentsError as err:
            await database_sync_to_async(callsetup.fail_before_start)(
                call_id, "provider_unavailable", str(err)
            )
            await self.refuse(closecodes.SERVER_ERROR)
            return False
        self.session = CallSession(context, self, provider)
        if self.control is not None:
            # Never fails: a channel layer that is down degrades the control plane, not the call.
            await self.control.join(call_group(call_id))
        self.session.start()
        return True

    async def end_session(self, reason: str, *, by_carrier: bool) -> None:
        session = getattr(self, "session", None)
        if session is None:
            return
        session.carrier_metrics("malformed_frames", self.malformed_count)
        await session.end(reason, by_carrier=by_carrier)

    async def disconnect(self, code):
        await self.end_session("stream_closed", by_carrier=True)

    # -- CarrierLink ------------------------------------------------------------------------------

    async def end_call(self) -> None:
        if not self.closing:
            self.closing = True
            await self.close()

    # -- control plane (voiceagents.control) ------------------------------------------------------

    async def call_hangup(self, message):
        logger.info("call %s: hang-up requested (%s)", self.call_id, message.get("reason", ""))
        await self.end_session(message.get("reason") or "operator_hangup", by_carrier=False)

    async def call_say(self, message):
        if self.session is not None and message.get("text"):
            await self.session.say(message["text"])

    async def call_transfer(self, message):
        logger.warning("call %s: transfer is not available on this carrier yet", self.call_id)
