"""A media consumer's side of the control plane: its call's group on the channel layer.

The channel layer (Redis in production) is not part of the call: the call's audio never crosses
it. So its failures must not end a call. ``ControlListener`` joins the call's group and, when a
receive or a ``group_add`` fails, logs it, backs off and subscribes again (``group_add`` once
more: a restarted Redis has forgotten the group) until the layer answers; hang-up, say and
transfer commands sent meanwhile are lost, the call goes on. A control message whose handler
raises is logged and dropped too.

One reader per process (``ControlHub``), not one per call: every live call of the process joins
its group with the hub's channel, and the hub hands each message to the call its ``group`` names
(``voiceagents.call.control`` puts it there). With channels-redis a reader per call was costly:
its pending ``BRPOP`` is cancelled when its call ends, which drops that Redis connection, and
the next reader connects again (about 1 ms of CPU per call's set-up, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from voiceagents.call.layerscope import PerLoopAndLayer

logger = logging.getLogger(__name__)

#: First and longest wait before retrying a failed channel layer, in seconds.
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
#: How long joining the group may hold up the call's start before it goes on in the background.
JOIN_TIMEOUT_S = 2.0
#: The key of a control message that names the group (the call) it was sent to.
GROUP_KEY = "group"


class ControlHub(PerLoopAndLayer):
    """The process's one reader of control messages on ``layer`` (``ControlHub.of(layer)``: one
    per event loop).

    It reads while at least one call listens and hands each message to the listener of the group
    the message names. When the last listener leaves it stops reading, so an idle process holds
    no pending receive.
    """

    def __init__(self, layer) -> None:
        super().__init__(layer)
        self.channel_name: str | None = None
        self.listeners: dict[str, ControlListener] = {}
        self._task: asyncio.Task | None = None

    async def channel(self) -> str:
        if self.channel_name is None:
            self.channel_name = await self.layer.new_channel()
        return self.channel_name

    def add(self, group: str, listener: ControlListener) -> None:
        self.listeners[group] = listener
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._receive_loop())

    async def remove(self, group: str, listener: ControlListener) -> None:
        if self.listeners.get(group) is listener:
            del self.listeners[group]
        if not self.listeners and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _receive_loop(self) -> None:
        delay = RETRY_MIN_S
        channel = await self.channel()
        while True:
            try:
                message = await self.layer.receive(channel)
            except Exception as err:  # noqa: BLE001
                # A restarted layer may have lost the groups: each call joins again once it answers.
                for listener in list(self.listeners.values()):
                    listener._failed("receiving control messages", err)
                    listener._join_later()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            for listener in list(self.listeners.values()):
                if listener.joined:
                    listener._recovered()
            group = message.get(GROUP_KEY) if isinstance(message, dict) else None
            listener = self.listeners.get(group) if isinstance(group, str) else None
            if listener is None:
                # Its call ended in this process, or a sender that names no group.
                logger.info("control message for %r, which no call here holds, dropped", group)
                continue
            listener.deliver(message)


class ControlListener:
    """One call's control messages: joins ``group`` through the process's hub and hands each
    message to ``dispatch`` under ``lock``, in order."""

    def __init__(
        self,
        layer,
        dispatch: Callable[[dict], Awaitable[None]],
        lock: asyncio.Lock,
        label: Callable[[], str],
    ) -> None:
        self.layer = layer
        self.hub = ControlHub.of(layer)
        self.dispatch = dispatch
        self.lock = lock
        self.label = label
        self.group: str | None = None
        self.joined = False
        self.degraded = False
        self._inbox: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._joining: asyncio.Task | None = None

    async def join(self, group: str) -> bool:
        """Join ``group`` now if the layer answers in time; otherwise keep trying in the background.

        Never raises: a call without its control plane is still a call.
        """
        self.group = group
        self.hub.add(group, self)
        try:
            channel = await self.hub.channel()
            await asyncio.wait_for(self.layer.group_add(group, channel), JOIN_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - any layer failure degrades control only
            self._failed("joining the control group", err)
            self._join_later()
            return False
        self.joined = True
        return True

    async def leave(self) -> None:
        if self.group is None:
            return
        await self.hub.remove(self.group, self)
        if not self.joined:
            return
        try:
            await asyncio.wait_for(
                self.layer.group_discard(self.group, self.hub.channel_name), JOIN_TIMEOUT_S
            )
        except Exception as err:  # noqa: BLE001 - the group entry expires on its own
            logger.info("%s: leaving the control group failed: %r", self.label(), err)
        self.joined = False

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def deliver(self, message: dict) -> None:
        """A message for this call (from the hub): handled in order, in the call's own task."""
        if self._inbox is None:
            # Most calls never get one: the task starts with the first.
            self._inbox = asyncio.Queue()
            self._tasks.append(asyncio.ensure_future(self._handle_loop()))
        self._inbox.put_nowait(message)

    async def _handle_loop(self) -> None:
        while True:
            message = await self._inbox.get()
            async with self.lock:
                try:
                    await self.dispatch(message)
                except Exception:
                    logger.exception("%s: control message %r failed", self.label(), message)

    def _join_later(self) -> None:
        self.joined = False
        if self.group is not None and (self._joining is None or self._joining.done()):
            self._joining = asyncio.ensure_future(self._join_loop())
            self._tasks.append(self._joining)

    async def _join_loop(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            try:
                await self.layer.group_add(self.group, await self.hub.channel())
            except Exception as err:  # noqa: BLE001
                self._failed("joining the control group", err)
                continue
            self.joined = True
            self._recovered()
            return

    def _failed(self, what: str, err: BaseException) -> None:
        if not self.degraded:
            self.degraded = True
            logger.warning(
                "%s: control plane unavailable (%s: %r); the call goes on, retrying",
                self.label(),
                what,
                err,
            )

    def _recovered(self) -> None:
        if self.degraded:
            self.degraded = False
            logger.warning("%s: control plane available again", self.label())
