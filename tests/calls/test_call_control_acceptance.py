"""Call control end to end, as an operator meets it: an admin places an outbound call from the
agent's page; a person answers (the fake Twilio, through a real uvicorn server); the agent tries to
transfer to a number it may not (refused, the model is told) and then to one it may (Twilio gets
the ``<Dial>``); after the call, finalize_call stores its cost and delivers the signed call
webhook, tried again when the receiver first fails. (The machine-answered half is in
test_outbound_calls.py.)"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import pytest
from asgiref.sync import sync_to_async

from tests.calls.harness import ended_call
from tests.calls.test_outbound_calls import (  # noqa: F401 - its fixtures too
    _agent,
    _answered,
    _place_from_admin,
    admin_client,
    public_server,
    twilio_api,
)
from tests.fakes.webhook_receiver import SECRET, Receiver, verify
from voiceagents.models import Call, CallEvent, CallEventKind, CallStatus

pytestmark = pytest.mark.django_db(transaction=True)

TARGET = "+14155550142"
FORBIDDEN = "+19005550000"


async def test_outbound_call_transfer_refused_then_done_then_cost_and_webhook(
    public_server,  # noqa: F811 - the imported fixtures
    admin_client,  # noqa: F811
    twilio_api,  # noqa: F811
    fake_openai,
    voiceagents_settings,
    eager_celery,
):
    agent, number = await sync_to_async(_agent)(
        fake_openai.url, twilio_api.url, transfer_allowlist=[TARGET]
    )
    twilio_api.answer_as = "human"
    with Receiver(503, 200) as receiver:
        voiceagents_settings.update(
            CALL_WEBHOOK_URL=receiver.url,
            CALL_WEBHOOK_SECRET=SECRET,
            CALL_WEBHOOK_ALLOW_PRIVATE=True,
        )
        response = await _place_from_admin(admin_client, agent, number)
        assert response.status_code == 302
        answered = await _answered(twilio_api)
        # Like Twilio: the update replaces the TwiML, so the stream gets ``stop``.
        twilio_api.on_update = lambda sid, form: answered.hang_up()
        await fake_openai.wait_for(lambda: fake_openai.events_of("response.create"), timeout=10)
        await fake_openai.wait_for(lambda: len(answered.caller.media_in) >= 1600, timeout=10)

        await fake_openai.function_call("transfer_call", {"number": FORBIDDEN}, "call_no")
        (refused,) = await fake_openai.wait_for(fake_openai.function_outputs, timeout=10)
        assert refused["call_id"] == "call_no"
        assert "Transfer refused" in json.loads(refused["output"])["error"]
        assert twilio_api.updates == []  # nothing asked of the carrier

        await fake_openai.function_call("transfer_call", {"number": TARGET}, "call_yes")
        await asyncio.to_thread(answered.wait, 30)
        call = await ended_call((await Call.objects.aget()).pk, timeout=15)
        assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "transferred")
        ((sid, form),) = twilio_api.updates
        assert sid == answered.call_sid
        dial = ET.fromstring(form["Twiml"][0]).find("Dial")
        assert dial.find("Number").text == TARGET

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while len(receiver.requests) < 2 and loop.time() < deadline:
            await asyncio.sleep(0.05)

    await call.arefresh_from_db()
    assert call.cost["total"] > 0
    assert {item["what"] for item in call.cost["items"]} >= {"carrier", "voice"}
    first, second = receiver.requests  # the first got a 503: tried again
    body = verify(second)
    assert body["call"]["id"] == str(call.pk)
    assert body["call"]["direction"] == "outbound" and body["call"]["end_reason"] == "transferred"
    assert body["call"]["cost"] == call.cost
    outcomes = [
        e.data["outcome"]
        async for e in CallEvent.objects.filter(call=call, kind=CallEventKind.WEBHOOK)
    ]
    assert outcomes == ["queued", "failed", "delivered"]
    transfers = [e.data async for e in CallEvent.objects.filter(call=call, kind="transfer")]
    assert [(t["number"], t["allowed"], t["done"]) for t in transfers] == [
        (FORBIDDEN, False, False),
        (TARGET, True, True),
    ]
