"""Placing outbound calls (``voiceagents.outbound``): the Twilio and Telnyx requests as their
loopback fakes record them, refusals, the admin form, the command, the Celery task, and the
carriers' AMD callbacks. The calls are not answered here (tests/calls/test_outbound_calls.py)."""

from __future__ import annotations

import json
from io import StringIO
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.urls import reverse
from twilio.request_validator import RequestValidator

from tests.fakes import telnyx as fake_telnyx
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.fakes.twilio_api import FakeTwilioAPI
from voiceagents import tasks
from voiceagents.models import Agent, Call, CallEvent, CallStatus, Credential, PhoneNumber
from voiceagents.outbound import OutboundCallError, classify, place_call

pytestmark = pytest.mark.django_db

OUR_NUMBER = "+14155550199"
CALLEE = "+14155550123"
PUBLIC_URL = "https://voice.example.test"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def twilio_api():
    with FakeTwilioAPI() as api:
        yield api


@pytest.fixture
def telnyx_api(monkeypatch):
    for name in ("TELNYX_PUBLIC_KEY", "TELNYX_API_KEY", "TELNYX_API_URL"):
        monkeypatch.delenv(name, raising=False)
    with fake_telnyx.FakeTelnyxAPI() as api:
        yield api


def _agent(**fields) -> Agent:
    values = {"name": "Front desk", "slug": "front-desk", "system_prompt": "Be brief."}
    values.update(fields)
    return Agent.objects.create(**values)


def _twilio_number(agent, api_url: str, number: str = OUR_NUMBER, **data) -> PhoneNumber:
    credential = Credential(
        vendor="twilio",
        label="twilio",
        data={"account_sid": ACCOUNT_SID, **data},
        api_base_url=api_url,
    )
    credential.secret = AUTH_TOKEN
    credential.save()
    return PhoneNumber.objects.create(
        number=number, carrier="twilio", credential=credential, agent=agent
    )


def _telnyx_number(agent, api_url: str, key=None) -> PhoneNumber:
    data = {"connection_id": fake_telnyx.CONNECTION_ID}
    if key is not None:
        data["webhook_public_key"] = key.public_b64
    credential = Credential(vendor="telnyx", label="telnyx", data=data, api_base_url=api_url)
    credential.secret = fake_telnyx.API_KEY
    credential.save()
    return PhoneNumber.objects.create(
        number=fake_telnyx.OUR_NUMBER,
        carrier="telnyx",
        credential=credential,
        agent=agent,
        carrier_data={"codec": "PCMU"},
    )


# -- Twilio -------------------------------------------------------------------------------------


def test_twilio_call_is_queued_before_the_request_and_takes_the_call_sid(twilio_api):
    agent = _agent(machine_action="hangup", max_call_duration=600)
    _twilio_number(agent, twilio_api.url)

    call = place_call(agent, "+1 (415) 555-0123")

    (form,) = twilio_api.calls
    assert call.status == CallStatus.QUEUED and call.direction == "outbound"
    assert call.to_number == CALLEE and call.from_number == OUR_NUMBER
    assert call.carrier_call_id.startswith("CA") and len(call.carrier_call_id) == 34
    assert form["Url"] == [f"{PUBLIC_URL}/telephony/twilio/voice/?call_id={call.pk}"]
    assert form["Method"] == ["POST"] and form["StatusCallbackMethod"] == ["POST"]
    assert form["Timeout"] == ["30"] and form["TimeLimit"] == ["660"]
    # Hanging up on machines needs no message end: Twilio's quicker mode.
    assert form["MachineDetection"] == ["Enable"]
    assert form["MachineDetectionTimeout"] == ["30"]
    assert form["AsyncAmdStatusCallbackMethod"] == ["POST"]
    (path, authorization) = twilio_api.requests[0]
    assert path.endswith(f"/Accounts/{ACCOUNT_SID}/Calls.json")
    assert authorization.startswith("Basic ")
    assert CallEvent.objects.get(call=call).data["reason"] == "outbound_call_placed"


def test_twilio_call_without_amd_asks_for_none(twilio_api):
    agent = _agent(answering_machine_detection=False)
    _twilio_number(agent, twilio_api.url)
    place_call(agent, CALLEE)
    (form,) = twilio_api.calls
    assert "MachineDetection" not in form and "AsyncAmd" not in form


