"""After a Twilio call, its record at Twilio (fake REST API) corrects ours and prices its leg."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes.twilio_api import FakeTwilioAPI
from tests.voiceagents.factories import make_call, make_credential, make_phone_number
from voiceagents import tasks
from voiceagents.carrier_records import reconcile_with_carrier
from voiceagents.models import CallStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def twilio():
    with FakeTwilioAPI() as api:
        yield api


def twilio_call(api, **fields):
    credential = make_credential(
        "twilio", secret=api.auth_token, api_base_url=api.url, data={"account_sid": api.account_sid}
    )
    number = make_phone_number("twilio", credential=credential)
    fields.setdefault("duration", timedelta(seconds=61))
    return make_call(phone_number=number, **fields)


def carrier_item(call) -> dict:
    (item,) = [i for i in call.cost["items"] if i["what"] == "carrier"]
    return item


def test_twilios_price_replaces_the_estimate(twilio):
    call = twilio_call(twilio)
    twilio.call_records[call.carrier_call_id] = {
        "status": "completed",
        "duration": "61",
        "price": "-0.01700",
        "price_unit": "USD",
    }
    assert reconcile_with_carrier(call.pk) == "done"
    call.refresh_from_db()
    assert (carrier_item(call)["amount"], carrier_item(call)["source"]) == (0.017, "carrier")
    path, _ = twilio.requests[-1]
    assert path == f"/2010-04-01/Accounts/{twilio.account_sid}/Calls/{call.carrier_call_id}.json"


def test_a_call_not_rated_yet_is_asked_again_later(twilio):
    call = twilio_call(twilio)
    twilio.call_records[call.carrier_call_id] = {"status": "completed", "price": None}
    assert reconcile_with_carrier(call.pk) == "pending"
    call.refresh_from_db()
    assert call.cost == {}  # nothing changed: the estimate (made by finalize_call) stands
    # Eager Celery cannot wait: the task reports "pending" instead of retrying.
    assert tasks.reconcile_with_carrier.apply(args=[str(call.pk)]).get() == "pending"


def test_a_call_we_thought_live_is_closed_from_twilios_record(twilio):
    call = twilio_call(twilio, status=CallStatus.IN_PROGRESS, duration=None)
    twilio.call_records[call.carrier_call_id] = {
        "status": "no-answer",
        "duration": "0",
        "price": "0",
        "price_unit": "USD",
    }
    assert reconcile_with_carrier(call.pk) == "done"
    call.refresh_from_db()
    assert (call.status, call.end_reason) == (CallStatus.NO_ANSWER, "carrier_reconciled")
    assert call.ended_at is not None and call.duration == timedelta(0)


def test_twilio_errors_and_other_carriers(twilio):
    unknown = twilio_call(twilio)  # no record at the fake: 404
    assert reconcile_with_carrier(unknown.pk) == "refused"
    live = twilio_call(twilio)
    twilio.call_records[live.carrier_call_id] = {"status": "in-progress", "price": None}
    assert reconcile_with_carrier(live.pk) == "pending"
    telnyx = make_call(carrier="telnyx", carrier_call_id="v3:abc")
    assert reconcile_with_carrier(telnyx.pk) == "not_supported"
    bad_key = twilio_call(twilio)
    bad_key.phone_number.credential.secret = "wrong-token"
    bad_key.phone_number.credential.save()
    assert reconcile_with_carrier(bad_key.pk) == "refused"  # Twilio's 401
