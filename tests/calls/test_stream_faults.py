"""Faults around a live call: the channel layer failing, odd control messages, every way a call
can end. Each runs for every carrier (``tests/calls/harness.py``)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.layers import get_channel_layer
from websockets.protocol import State

from telephony import closecodes
from voiceagents.call.control import asend_call_command, call_group
from voiceagents.models import CallStatus

from .flaky_layer import FLAKY, LayerDown
from .harness import ended_call
from .test_malformed_frames import live, streams_both_ways

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _a_provider_drop_ends_the_call(voiceagents_settings):
    """Exits, not reconnects, are tested here (test_provider_reconnects.py has those)."""
    voiceagents_settings["PROVIDER_MAX_FAILURES"] = 1


@pytest.fixture
def flaky_layer(settings):
    settings.CHANNEL_LAYERS = FLAKY
    return get_channel_layer()


async def hang_up_through_control(call_id, caller, timeout: float = 10.0) -> None:
    """Send ``hangup`` until the call ends: commands sent while the group is not joined are lost."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not caller.closed.is_set():
        assert loop.time() < deadline, "the hang-up never reached the call"
        try:
            await asend_call_command(call_id, "hangup", reason="operator_hangup")
        except LayerDown:
            pass
        try:
            await asyncio.wait_for(caller.closed.wait(), 0.3)
        except TimeoutError:
            pass


async def test_a_channel_layer_outage_does_not_end_the_call(
    harness, streams, fake_openai, flaky_layer, caplog
):
    incoming, caller, _ = await live(harness, streams, fake_openai)
    flaky_layer.go_down()
    await asyncio.sleep(0.5)  # the listener fails, backs off, fails again
    await streams_both_ways(harness, caller, fake_openai)
    assert flaky_layer.failed_calls >= 1
    assert "control plane unavailable" in caplog.text
    flaky_layer.come_back()  # with its groups forgotten, as a restarted Redis
    await streams_both_ways(harness, caller, fake_openai)
    await hang_up_through_control(incoming.call_id, caller)
    call = await ended_call(incoming.call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "operator_hangup")


async def test_a_failed_group_add_at_start_degrades_control_only(
    harness, streams, fake_openai, flaky_layer, caplog
):
    flaky_layer.refuse_group_add = True
    with caplog.at_level(logging.WARNING, logger="telephony"):
        incoming, caller, _ = await live(harness, streams, fake_openai)
    assert any(
        r.levelno == logging.WARNING and "control plane unavailable" in r.getMessage()
        for r in caplog.records
    )
    await streams_both_ways(harness, caller, fake_openai)
    flaky_layer.refuse_group_add = False  # the listener joins on its next try
    await hang_up_through_control(incoming.call_id, caller)
    call = await ended_call(incoming.call_id)
    assert call.end_reason == "operator_hangup"


async def test_a_control_message_nobody_handles_does_not_end_the_call(
    harness, streams, fake_openai
):
    incoming, caller, _ = await live(harness, streams, fake_openai)
    group = call_group(incoming.call_id)
    await get_channel_layer().group_send(group, {"type": "call.teleport", "group": group})
    # One that names no call (a sender older than the process's one reader) is dropped there.
    await get_channel_layer().group_send(group, {"type": "call.hangup"})
    await asyncio.sleep(0.1)
    await streams_both_ways(harness, caller, fake_openai)
    await caller.stop()
    await caller.closed.wait()
    assert (await ended_call(incoming.call_id)).status == CallStatus.COMPLETED


async def _stop(caller, transport, fake_openai, incoming):
    await caller.stop()


async def _socket_closed(caller, transport, fake_openai, incoming):
    await transport.communicator.send_input({"type": "websocket.disconnect", "code": 1006})


async def _provider_failed(caller, transport, fake_openai, incoming):
    await fake_openai.drop(1011, "internal error")


async def _control_hangup(caller, transport, fake_openai, incoming):
    await asend_call_command(incoming.call_id, "hangup", reason="operator_hangup")


async def _broken_asgi_message(caller, transport, fake_openai, incoming):
    # An ASGI message no handler takes: Channels' dispatch raises on it, which is the consumer's
    # "unexpected exception" exit.
    await transport.communicator.send_input({"type": "websocket.unheard_of"})


EXITS = {
    "stop": (_stop, CallStatus.COMPLETED),
    "socket-closed": (_socket_closed, CallStatus.COMPLETED),
    "provider-failed": (_provider_failed, CallStatus.FAILED),
    "control-hangup": (_control_hangup, CallStatus.COMPLETED),
    "exception": (_broken_asgi_message, CallStatus.COMPLETED),
}


@pytest.mark.parametrize("exit_path", list(EXITS))
async def test_every_exit_runs_the_same_ending(harness, streams, fake_openai, exit_path):
    end, status = EXITS[exit_path]
    incoming, caller, transport = await live(harness, streams, fake_openai)
    await end(caller, transport, fake_openai, incoming)
    call = await ended_call(incoming.call_id)
    assert call.ended_at is not None and call.status == status, (call.status, call.end_reason)
    await fake_openai.wait_for(lambda: fake_openai.session.connection.state is State.CLOSED)
    assert call.recording, "the recording was not saved"
    assert call.metrics.get("duration_ms") is not None


async def test_an_unexpected_exception_closes_the_stream_as_a_server_error(
    harness, streams, fake_openai
):
    incoming, caller, transport = await live(harness, streams, fake_openai)
    await _broken_asgi_message(caller, transport, fake_openai, incoming)
    assert await transport.wait_closed() == closecodes.SERVER_ERROR
    assert (await ended_call(incoming.call_id)).end_reason == "internal_error"


async def test_malformed_frames_are_counted_when_the_call_ends_on_its_own(
    harness, streams, fake_openai
):
    incoming, caller, transport = await live(harness, streams, fake_openai)
    await transport.send('{"event": ["media"]}')
    await streams_both_ways(harness, caller, fake_openai)  # the frame was read before this
    await _provider_failed(caller, transport, fake_openai, incoming)
    call = await ended_call(incoming.call_id)
    assert call.end_reason == "provider_lost"
    assert call.metrics["malformed_frames"] == 1
