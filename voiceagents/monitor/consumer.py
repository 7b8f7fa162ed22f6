"""The live monitor's WebSocket: the calls' events, forwarded to a staff member's page.

Served at ``SOCKET_PATH`` behind the page's session and an ``Origin`` check (the project's
router wraps it, as it does the browser test call's media socket: ``telephony.routing``). Anyone
but an active staff member who may view calls is accepted and closed at once with
``FORBIDDEN``, so the page can say why (a refusal before ``accept`` reaches a browser as an
unexplained 1006); a user with ``MONITOR_SOCKETS_PER_USER`` sockets open already gets
``TOO_MANY_SOCKETS``. An accepted socket joins ``MONITOR_GROUP`` and sends ``{"type": "ready"}``;
from then on each event a call publishes (``voiceagents.call.monitor``) is sent on as JSON, at
most ``MONITOR_MESSAGES_PER_SECOND`` a second (``outbox.Outbox``). The browser's own frames are
ignored: there is nothing to ask, and never any audio.
"""

from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from ..call.monitor import BATCH_TYPE, MESSAGE_TYPE, MONITOR_GROUP
from ..conf import get_setting
from ..exceptions import ConfigurationError
from . import slots
from .outbox import Outbox

logger = logging.getLogger(__name__)

#: Where the project's WebSocket router serves the consumer (WebSocket routes cannot be reversed).
SOCKET_PATH = "/voiceagents/monitor/"

# Close codes: the values of ``telephony.closecodes`` (this app does not import telephony),
# application codes because daphne refuses 1008 and the like from an application.
#: Not an active staff member who may view calls.
FORBIDDEN = 4001
#: The channel layer cannot be reached: no events could come.
SERVER_ERROR = 4011
#: The user has ``MONITOR_SOCKETS_PER_USER`` monitor sockets open already.
TOO_MANY_SOCKETS = 4029

DEFAULT_MESSAGES_PER_SECOND = 20.0
DEFAULT_SOCKETS_PER_USER = 4
#: Longest wait for joining the group before the socket is refused.
JOIN_TIMEOUT_S = 2.0


def _positive(name: str, default, cast):
    try:
        value = cast(get_setting(name, default=default, cast=cast))
    except (ConfigurationError, TypeError, ValueError) as err:
        raise ConfigurationError(f"VOICEAGENTS[{name!r}] must be a positive number") from err
    if value <= 0:
        raise ConfigurationError(f"VOICEAGENTS[{name!r}] must be a positive number")
    return value


class LiveMonitorConsumer(AsyncWebsocketConsumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outbox: Outbox | None = None
        self.slot: str | None = None
        self.joined = False
        self._renewing: asyncio.Task | None = None

    async def connect(self):
        user = self.scope.get("user")
        if not await self._may_watch(user):
            await self._refuse(FORBIDDEN, "not a staff member who may view calls")
            return
        try:
            rate = _positive("MONITOR_MESSAGES_PER_SECOND", DEFAULT_MESSAGES_PER_SECOND, float)
            limit = _positive("MONITOR_SOCKETS_PER_USER", DEFAULT_SOCKETS_PER_USER, int)
        except ConfigurationError as err:
            logger.error("live monitor socket refused: %s", err)
            await self._refuse(SERVER_ERROR)
            return
        self.slot = await slots.claim(user.pk, limit)
        if self.slot is None:
            await self._refuse(TOO_MANY_SOCKETS, f"{user.get_username()} has {limit} open already")
            return
        self._renewing = asyncio.ensure_future(self._renew_slot())
        try:
            await asyncio.wait_for(
                self.channel_layer.group_add(MONITOR_GROUP, self.channel_name), JOIN_TIMEOUT_S
            )
        except Exception as err:  # noqa: BLE001 - any layer failure: no events can come
            logger.warning("live monitor socket refused: the channel layer failed: %r", err)
            self._renewing.cancel()
            await slots.release(self.slot)
            self.slot = None
            await self._refuse(SERVER_ERROR)
            return
        self.joined = True
        await self.accept()
        self.outbox = Outbox(self._send_event, rate)
        await self._send_event({"type": "ready", "max_messages_per_second": rate})

    @database_sync_to_async
    def _may_watch(self, user) -> bool:
        return bool(
            user is not None
            and user.is_active
            and user.is_staff
            and user.has_perm("voiceagents.view_call")
        )

    async def _refuse(self, code: int, why: str = "") -> None:
        if why:
            logger.warning("live monitor socket refused: %s", why)
        await self.accept()
        await self.close(code=code)

    async def _renew_slot(self) -> None:
        while True:
            await asyncio.sleep(slots.SLOT_TTL_S / 3)
            try:
                await slots.renew(self.slot)
            except Exception:
                logger.exception("renewing a live monitor socket's slot failed")

    async def disconnect(self, code):
        if self.outbox is not None:
            self.outbox.close()
        if self._renewing is not None:
            self._renewing.cancel()
        if self.slot is not None:
            await slots.release(self.slot)
            self.slot = None
        if self.joined:
            self.joined = False
            try:
                await asyncio.wait_for(
                    self.channel_layer.group_discard(MONITOR_GROUP, self.channel_name),
                    JOIN_TIMEOUT_S,
                )
            except Exception as err:  # noqa: BLE001 - the membership expires on its own
                logger.info("live monitor socket: leaving the group failed: %r", err)

    async def dispatch(self, message):
        # The calls' events use no database: skip Channels' per-message thread hop
        # (``aclose_old_connections``) that ``super().dispatch`` runs before every handler.
        kind = message.get("type")
        if kind == BATCH_TYPE:
            await self.monitor_events(message)
            return
        if kind == MESSAGE_TYPE:
            await self.monitor_event(message)
            return
        await super().dispatch(message)

    async def monitor_events(self, message):
        """What a process's calls published during one window (``MonitorOutbox``), in order."""
        events = message.get("events")
        if not isinstance(events, list):
            logger.warning("live monitor: ignored a malformed batch %.200r", message)
            return
        for event in events:
            await self._offer(event, message)

    async def monitor_event(self, message):
        await self._offer(message.get("event"), message)

    async def _offer(self, event, message) -> None:
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            logger.warning("live monitor: ignored a malformed event %.200r", message)
            return
        if self.outbox is not None:
            await self.outbox.offer(event)

    async def receive(self, text_data=None, bytes_data=None):
        """The page has nothing to say here (hang-ups are POSTed): ignore what it sends."""

    async def _send_event(self, event: dict) -> None:
        await self.send(text_data=json.dumps(event))
