"""``telephony.carriers.twilio.rest``: live-call updates against the fake Twilio REST API."""

from __future__ import annotations

import base64

import pytest

from telephony.carriers.twilio.rest import TwilioAccount, update_call
from tests.fakes.twilio_api import FakeTwilioAPI
from voiceagents.exceptions import CarrierAPIError

SID = "AC" + "1" * 32
TOKEN = "f" * 32
CALL = "CA" + "2" * 32


@pytest.fixture
def api():
    with FakeTwilioAPI(account_sid=SID, auth_token=TOKEN) as fake:
        yield fake


def account(api, token=TOKEN):
    return TwilioAccount(SID, token, api.url, timeout=5.0)


async def test_an_update_is_a_basic_auth_form_post_to_the_call(api):
    answer = await update_call(account(api), CALL, {"Twiml": "<Response><Hangup/></Response>"})
    assert answer["sid"] == CALL and answer["status"] == "in-progress"
    assert api.updates_of(CALL) == [{"Twiml": ["<Response><Hangup/></Response>"]}]
    path, authorization = api.requests[-1]
    assert path == f"/2010-04-01/Accounts/{SID}/Calls/{CALL}.json"
    assert authorization == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()


async def test_a_refusal_carries_twilios_message_and_status(api):
    api.fail_update(400, 21220, "Call is not in-progress. Cannot redirect.")
    with pytest.raises(CarrierAPIError) as refused:
        await update_call(account(api), CALL, {"Twiml": "<Response/>"})
    assert refused.value.status_code == 400
    assert "Call is not in-progress. Cannot redirect. (Twilio error 21220)" in refused.value.args[0]


async def test_an_ended_call_is_a_404(api):
    api.live_calls = set()
    with pytest.raises(CarrierAPIError) as refused:
        await update_call(account(api), CALL, {"Twiml": "<Response/>"})
    assert refused.value.status_code == 404 and "20404" in refused.value.args[0]


async def test_a_wrong_token_is_refused_and_never_in_the_message(api):
    with pytest.raises(CarrierAPIError) as refused:
        await update_call(account(api, token="e" * 32), CALL, {"Twiml": "<Response/>"})
    assert refused.value.status_code == 401
    assert "e" * 32 not in str(refused.value)


async def test_no_answer_is_a_transport_failure():
    unreachable = TwilioAccount(SID, TOKEN, "http://127.0.0.1:9", timeout=2.0)
    with pytest.raises(CarrierAPIError) as failed:
        await update_call(unreachable, CALL, {"Twiml": "<Response/>"})
    assert failed.value.status_code is None
