"""The media consumer's disconnect leaves the database thread alone.

Channels' ``AsyncWebsocketConsumer.websocket_disconnect`` ends with ``aclose_old_connections()``,
a hop to asgiref's thread-sensitive thread: the database thread (``voiceagents.dbthread``),
where ``close_old_connections`` closed the connection that thread keeps, once per call.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading

import channels
import pytest
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from telephony.carriers.twilio.media import TwilioMediaConsumer
from voiceagents import dbthread

#: sha256 of ``inspect.getsource(AsyncWebsocketConsumer.websocket_disconnect)`` in the Channels
#: release whose method ``MediaStreamConsumer.websocket_disconnect`` copies (less the hop).
AUDITED = {"4.3": "10f38aa55fd51ff5e66e84eec77773a996e279de59190aef99322e27d354f078"}


def test_channels_websocket_disconnect_is_the_one_copied():
    source = inspect.getsource(AsyncWebsocketConsumer.websocket_disconnect)
    release = ".".join(channels.__version__.split(".")[:2])
    assert hashlib.sha256(source.encode()).hexdigest() == AUDITED.get(release), (
        f"Channels {channels.__version__}: check MediaStreamConsumer.websocket_disconnect "
        "(telephony/media.py) against AsyncWebsocketConsumer.websocket_disconnect, then AUDITED"
    )


async def test_disconnect_ends_the_consumer_without_waiting_for_the_database_thread():
    consumer = TwilioMediaConsumer()
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        return release.wait(30)

    busy = asyncio.ensure_future(dbthread.run(hold))
    try:
        while not started.is_set():  # a job holds the database thread
            await asyncio.sleep(0.01)
        # Channels' own disconnect would queue a hop behind that job and wait for it.
        with pytest.raises(StopConsumer):
            await asyncio.wait_for(
                consumer.websocket_disconnect({"type": "websocket.disconnect", "code": 1000}), 10
            )
        assert not busy.done()
    finally:
        release.set()
        assert await busy is True
