"""Live calls on the live monitor: a running call's start, transcript lines and end reach a staff
member's monitor socket; a channel layer that fails or hangs costs the monitor, never the call.
Each runs for every carrier (``tests/calls/harness.py``) against the fake OpenAI Realtime."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.cache import cache

from voiceagents.call import monitor
from voiceagents.models import CallStatus, TranscriptEntry

from ..voiceagents.live_monitor import events_until, monitor_socket, next_event, session_cookie
from .flaky_layer import FLAKY
from .harness import ended_call
from .test_malformed_frames import live

pytestmark = pytest.mark.django_db(transaction=True)

SAID = "I'd like to move my appointment."


@pytest.fixture
def staff_cookie(django_user_model):
    cache.clear()
    user = django_user_model.objects.create_superuser("watcher", "w@example.com", "pw")
    yield session_cookie(user)
    cache.clear()


async def caller_says(fake_openai, text: str) -> None:
    item = await fake_openai.speech_started()
    await fake_openai.speech_stopped(item, audio_end_ms=900)
    await fake_openai.caller_transcript(item, text)


async def test_a_running_call_publishes_its_start_lines_and_end_to_the_monitor(
    harness, streams, fake_openai, staff_cookie
):
    monitor = monitor_socket(staff_cookie)
    assert (await monitor.connect(timeout=5))[0]
    assert (await next_event(monitor))["type"] == "ready"

    incoming, caller, _ = await live(harness, streams, fake_openai)
    started = await next_event(monitor)
    assert started == {
        "type": "started",
        "call_id": incoming.call_id,
        "carrier": harness.carrier,
        "provider": "openai_realtime",
    }
    await caller_says(fake_openai, SAID)
    (line,) = [
        e
        for e in await events_until(monitor, lambda e: e.get("text") == SAID)
        if e["type"] == "line"
    ][-1:]
    assert line["call_id"] == incoming.call_id
    assert (line["role"], line["interrupted"]) == ("caller", False)
    assert isinstance(line["seq"], int) and line["offset_ms"] is not None

    await caller.stop()
    rest = await events_until(monitor, lambda e: e["type"] == "ended")
    call = await ended_call(incoming.call_id)
    assert rest[-1] == {
        "type": "ended",
        "call_id": incoming.call_id,
        "status": CallStatus.COMPLETED,
        "end_reason": call.end_reason,  # the carrier's: caller_hangup, stream_stopped
    }
    assert call.end_reason
    # Each turn once: the caller's line was not published again at the final write.
    assert not any(e.get("text") == SAID for e in rest)
    await monitor.disconnect()


async def test_a_failing_channel_layer_loses_the_monitor_not_the_call(
    harness, streams, fake_openai, settings, caplog
):
    settings.CHANNEL_LAYERS = FLAKY
    layer = get_channel_layer()
    with caplog.at_level(logging.INFO, logger="voiceagents.call"):
        incoming, caller, _ = await live(harness, streams, fake_openai)
        layer.go_down()
        await caller_says(fake_openai, SAID)
        await fake_openai.wait_for(lambda: layer.failed_calls > 0)
        await caller_says(fake_openai, "And one more thing.")
        await asyncio.sleep(0.6)  # the writer's ticks publish (and fail) meanwhile
        await caller.stop()
        call = await ended_call(incoming.call_id)
        # The monitor's report comes after the row (its last events had their chance to leave).
        await asyncio.wait_for(caller.closed.wait(), 10)

    assert call.status == CallStatus.COMPLETED
    assert call.end_reason in ("caller_hangup", "stream_stopped")  # Twilio, Telnyx
    texts = [e.text async for e in TranscriptEntry.objects.filter(call_id=call.pk)]
    assert SAID in texts and "And one more thing." in texts
    unavailable = [r for r in caplog.records if "live monitor unavailable" in r.getMessage()]
    assert len(unavailable) == 1, "one warning per call, the other failures counted"
    assert any("live-monitor event(s) were not published" in r.getMessage() for r in caplog.records)


class SilentLayer(InMemoryChannelLayer):
    """A layer that never answers a group_send, like a Redis that stopped responding."""

    async def group_send(self, group, message):
        await asyncio.Event().wait()


async def test_a_channel_layer_that_never_answers_does_not_hold_up_the_call(
    harness, streams, fake_openai, settings, monkeypatch
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.SilentLayer"}}
    # No send gives up on its own: only the end's grace period lets the call finish.
    monkeypatch.setattr(monitor, "SEND_TIMEOUT_S", 3600.0)
    incoming, caller, _ = await live(harness, streams, fake_openai)
    await caller_says(fake_openai, SAID)
    written = TranscriptEntry.objects.filter(call_id=incoming.call_id, text=SAID)
    for _ in range(100):  # written by the next tick, which also tried to publish it
        if await written.aexists():
            break
        await asyncio.sleep(0.05)
    assert await written.aexists()
    await caller.stop()
    await asyncio.wait_for(caller.closed.wait(), 10)  # the stream is closed once the call ended
    call = await ended_call(incoming.call_id)
    assert call.ended_at is not None and call.status == CallStatus.COMPLETED


async def test_the_lines_carry_the_calls_quality_figures_so_far(
    harness, streams, fake_openai, staff_cookie
):
    from tests.fakes.openai_realtime import ScriptedResponse

    # A greeting long enough to be cut off (seconds in any output format).
    fake_openai.responses.append(ScriptedResponse(b"\x7f" * 48_000, "A long greeting."))
    monitor = monitor_socket(staff_cookie)
    assert (await monitor.connect(timeout=5))[0]
    assert (await next_event(monitor))["type"] == "ready"
    incoming, caller, _ = await live(harness, streams, fake_openai)
    await asyncio.sleep(0.3)
    await caller_says(fake_openai, SAID)  # cuts the greeting off
    lines = [
        e
        for e in await events_until(monitor, lambda e: e.get("text") == SAID)
        if e["type"] == "line"
    ]
    assert lines[-1]["figures"] == {
        "barge_ins": 1,
        "false_interruptions": 0,
        "replies": 0,
        "response_latency_ms_p50": None,
    }
    await fake_openai.respond(ScriptedResponse(b"\x7f" * 800, "Sure."))
    (reply,) = [
        e
        for e in await events_until(monitor, lambda e: e.get("text") == "Sure.")
        if e["type"] == "line"
    ]
    figures = reply["figures"]
    assert (figures["barge_ins"], figures["replies"]) == (1, 1)
    assert figures["response_latency_ms_p50"] > 0

    await caller.stop()
    call = await ended_call(incoming.call_id)
    # The monitor's figures are the call's own, as stored at its end.
    assert call.metrics["response_latency_ms_p50"] == figures["response_latency_ms_p50"]
    await monitor.disconnect()
