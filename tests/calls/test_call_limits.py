"""Abuse limits at the media stream (``telephony.limits``), in process: a call over
``MAX_CALLS_PER_PROCESS`` is refused at its ``start`` with ``AT_CAPACITY`` and fails with its
reason; connections over ``MEDIA_CONNECTIONS_PER_IP`` are refused before the WebSocket is accepted;
every slot is given back when its stream ends. The same through real servers:
tests/servers/test_abuse_limits.py.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from telephony import closecodes, limits
from tests.calls.harness import ended_call
from tests.fakes.twilio_stream import sid
from voiceagents.call import streamtokens
from voiceagents.models import Call, CallStatus

pytestmark = pytest.mark.django_db(transaction=True)


def _another_call(setup) -> tuple[Call, dict[str, str]]:
    call = Call.objects.create(
        agent=setup.agent,
        phone_number=setup.call.phone_number,
        carrier="twilio",
        carrier_call_id=sid("CA"),
        direction="inbound",
        from_number="+14155550111",
        to_number=setup.call.to_number,
        status=CallStatus.RINGING,
    )
    return call, {"call_id": str(call.pk), "stream_token": streamtokens.mint(call.pk)}


async def test_a_call_over_the_process_limit_is_refused_at_start_and_fails(
    create_call, connect_caller, fake_openai, voiceagents_settings
):
    voiceagents_settings["MAX_CALLS_PER_PROCESS"] = 1
    setup = await create_call()
    _, first = await connect_caller()
    await first.connected()
    await first.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await fake_openai.wait_for(lambda: fake_openai.sessions)
    assert limits.live_calls() == 1

    second_call, parameters = await sync_to_async(_another_call)(setup)
    _, second = await connect_caller()
    await second.connected()
    await second.start(parameters, call_sid=second_call.carrier_call_id)

    assert await second.wait_closed() == closecodes.AT_CAPACITY
    refused = await ended_call(second_call.pk)
    assert (refused.status, refused.end_reason) == (CallStatus.FAILED, limits.AT_CAPACITY)
    assert len(fake_openai.sessions) == 1  # no provider socket for the refused call
    assert limits.live_calls() == 1

    await first.stop()
    await first.wait_closed()
    await ended_call(setup.call.pk)
    assert limits.live_calls() == 0


async def test_connections_over_the_per_ip_limit_are_refused_before_accept(
    create_call, connect_caller, voiceagents_settings
):
    voiceagents_settings["MEDIA_CONNECTIONS_PER_IP"] = 2
    await create_call()  # the Twilio credential that verifies the handshakes
    opened = [await connect_caller() for _ in range(2)]
    assert [connected for connected, _ in opened] == [True, True]

    refused, _ = await connect_caller()
    assert refused is False

    await opened[0][1].communicator.disconnect()
    again, _ = await connect_caller()
    assert again is True
