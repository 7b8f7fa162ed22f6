"""The process's one reader of control messages (``telephony.controlplane.ControlHub``)."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from channels.layers import get_channel_layer

from telephony.controlplane import ControlListener
from tests.calls.flaky_layer import FLAKY
from voiceagents.call.control import asend_call_command, call_group


@pytest.fixture
def flaky_layer(settings):
    settings.CHANNEL_LAYERS = FLAKY
    return get_channel_layer()


class Call:
    """What a media consumer gives its listener: a dispatch that records, a lock, a label."""

    def __init__(self, layer):
        self.id = uuid.uuid4()
        self.got: asyncio.Queue = asyncio.Queue()
        self.listener = ControlListener(layer, self.got.put, asyncio.Lock(), lambda: str(self.id))

    async def join(self) -> None:
        assert await self.listener.join(call_group(self.id))

    async def end(self) -> None:
        await self.listener.stop()
        await self.listener.leave()

    async def next(self) -> dict:
        return await asyncio.wait_for(self.got.get(), 5)


async def test_calls_share_one_receive_and_each_gets_its_own_commands(flaky_layer):
    calls = [Call(flaky_layer) for _ in range(3)]
    for call in calls:
        await call.join()
    for call in reversed(calls):
        await asend_call_command(call.id, "say", text=f"to {call.id}")
    for call in calls:
        assert (await call.next())["text"] == f"to {call.id}"
        assert call.got.empty()
    # A reader per call would hold three receives here.
    assert flaky_layer.max_receiving == 1

    # A call's end leaves the group and does not cancel the shared receive (with channels-redis
    # that would drop a Redis connection per call).
    await calls[0].end()
    assert flaky_layer.cancelled_receives == 0
    await asend_call_command(calls[0].id, "hangup")  # nobody here holds it any more
    await asend_call_command(calls[1].id, "hangup", reason="operator_hangup")
    assert (await calls[1].next())["reason"] == "operator_hangup"
    assert calls[0].got.empty()

    # The last call out stops the reader: an idle process holds no pending receive.
    await calls[1].end()
    await calls[2].end()
    await asyncio.sleep(0)
    assert flaky_layer.receiving == 0


async def test_a_message_naming_no_call_is_dropped_and_logged(flaky_layer, caplog):
    call = Call(flaky_layer)
    await call.join()
    with caplog.at_level(logging.INFO, logger="telephony.controlplane"):
        await flaky_layer.group_send(call_group(call.id), {"type": "call.hangup"})
        await asend_call_command(call.id, "say", text="after it")
        assert (await call.next())["text"] == "after it"
    assert "no call here holds" in caplog.text
    await call.end()


async def test_a_slow_handler_holds_up_its_own_call_only(flaky_layer):
    slow, quick = Call(flaky_layer), Call(flaky_layer)
    release = asyncio.Event()

    async def held(message):
        await release.wait()
        await slow.got.put(message)

    slow.listener.dispatch = held
    await slow.join()
    await quick.join()
    await asend_call_command(slow.id, "transfer", number="+14155550123")
    await asend_call_command(quick.id, "hangup")
    assert (await quick.next())["type"] == "call.hangup"
    release.set()
    assert (await slow.next())["type"] == "call.transfer"
    await slow.end()
    await quick.end()


async def test_an_outage_degrades_every_call_and_they_rejoin(flaky_layer, caplog):
    calls = [Call(flaky_layer) for _ in range(2)]
    for call in calls:
        await call.join()
    flaky_layer.go_down()
    await asyncio.sleep(0.3)
    assert all(call.listener.degraded for call in calls)
    assert caplog.text.count("control plane unavailable") == 2
    flaky_layer.come_back()  # its groups forgotten, as a restarted Redis

    async def reaches(call) -> bool:
        await asend_call_command(call.id, "hangup")
        try:
            await asyncio.wait_for(call.got.get(), 0.3)
        except TimeoutError:
            return False
        return True

    for call in calls:
        for _ in range(40):
            if await reaches(call):
                break
        else:
            pytest.fail("the call never rejoined its group")
    assert not any(call.listener.degraded for call in calls)
    for call in calls:
        await call.end()
