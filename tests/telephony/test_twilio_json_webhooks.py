"""Twilio webhooks with a JSON body (``bodySHA256`` in the signed URL): verified against the
stored credential that signed them. Signed with the twilio SDK's ``RequestValidator``."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.urls import reverse
from twilio.request_validator import RequestValidator

from tests.fakes import twilio as fake
from voiceagents.models import Call, CallStatus

STATUS = reverse("telephony:twilio_status")
OTHER_ACCOUNT = "AC" + "f" * 32

pytestmark = pytest.mark.django_db


def post_json(client, payload, token: str, *, body: bytes | None = None):
    body = json.dumps(payload).encode() if body is None else body
    path = f"{STATUS}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    url = fake.PUBLIC_URL + path
    validator = RequestValidator(token)
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body.decode(), signature)  # the SDK's own check agrees
    return client.post(
        path, data=body, content_type="application/json", headers={"X-Twilio-Signature": signature}
    )


@pytest.fixture
def ringing_call(twilio_number, make_twilio_credential):
    # A second account, so "try each token" has more than one to try.
    make_twilio_credential(fake.OTHER_AUTH_TOKEN, account_sid=OTHER_ACCOUNT)
    return Call.objects.create(
        agent=twilio_number.agent,
        phone_number=twilio_number,
        carrier="twilio",
        carrier_call_id=fake.new_sid("CA"),
        direction="inbound",
        from_number=fake.CALLER,
        to_number=fake.OUR_NUMBER,
        status=CallStatus.RINGING,
    )


def status(call, **extra):
    return {
        "CallSid": call.carrier_call_id,
        "CallStatus": "in-progress",
        "SequenceNumber": 1,
        **extra,
    }


def test_a_json_body_naming_its_account_is_verified_with_that_accounts_token(client, ringing_call):
    response = post_json(client, status(ringing_call, AccountSid=fake.ACCOUNT_SID), fake.AUTH_TOKEN)
    assert response.status_code == 204
    ringing_call.refresh_from_db()
    assert ringing_call.status == CallStatus.IN_PROGRESS


@pytest.mark.parametrize("token", [fake.AUTH_TOKEN, fake.OTHER_AUTH_TOKEN])
def test_a_json_body_naming_no_account_is_verified_with_whichever_token_signed_it(
    client, ringing_call, token
):
    assert post_json(client, status(ringing_call), token).status_code == 204
    ringing_call.refresh_from_db()
    assert ringing_call.status == CallStatus.IN_PROGRESS


def test_a_json_body_signed_by_another_account_than_it_names_is_refused(client, ringing_call):
    payload = status(ringing_call, AccountSid=fake.ACCOUNT_SID)
    assert post_json(client, payload, fake.OTHER_AUTH_TOKEN).status_code == 403


def test_a_json_body_signed_with_a_token_we_do_not_hold_is_refused(client, ringing_call):
    assert (
        post_json(client, status(ringing_call), "not-a-token-we-hold-000000000000").status_code
        == 403
    )
    ringing_call.refresh_from_db()
    assert ringing_call.status == CallStatus.RINGING


def test_a_json_body_changed_after_signing_is_refused(client, ringing_call):
    body = json.dumps(status(ringing_call)).encode()
    path = f"{STATUS}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = RequestValidator(fake.AUTH_TOKEN).compute_signature(fake.PUBLIC_URL + path, {})
    tampered = body.replace(b"in-progress", b"completed")
    response = client.post(
        path,
        data=tampered,
        content_type="application/json",
        headers={"X-Twilio-Signature": signature},
    )
    assert response.status_code == 403


def test_a_signed_json_body_that_is_not_an_object_is_a_bad_request(client, ringing_call, caplog):
    response = post_json(client, None, fake.AUTH_TOKEN, body=b"[1, 2]")
    assert response.status_code == 400
    assert "not a JSON object" in caplog.text
