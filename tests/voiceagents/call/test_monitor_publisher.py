"""``MonitorPublisher``: one message per new or changed line, in order, and a bounded backlog."""

from __future__ import annotations

import asyncio
import logging

from channels.layers import InMemoryChannelLayer

from voiceagents.call import monitor
from voiceagents.call.monitor import MONITOR_GROUP, MonitorPublisher
from voiceagents.call.transcripts import Turn


async def listener(layer):
    channel = await layer.new_channel()
    await layer.group_add(MONITOR_GROUP, channel)
    return channel


async def drain(layer, channel) -> list[dict]:
    events = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), 0.2)
        except TimeoutError:
            return events
        events.extend(message["events"])


async def test_each_line_is_published_once_and_again_only_when_it_changes():
    layer = InMemoryChannelLayer()
    channel = await listener(layer)
    publisher = MonitorPublisher("call-1", layer=layer)
    said = Turn(seq=0, role="caller", turn_id="t0", text="Hello?", start_ms=1200)
    reply = Turn(seq=1, role="agent", turn_id="t1", text="Hi, this is Acme.")
    silent = Turn(seq=2, role="caller", turn_id="t2")  # no text yet: nothing to show

    publisher.started(carrier="twilio", provider="openai_realtime")
    publisher.lines([said, reply, silent])
    publisher.lines([said, reply])  # a retried write: nothing new
    reply.text, reply.interrupted = "Hi, this", True  # what was heard before a barge-in
    publisher.lines([reply])
    publisher.ended(status="completed", end_reason="caller_hangup")
    await publisher.close()

    events = await drain(layer, channel)
    assert [(e["type"], e.get("text")) for e in events] == [
        ("started", None),
        ("line", "Hello?"),
        ("line", "Hi, this is Acme."),
        ("line", "Hi, this"),
        ("ended", None),
    ]
    assert all(e["call_id"] == "call-1" for e in events)
    assert events[1] == {
        "type": "line",
        "call_id": "call-1",
        "seq": 0,
        "role": "caller",
        "text": "Hello?",
        "offset_ms": 1200,
        "interrupted": False,
    }
    assert events[3]["interrupted"] is True
    assert publisher.published == 5 and publisher.lost == 0


class StuckLayer(InMemoryChannelLayer):
    """A layer whose group_send waits until released, like a Redis that stopped answering."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.release = asyncio.Event()
        self.attempts = 0

    async def group_send(self, group, message):
        self.attempts += 1
        await self.release.wait()
        await super().group_send(group, message)


async def test_a_stuck_layer_keeps_only_the_newest_events_and_the_end_does_not_wait_for_it(
    monkeypatch, caplog
):
    monkeypatch.setattr(monitor, "SEND_TIMEOUT_S", 30.0)  # stuck for good, as far as the call knows
    layer = StuckLayer()
    publisher = MonitorPublisher("call-2", layer=layer)
    turns = [Turn(seq=n, role="caller", turn_id=f"t{n}", text=f"line {n}") for n in range(100)]
    publisher.lines(turns)
    assert len(publisher._queue) <= monitor.MAX_QUEUED  # noqa: SLF001 - the bound under test
    with caplog.at_level(logging.INFO):
        await asyncio.wait_for(publisher.close(), 5)  # gives up after CLOSE_GRACE_S
    assert publisher.published == 0
    assert publisher.lost == 100
    assert layer.attempts == 1
    assert "100 live-monitor event(s) were not published" in caplog.text


async def test_a_call_giving_up_on_a_stuck_layer_leaves_the_other_calls_their_chance(monkeypatch):
    monkeypatch.setattr(monitor, "SEND_TIMEOUT_S", 30.0)
    layer = StuckLayer()
    channel = await listener(layer)
    first = MonitorPublisher("call-5", layer=layer)
    first.lines([Turn(seq=0, role="caller", turn_id="t0", text="first")])
    await asyncio.sleep(monitor.BATCH_WINDOW_S * 3)
    assert layer.attempts == 1  # its send is under way, and stuck
    second = MonitorPublisher("call-6", layer=layer)
    second.lines([Turn(seq=0, role="caller", turn_id="t0", text="second")])
    await asyncio.wait_for(first.close(), 5)  # gives up after CLOSE_GRACE_S
    assert first.lost == 1
    layer.release.set()  # the layer answers again
    await asyncio.wait_for(second.close(), 5)
    assert (second.published, second.lost) == (1, 0)
    assert [e["text"] for e in await drain(layer, channel)] == ["second"]


async def test_a_failing_layer_is_reported_once_and_the_events_counted(caplog):
    class DownLayer(InMemoryChannelLayer):
        async def group_send(self, group, message):
            raise ConnectionError("Redis is down")

    publisher = MonitorPublisher("call-3", layer=DownLayer())
    with caplog.at_level(logging.INFO):
        for n in range(5):
            publisher.lines([Turn(seq=n, role="agent", turn_id=f"t{n}", text="hi")])
            await asyncio.sleep(0)
        await publisher.close()
    assert caplog.text.count("live monitor unavailable") == 1
    assert publisher.lost == 5


class CountingLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sends = 0

    async def group_send(self, group, message):
        self.sends += 1
        await super().group_send(group, message)


async def test_the_calls_of_a_process_share_one_send_per_window():
    """With channels-redis every send costs two Redis commands, monitor open or not."""
    layer = CountingLayer()
    channel = await listener(layer)
    publishers = [MonitorPublisher(f"call-{n}", layer=layer) for n in range(5)]
    for publisher in publishers:
        publisher.started(carrier="twilio", provider="openai_realtime")
        publisher.lines([Turn(seq=0, role="agent", turn_id="t0", text="Hello!")])
        publisher.ended(status="completed", end_reason="caller_hangup")
    for publisher in publishers:
        await publisher.close()
    assert layer.sends == 1
    events = await drain(layer, channel)
    assert len(events) == 15
    for publisher in publishers:  # in order within each call
        mine = [e["type"] for e in events if e["call_id"] == publisher.call_id]
        assert mine == ["started", "line", "ended"]
        assert publisher.published == 3 and publisher.lost == 0


async def test_a_full_window_is_split_at_the_batch_limit(monkeypatch):
    monkeypatch.setattr(monitor, "MAX_BATCH", 4)
    layer = CountingLayer()
    channel = await listener(layer)
    publisher = MonitorPublisher("call-4", layer=layer)
    publisher.lines([Turn(seq=n, role="caller", turn_id=f"t{n}", text=f"{n}") for n in range(10)])
    await publisher.close()
    assert layer.sends == 3
    assert [e["text"] for e in await drain(layer, channel)] == [str(n) for n in range(10)]