def test_voicemail_without_a_message_falls_back_to_hanging_up(twilio_api):
    agent = _agent(machine_action="voicemail", voicemail_message="  ")
    _twilio_number(agent, twilio_api.url)
    call = place_call(agent, CALLEE)
    assert call.outbound_options["machine_action"] == "hangup"
    assert twilio_api.calls[0]["MachineDetection"] == ["Enable"]


def test_twilio_refusal_fails_the_call_with_twilios_message(twilio_api):
    agent = _agent()
    _twilio_number(agent, twilio_api.url)
    message = "The 'To' number +14155550123 is not a valid phone number."
    twilio_api.refuse_calls = (400, 21211, message)

    with pytest.raises(OutboundCallError) as caught:
        place_call(agent, CALLEE)

    call = caught.value.call
    assert call is not None
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED and call.end_reason == "dial_failed"
    assert message in call.error and "21211" in call.error and "HTTP 400" in call.error
    assert call.ended_at is not None and call.carrier_call_id == ""


def test_unreachable_twilio_fails_the_call():
    agent = _agent()
    _twilio_number(agent, "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(OutboundCallError, match="could not be reached"):
        place_call(agent, CALLEE)
    assert Call.objects.get().status == CallStatus.FAILED


def test_credential_without_account_sid_is_a_configuration_error(twilio_api):
    agent = _agent()
    number = _twilio_number(agent, twilio_api.url)
    number.credential.data = {}
    number.credential.save()
    with pytest.raises(OutboundCallError, match="no account SID"):
        place_call(agent, CALLEE)
    assert Call.objects.get().end_reason == "configuration_error"
    assert twilio_api.calls == []


@pytest.mark.parametrize("to", ["0415 555 0123", "+0123", "call me", ""])
def test_a_number_not_in_international_format_is_refused(twilio_api, to):
    agent = _agent()
    _twilio_number(agent, twilio_api.url)
    with pytest.raises(OutboundCallError, match="international format"):
        place_call(agent, to)
    assert not Call.objects.exists() and twilio_api.calls == []


def test_from_must_be_an_enabled_number_of_the_agent(twilio_api):
    agent = _agent()
    other = _agent(name="Other", slug="other")
    _twilio_number(agent, twilio_api.url)
    theirs = _twilio_number(other, twilio_api.url, number="+14155550111")
    disabled = _twilio_number(agent, twilio_api.url, number="+14155550122")
    disabled.enabled = False
    disabled.save()
    for from_number in ("+14155550111", theirs, "+14155550122", "+19995550000"):
        with pytest.raises(OutboundCallError, match="not an enabled phone number of the agent"):
            place_call(agent, CALLEE, from_number=from_number)
    with pytest.raises(OutboundCallError, match="no enabled phone number"):
        place_call(_agent(name="Bare", slug="bare"), CALLEE)
    assert not Call.objects.exists() and twilio_api.calls == []


def test_disabled_agent_places_no_call(twilio_api):
    agent = _agent(enabled=False)
    _twilio_number(agent, twilio_api.url)
    with pytest.raises(OutboundCallError, match="disabled"):
        place_call(agent, CALLEE)
    assert twilio_api.calls == []


def test_twilio_amd_callback_is_signed_stored_once_and_unknown_calls_ignored(client, twilio_api):
    agent = _agent()
    _twilio_number(agent, twilio_api.url)
    call = place_call(agent, CALLEE)
    url = f"{PUBLIC_URL}/telephony/twilio/amd/?call_id={call.pk}"
    params = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": call.carrier_call_id,
        "AnsweredBy": "machine_start",
        "MachineDetectionDuration": "2100",
    }

    def post(values, signature=None):
        signature = signature or RequestValidator(AUTH_TOKEN).compute_signature(url, values)
        return client.post(
            f"/telephony/twilio/amd/?call_id={call.pk}",
            urlencode(values),
            content_type=FORM,
            headers={"x-twilio-signature": signature},
        )

    assert post(params, signature="forged").status_code == 403
    call.refresh_from_db()
    assert call.answered_by == ""
    assert post(params).status_code == 204
    assert post({**params, "AnsweredBy": "human"}).status_code == 204  # a repeat changes nothing
    call.refresh_from_db()
    assert call.answered_by == "machine_start"
    (event,) = [e.data for e in CallEvent.objects.filter(call=call) if "amd" in e.data]
    assert event == {"amd": "machine_start", "verdict": "machine", "detection_ms": 2100}
    assert post({**params, "CallSid": "CA" + "9" * 32}).status_code == 204


