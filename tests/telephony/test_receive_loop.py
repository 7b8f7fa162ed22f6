"""``telephony.receiveloop.FastReceiveLoop`` against the installed Channels.

The loop re-implements ``AsyncConsumer.__call__`` without its per-message task. If a Channels
release changes that method, the source pin below fails: read the new version, bring the loop in
line (or drop it), then update ``AUDITED``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect

import channels
import pytest
from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer

from telephony.receiveloop import MIRRORED_CHANNELS, FastReceiveLoop

#: sha256 of ``inspect.getsource(AsyncConsumer.__call__)`` in the Channels release audited.
AUDITED = {"4.3": "e52238720872dbc3f854519bc971aa7eb41553e63c8729081549ce42465ee419"}


def test_channels_async_consumer_call_is_the_one_the_loop_mirrors():
    source = inspect.getsource(AsyncConsumer.__call__)
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert channels.__version__.startswith(MIRRORED_CHANNELS + "."), (
        f"Channels {channels.__version__}: check telephony/receiveloop.py against its "
        "AsyncConsumer.__call__, then update MIRRORED_CHANNELS and AUDITED"
    )
    assert digest == AUDITED[MIRRORED_CHANNELS], (
        "AsyncConsumer.__call__ changed: check telephony/receiveloop.py against it"
    )


#: What ``AsyncConsumer.__call__`` gives a consumer before its first handler runs.
ATTRIBUTES = ("scope", "channel_layer", "channel_name", "channel_receive", "base_send")


class Recorder(AsyncConsumer):
    """Records what it handled and the attributes it had while handling it."""

    def __init__(self):
        super().__init__()
        self.handled = []
        self.attributes = set()

    async def test_message(self, message):
        self.handled.append(message["n"])
        self.attributes |= {name for name in ATTRIBUTES if hasattr(self, name)}

    async def test_stop(self, message):
        raise StopConsumer


class FastRecorder(FastReceiveLoop, Recorder):
    pass


async def run(consumer_class) -> Recorder:
    queue: asyncio.Queue = asyncio.Queue()
    for n in range(3):
        queue.put_nowait({"type": "test.message", "n": n})
    queue.put_nowait({"type": "test.stop"})
    consumer = consumer_class()
    sent = []

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(consumer({"type": "websocket"}, queue.get, send), 5)
    return consumer


# Channels' dispatch closes old database connections before each handler: allow it.
@pytest.mark.django_db
async def test_the_loop_keeps_channels_semantics():
    ours, theirs = await run(FastRecorder), await run(Recorder)
    assert ours.handled == theirs.handled == [0, 1, 2]  # in order, StopConsumer ends it
    assert ours.attributes == theirs.attributes
    assert ours.attributes >= {"scope", "channel_layer", "channel_name", "base_send"}
    assert ours.scope == theirs.scope == {"type": "websocket"}


@pytest.mark.django_db
async def test_an_exception_in_a_handler_propagates_as_in_channels():
    class Failing(Recorder):
        async def test_message(self, message):
            raise RuntimeError("boom")

    class FastFailing(FastReceiveLoop, Failing):
        pass

    for consumer_class in (Failing, FastFailing):
        with pytest.raises(RuntimeError, match="boom"):
            await run(consumer_class)
