"""The media-consumer contract every carrier's media stream passes (docs/media-streams.md).

A carrier's test module star-imports these tests and provides a ``media_harness`` fixture: a
``tests.calls.harness.CarrierHarness`` (how the carrier's calls come to exist, its handshake, its
fake caller, and the provider behind the call). The harness knows the carrier; these tests know
what holds for every carrier: the handshake and ``start`` are authenticated with the documented
close codes before any provider connection, a stream without ``start`` is closed, malformed frames
are counted and ignored, caller audio reaches the provider, agent audio comes back with marks
that the carrier's echoes acknowledge, DTMF reaches the timeline, ``stop`` ends the call.

A carrier is its codec, its consumer subclass and a fake caller; a carrier defined in test code
only instantiates this suite the same way (its harness's ``application`` routes its consumer).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from telephony import closecodes
from tests.calls.harness import ended_call
from voiceagents.models import Call, CallEvent, CallStatus

pytestmark = pytest.mark.django_db(transaction=True)


async def wait_until(predicate, timeout: float = 5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def ended(call_id) -> Call:
    call = await ended_call(call_id)
    assert call.ended_at is not None, "the call never ended"
    return call


async def streaming(harness, media_streams, **override):
    """A started call whose caller audio reaches the provider."""
    incoming, caller, transport = await media_streams.call(harness, **override)
    before = harness.provider_audio()
    await caller.media(b"\x01" * harness.frame_bytes)
    await wait_until(lambda: harness.provider_audio() > before)
    return incoming, caller, transport


# -- authentication and start ---------------------------------------------------------------


async def test_an_unauthenticated_handshake_is_refused(media_harness, media_streams):
    incoming = await media_harness.new_call()
    accepted, _ = await media_streams.open(media_harness, incoming, authenticated=False)
    assert not accepted
    assert media_harness.provider_connections() == 0


async def test_a_forged_stream_token_is_refused_before_the_provider(media_harness, media_streams):
    incoming = await media_harness.new_call()
    forged = incoming.token[:-2] + ("AA" if not incoming.token.endswith("AA") else "BB")
    _, _, transport = await media_streams.call(media_harness, incoming, token=forged)
    assert await transport.wait_closed() == closecodes.FORBIDDEN
    assert media_harness.provider_connections() == 0


@pytest.mark.parametrize("field", ["call_id", "carrier_call_id"])
async def test_a_start_without_its_ids_is_a_bad_start(media_harness, media_streams, field):
    incoming = await media_harness.new_call()
    _, _, transport = await media_streams.call(media_harness, incoming, **{field: ""})
    assert await transport.wait_closed() == closecodes.BAD_START
    assert media_harness.provider_connections() == 0


async def test_a_start_for_another_carrier_call_is_forbidden(media_harness, media_streams):
    incoming = await media_harness.new_call()
    other = incoming.carrier_call_id[:-4] + "ffff"
    _, _, transport = await media_streams.call(media_harness, incoming, carrier_call_id=other)
    assert await transport.wait_closed() == closecodes.FORBIDDEN
    assert media_harness.provider_connections() == 0


async def test_a_stream_without_start_is_closed(media_harness, media_streams, voiceagents_settings):
    voiceagents_settings["STREAM_START_TIMEOUT"] = 0.2
    incoming = await media_harness.new_call()
    accepted, transport = await media_streams.open(media_harness, incoming)
    assert accepted
    assert await transport.receive(timeout=5) is None
    assert transport.close_code == closecodes.START_TIMEOUT


async def test_a_replayed_start_is_refused(media_harness, media_streams):
    incoming, first, _ = await streaming(media_harness, media_streams)
    _, _, transport = await media_streams.call(media_harness, incoming)
    assert await transport.wait_closed() == closecodes.FORBIDDEN
    assert not first.closed.is_set()
    await first.stop()


# -- frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1, 2]", '{"event": ["media"]}', '{"event": "teleport"}', "b" * 70_000],
    ids=["not-json", "array", "event-list", "unknown-event", "oversized"],
)
async def test_malformed_frames_are_counted_and_ignored(media_harness, media_streams, frame):
    incoming, caller, transport = await streaming(media_harness, media_streams)
    await transport.send(frame)
    before = media_harness.provider_audio()
    await caller.media(b"\x02" * media_harness.frame_bytes)
    await wait_until(lambda: media_harness.provider_audio() > before)
    await caller.stop()
    call = await ended(incoming.call_id)
    assert call.metrics["malformed_frames"] == 1


async def test_a_second_start_is_ignored_and_counted(media_harness, media_streams):
    incoming, caller, transport = await streaming(media_harness, media_streams)
    await transport.send(json.dumps({"event": "start", "start": {}}))
    await caller.stop()
    call = await ended(incoming.call_id)
    assert call.status == CallStatus.COMPLETED
    assert call.metrics["malformed_frames"] == 1


async def test_agent_audio_comes_back_with_marks_the_echoes_acknowledge(
    media_harness, media_streams
):
    incoming, caller, _ = await streaming(media_harness, media_streams)
    heard = len(caller.media_in)
    await media_harness.agent_speaks()
    await wait_until(lambda: len(caller.media_in) > heard)
    await asyncio.sleep(0.3)  # the fake caller plays it and echoes the marks
    await caller.stop()
    call = await ended(incoming.call_id)
    assert call.metrics["frames_out"] >= 1
    assert call.metrics["marks_acked"] >= 1


async def test_dtmf_reaches_the_timeline(media_harness, media_streams):
    incoming, caller, _ = await streaming(media_harness, media_streams)
    await caller.dtmf("7")
    await caller.stop()
    await ended(incoming.call_id)
    assert await CallEvent.objects.filter(
        call_id=incoming.call_id, kind="dtmf", data__digit="7"
    ).aexists()


async def test_stop_ends_the_call_and_closes_the_stream(media_harness, media_streams):
    incoming, caller, transport = await streaming(media_harness, media_streams)
    await caller.stop()
    assert await transport.wait_closed() == closecodes.NORMAL
    call = await ended(incoming.call_id)
    assert call.status == CallStatus.COMPLETED