def test_a_callback_before_the_rest_answer_binds_the_call_sid(client, twilio_api):
    """Twilio may call back before place_call stored the CallSid: the URL's call id finds it."""
    agent = _agent()
    number = _twilio_number(agent, twilio_api.url)
    call = Call.objects.create(
        agent=agent,
        phone_number=number,
        carrier="twilio",
        direction="outbound",
        to_number=CALLEE,
        from_number=OUR_NUMBER,
        outbound_options={"amd": True},
    )
    path = f"/telephony/twilio/voice/?call_id={call.pk}"
    params = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": "CA" + "1" * 32,
        "From": OUR_NUMBER,
        "To": CALLEE,
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
    }
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, params)
    response = client.post(
        path, urlencode(params), content_type=FORM, headers={"x-twilio-signature": signature}
    )
    assert response.status_code == 200
    assert b"<Connect><Stream" in response.content
    call.refresh_from_db()
    assert call.carrier_call_id == "CA" + "1" * 32


# -- Telnyx -------------------------------------------------------------------------------------


def test_telnyx_dial_streams_to_us_with_amd(telnyx_api):
    agent = _agent(machine_action="voicemail", voicemail_message="Call us back.")
    _telnyx_number(agent, telnyx_api.url)

    call = place_call(agent, CALLEE)

    (dial,) = telnyx_api.of("dial")
    body = dial.body
    assert call.carrier_call_id == dial.call_control_id
    assert dial.headers["Authorization"] == f"Bearer {fake_telnyx.API_KEY}"
    assert body["connection_id"] == fake_telnyx.CONNECTION_ID
    assert (body["to"], body["from"]) == (CALLEE, fake_telnyx.OUR_NUMBER)
    assert body["webhook_url"] == f"{PUBLIC_URL}/telephony/telnyx/webhook/"
    assert body["stream_url"] == "wss://voice.example.test/telephony/telnyx/media/"
    assert body["stream_codec"] == "PCMU" and body["stream_bidirectional_mode"] == "rtp"
    assert body["stream_auth_token"]
    assert fake_telnyx.decode_client_state(body["client_state"])["call_id"] == str(call.pk)
    assert body["answering_machine_detection"] == "detect_beep"
    assert body["timeout_secs"] == 30


def test_telnyx_refusal_fails_the_call_with_the_detail(telnyx_api):
    agent = _agent()
    _telnyx_number(agent, telnyx_api.url)
    telnyx_api.fail("dial", 422, code="10010", title="Invalid 'to'", detail="'to' is not routable")
    with pytest.raises(OutboundCallError, match="'to' is not routable") as caught:
        place_call(agent, CALLEE)
    caught.value.call.refresh_from_db()
    assert caught.value.call.status == CallStatus.FAILED
    assert "HTTP 422" in caught.value.call.error


def test_telnyx_without_connection_id_is_refused(telnyx_api):
    agent = _agent()
    number = _telnyx_number(agent, telnyx_api.url)
    number.credential.data = {}
    number.credential.save()
    with pytest.raises(OutboundCallError, match="no connection ID"):
        place_call(agent, CALLEE)
    assert telnyx_api.of("dial") == []


@pytest.mark.parametrize(
    "event_type, result, stored",
    [
        ("call.machine.detection.ended", "machine", "machine"),
        ("call.machine.premium.detection.ended", "human_residence", "human_residence"),
    ],
)
def test_telnyx_amd_webhook_is_stored(client, telnyx_api, event_type, result, stored):
    key = fake_telnyx.keypair("outbound")
    agent = _agent()
    _telnyx_number(agent, telnyx_api.url, key)
    call = place_call(agent, CALLEE)
    payload = fake_telnyx.call_payload(
        call.carrier_call_id, direction="outgoing", result=result, client_state=None
    )
    body = fake_telnyx.webhook(event_type, payload)
    assert fake_telnyx.post(client, body, fake_telnyx.keypair("someone else")).status_code == 403
    assert fake_telnyx.post(client, body, key).status_code == 200
    call.refresh_from_db()
    assert call.answered_by == stored


