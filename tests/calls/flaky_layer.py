"""An in-memory channel layer that can go down and come back, like a restarted Redis.

While down, every call raises ``ConnectionError`` and receives already waiting fail at once (as
channels-redis's do when its connection drops); coming back, it has forgotten its groups (Redis
without persistence). Use with ``settings.CHANNEL_LAYERS = FLAKY`` and ``get_channel_layer()``.
"""

from __future__ import annotations

import asyncio

from channels.layers import InMemoryChannelLayer

FLAKY = {"default": {"BACKEND": "tests.calls.flaky_layer.FlakyChannelLayer"}}


class LayerDown(ConnectionError):
    pass


class FlakyChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.down = False
        self._outage: asyncio.Event | None = None
        #: Fail only group_add (the layer otherwise works).
        self.refuse_group_add = False
        self.failed_calls = 0
        #: Receives pending now, the most ever pending at once, and those cancelled mid-wait (with
        #: channels-redis a cancelled receive drops its Redis connection).
        self.receiving = 0
        self.max_receiving = 0
        self.cancelled_receives = 0

    def go_down(self) -> None:
        self.down = True
        if self._outage is not None:
            self._outage.set()

    def come_back(self) -> None:
        self.down = False
        self._outage = None
        self.groups.clear()

    def _check(self) -> None:
        if self.down:
            self.failed_calls += 1
            raise LayerDown("channel layer unavailable")

    async def receive(self, channel):
        self._check()
        if self._outage is None:
            self._outage = asyncio.Event()
        outage = asyncio.ensure_future(self._outage.wait())
        message = asyncio.ensure_future(super().receive(channel))
        done: set = set()
        self.receiving += 1
        self.max_receiving = max(self.max_receiving, self.receiving)
        try:
            done, _ = await asyncio.wait({outage, message}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self.cancelled_receives += 1
            raise
        finally:
            self.receiving -= 1
            # Cancelled from outside (the listener stops) or not: neither task may outlive this.
            outage.cancel()
            if message not in done:
                message.cancel()
        if message in done:
            return message.result()
        self._check()
        raise LayerDown("channel layer unavailable")

    async def group_add(self, group, channel):
        self._check()
        if self.refuse_group_add:
            self.failed_calls += 1
            raise LayerDown("group_add refused")
        await super().group_add(group, channel)

    async def group_send(self, group, message):
        self._check()
        await super().group_send(group, message)
