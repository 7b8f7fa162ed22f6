"""``/healthz/`` on channels-redis while a live call's consumer is waiting on the layer.

channels-redis serves every process-local channel of a process through one shared blocking read
on a single Redis key, taken by whichever ``receive()`` holds its lock; that key is derived from
the channel name's prefix. A probe channel with a prefix of its own ("healthz.") was never read
by the consumer holding the lock, so the probe waited for the lock (up to channels-redis' 5 s
blocking read) and ``/healthz/`` answered 503 whenever a call was live.
"""

import asyncio
import time

import pytest
from channels.layers import get_channel_layer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def test_healthz_answers_at_once_while_a_consumer_waits_on_the_layer(redis_url, async_client):
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    consumer_channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(consumer_channel))
    await asyncio.sleep(0.3)  # the consumer now holds the layer's receive lock, in Redis
    try:
        for _ in range(3):
            started = time.monotonic()
            response = await async_client.get("/healthz/")
            elapsed = time.monotonic() - started
            assert response.status_code == 200, response.json()
            assert response.json()["channel_layer"] == "ok"
            # Not a latency bar (HEALTH_CHECK_TIMEOUT would have made it a 503 by 2 s): well
            # short of the 5 s blocking read the probe used to queue behind.
            assert elapsed < 4.0
        await layer.send(consumer_channel, {"type": "call.hangup", "reason": "test"})
        message = await asyncio.wait_for(waiting, 5)
        assert message == {"type": "call.hangup", "reason": "test"}
    finally:
        waiting.cancel()
