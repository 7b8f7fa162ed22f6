"""A consumer's receive loop without Channels' per-message task and wait.

Channels' ``AsyncConsumer.__call__`` runs ``await_many_dispatch``: per message an
``asyncio.wait`` over the socket and channel-layer receives and a fresh task for the next receive
(docs/benchmarks.md measured it on the media path). ``FastReceiveLoop.__call__`` keeps its
semantics — the same attributes (``scope``, ``channel_layer``, ``channel_name``,
``channel_receive``, ``base_send``), one handler at a time, ``StopConsumer`` ends it — but reads
the socket in the consumer's own task. The channel layer is left to the consumer
(``on_loop_start``), which reads it in a side task under ``handler_lock``.

``tests/telephony/test_receive_loop.py`` pins this against the installed Channels: a Channels
release that changes ``AsyncConsumer.__call__`` fails it until this module is checked again.
"""

from __future__ import annotations

import asyncio
import functools

from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

#: The Channels ``AsyncConsumer.__call__`` this loop mirrors (see the pinning test).
MIRRORED_CHANNELS = "4.3"


class FastReceiveLoop:
    """Mixin for an ``AsyncConsumer`` subclass (put it first in the bases)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: Held while a handler runs: the socket's and the channel layer's, one at a time.
        self.handler_lock = asyncio.Lock()

    async def __call__(self, scope, receive, send):
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        lock = self.handler_lock
        await self.on_loop_start()
        try:
            while True:
                message = await receive()
                async with lock:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        except Exception as err:
            await self.on_loop_error(err)
        finally:
            await self.on_loop_end()

    async def on_loop_start(self) -> None:
        """Before the first message (start reading the channel layer here)."""

    async def on_loop_error(self, err: Exception) -> None:
        """A handler raised; Channels would let it propagate, and so does the default."""
        raise err

    async def on_loop_end(self) -> None:
        """After the last message, however the loop ended."""
