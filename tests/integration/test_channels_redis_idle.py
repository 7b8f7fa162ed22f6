"""A live call's consumer waits on the channel layer for minutes: an idle receive must not time out.

redis-py's default socket timeout (5 s) equals channels-redis' blocking-read time, so with the
default configuration every idle consumer died after about 5 s. patter_site.settings disables
the socket timeout; this proves a receive that waits 7 s still gets its message.
"""

import asyncio

import pytest
from channels.layers import get_channel_layer

pytestmark = pytest.mark.integration


async def test_an_idle_channel_layer_receive_survives_longer_than_five_seconds(redis_url):
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    channel = await layer.new_channel()

    async def send_later():
        await asyncio.sleep(7)
        await layer.send(channel, {"type": "call.hangup", "reason": "late"})

    sender = asyncio.ensure_future(send_later())
    try:
        message = await asyncio.wait_for(layer.receive(channel), 15)
    finally:
        await sender
    assert message == {"type": "call.hangup", "reason": "late"}