# -- the admin, the command and the task -----------------------------------------------------------


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_admin_form_shows_the_carriers_refusal_on_the_failed_call(admin_client, twilio_api):
    agent = _agent()
    number = _twilio_number(agent, twilio_api.url)
    twilio_api.refuse_calls = (400, 21215, "Account not authorized to call +14155550123.")
    url = reverse("admin:voiceagents_agent_call_number", args=[agent.pk])

    page = admin_client.get(url)
    assert page.status_code == 200 and OUR_NUMBER in page.content.decode()
    response = admin_client.post(
        url, {"to": CALLEE, "from_number": number.pk, "variables": ""}, follow=True
    )

    call = Call.objects.get()
    assert response.redirect_chain[-1][0] == reverse(
        "admin:voiceagents_call_change", args=[call.pk]
    )
    assert "Account not authorized to call +14155550123." in response.content.decode()
    assert call.status == CallStatus.FAILED


def test_admin_form_refuses_a_bad_number_and_bad_variables(admin_client, twilio_api):
    agent = _agent()
    number = _twilio_number(agent, twilio_api.url)
    url = reverse("admin:voiceagents_agent_call_number", args=[agent.pk])
    response = admin_client.post(url, {"to": "tomorrow", "from_number": number.pk})
    assert response.status_code == 200
    assert "international format" in response.content.decode()
    response = admin_client.post(url, {"to": CALLEE, "from_number": number.pk, "variables": "[1]"})
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert twilio_api.calls == [] and not Call.objects.exists()


def test_admin_agent_page_links_to_the_form(admin_client, twilio_api):
    agent = _agent()
    _twilio_number(agent, twilio_api.url)
    page = admin_client.get(reverse("admin:voiceagents_agent_change", args=[agent.pk]))
    assert reverse("admin:voiceagents_agent_call_number", args=[agent.pk]) in page.content.decode()
    assert 'name="voicemail_message"' in page.content.decode()


def test_only_staff_who_may_change_the_agent_place_calls(client, twilio_api):
    agent = _agent()
    number = _twilio_number(agent, twilio_api.url)
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_agent"))
    client.force_login(viewer)
    url = reverse("admin:voiceagents_agent_call_number", args=[agent.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"to": CALLEE, "from_number": number.pk}).status_code == 403
    assert twilio_api.calls == []


def test_management_command_places_the_call(twilio_api):
    agent = _agent()
    _twilio_number(agent, twilio_api.url)
    out = StringIO()
    call_command(
        "voiceagents_call_number",
        "front-desk",
        CALLEE,
        "--first-message",
        "Hi {name}!",
        "--variables",
        json.dumps({"name": "Ada"}),
        stdout=out,
    )
    call = Call.objects.get()
    assert str(call.pk) in out.getvalue()
    assert call.outbound_options["first_message"] == "Hi {name}!"
    assert call.outbound_options["variables"] == {"name": "Ada"}
    twilio_api.refuse_calls = (400, 21211, "Invalid 'To'")
    with pytest.raises(CommandError, match="Invalid 'To'"):
        call_command("voiceagents_call_number", "front-desk", CALLEE, stdout=out)
    with pytest.raises(CommandError, match="No agent"):
        call_command("voiceagents_call_number", "nobody", CALLEE, stdout=out)


def test_management_command_can_queue_the_call_for_celery(twilio_api, eager_celery):
    agent = _agent()
    _twilio_number(agent, twilio_api.url)
    out = StringIO()
    call_command("voiceagents_call_number", str(agent.pk), CALLEE, "--queue", stdout=out)
    assert out.getvalue().startswith("Queued: Celery task ")
    assert Call.objects.get().to_number == CALLEE  # the eager test worker placed it


def test_celery_task_places_the_call(twilio_api, eager_celery):
    agent = _agent()
    _twilio_number(agent, twilio_api.url)
    call_id = tasks.place_call.delay(agent.pk, CALLEE, OUR_NUMBER).get()
    assert Call.objects.get(pk=call_id).carrier_call_id.startswith("CA")
    assert twilio_api.calls[0]["From"] == [OUR_NUMBER]


@pytest.mark.parametrize(
    "answered_by, verdict",
    [
        ("human", "human"),
        ("human_business", "human"),
        ("machine_end_beep", "machine"),
        ("fax", "machine"),
        ("machine", "machine"),
        ("unknown", "unknown"),
        ("not_sure", "unknown"),
        ("", "unknown"),
    ],
)
def test_classify(answered_by, verdict):
    assert classify(answered_by) == verdict
