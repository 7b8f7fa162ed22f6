"""A media consumer's side of the control plane: its group on the channel layer, read in the background.

The channel layer (Redis in production) is not part of the call: the call's audio never crosses
it. So its failures must not end a call. ``ControlListener`` reads the consumer's channel and,
when a receive or a ``group_add`` fails, logs it, backs off and subscribes again (``group_add``
once more: a restarted Redis has forgotten the group) until the layer answers; hang-up, say and
transfer commands sent meanwhile are lost, the call goes on. A control message whose handler
raises is logged and dropped too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

#: First and longest wait before retrying a failed channel layer, in seconds.
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
#: How long joining the group may hold up the call's start before it goes on in the background.
JOIN_TIMEOUT_S = 2.0


class ControlListener:
    """Reads ``channel_name`` on ``layer`` and hands each message to ``dispatch`` under ``lock``."""

    def __init__(
        self,
        layer,
        channel_name: str,
        dispatch: Callable[[dict], Awaitable[None]],
        lock: asyncio.Lock,
        label: Callable[[], str],
    ) -> None:
        self.layer = layer
        self.channel_name = channel_name
        self.dispatch = dispatch
        self.lock = lock
        self.label = label
        self.group: str | None = None
        self.joined = False
        self.degraded = False
        self._tasks: list[asyncio.Task] = []
        self._joining: asyncio.Task | None = None

    def start(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._receive_loop()))

    async def join(self, group: str) -> bool:
        """Join ``group`` now if the layer answers in time; otherwise keep trying in the background.

        Never raises: a call without its control plane is still a call.
        """
        self.group = group
        try:
            await asyncio.wait_for(self.layer.group_add(group, self.channel_name), JOIN_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - any layer failure degrades control only
            self._failed("joining the control group", err)
            self._join_later()
            return False
        self.joined = True
        return True

    async def leave(self) -> None:
        if self.group is None or not self.joined:
            return
        try:
            await asyncio.wait_for(
                self.layer.group_discard(self.group, self.channel_name), JOIN_TIMEOUT_S
            )
        except Exception as err:  # noqa: BLE001 - the group entry expires on its own
            logger.info("%s: leaving the control group failed: %r", self.label(), err)
        self.joined = False

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
                await self.layer.group_add(self.group, self.channel_name)
            except Exception as err:  # noqa: BLE001
                self._failed("joining the control group", err)
                continue
            self.joined = True
            self._recovered()
            return

    async def _receive_loop(self) -> None:
        delay = RETRY_MIN_S
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except Exception as err:  # noqa: BLE001
                # A restarted layer may have lost the group: join again once it answers.
                self._failed("receiving control messages", err)
                self._join_later()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            if self.joined or self.group is None:
                self._recovered()
            async with self.lock:
                try:
                    await self.dispatch(message)
                except Exception:
                    logger.exception("%s: control message %r failed", self.label(), message)

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
