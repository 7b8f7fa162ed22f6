"""Telnyx's Call Control webhook: the security contract plus Telnyx's quirks.

Webhooks are signed by ``tests.fakes.telnyx`` with ``cryptography`` directly; the Call Control
commands our view sends land on the loopback ``FakeTelnyxAPI``.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from telephony.carriers.telnyx.calls import claim_event
from telephony.carriers.telnyx.events import TelnyxEvent
from tests.fakes import telnyx as fake
from tests.telephony.conftest import create_credential
from tests.telephony.webhook_cases import *  # noqa: F403  (the contract suite runs here)
from voiceagents.call import streamtokens
from voiceagents.models import (
    Call,
    CallEvent,
    CallStatus,
    Direction,
    PhoneNumber,
    ProcessedWebhookEvent,
)

WEBHOOK = reverse("telephony:telnyx_webhook")
KEY = fake.keypair("our telnyx account")
OTHER_KEY = fake.keypair("another telnyx account")


@pytest.fixture(autouse=True)
def _no_telnyx_settings_from_the_environment(monkeypatch):
    for name in ("TELNYX_PUBLIC_KEY", "TELNYX_API_KEY", "TELNYX_API_URL", "TELNYX_L16_BYTE_ORDER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api():
    with fake.FakeTelnyxAPI() as server:
        yield server


@pytest.fixture
def telnyx_credential(db, api):
    return create_credential(
        "telnyx", fake.API_KEY, data={"webhook_public_key": KEY.public_b64}, api_base_url=api.url
    )


@pytest.fixture
def telnyx_number(telnyx_credential, agent) -> PhoneNumber:
    return PhoneNumber.objects.create(
        number=fake.OUR_NUMBER, carrier="telnyx", credential=telnyx_credential, agent=agent
    )


def send(client, body: bytes, key=KEY, **kwargs):
    return fake.post(client, body, key, **kwargs)


# -- the contract ----------------------------------------------------------------------------------


class TelnyxHarness:
    """The contract suite's view of the Telnyx webhook; its secrets become Ed25519 key pairs."""

    secret_setting = "TELNYX_PUBLIC_KEY"

    def __init__(self):
        self.credential = None

    def install_secret(self, secret: str) -> None:
        key = fake.keypair(secret).public_b64
        if self.credential is None:
            self.credential = create_credential(
                "telnyx", fake.API_KEY, data={"webhook_public_key": key}
            )
        else:
            self.credential.data["webhook_public_key"] += "\n" + key
            self.credential.save()

    def send(self, client, *, secret, public_url=None, tamper=False):
        body = fake.call_hangup(fake.new_call_control_id())  # for no call of ours: just a 200
        headers = fake.signed_headers(body, fake.keypair(secret) if secret else None)
        if tamper:
            body = body.replace(b"normal_clearing", b"user_busy")
        return client.post(WEBHOOK, data=body, content_type="application/json", headers=headers)

    def accepted(self, response) -> bool:
        return response.status_code == 200


@pytest.fixture
def webhook(db):
    return TelnyxHarness()


@pytest.mark.django_db
def test_signed_url_follows_the_public_url_setting(webhook, client, voiceagents_settings):
    """Overrides the contract's test: Telnyx signs the body and timestamp, not the URL, so a
    changed ``PUBLIC_URL`` changes nothing."""
    webhook.install_secret(SECRET)  # noqa: F405
    voiceagents_settings["PUBLIC_URL"] = OTHER_PUBLIC_URL  # noqa: F405
    assert webhook.accepted(webhook.send(client, secret=SECRET))  # noqa: F405


@pytest.mark.parametrize("age", [330, -90], ids=["stale", "future"])
def test_stale_or_future_timestamps_are_refused(client, telnyx_number, api, age):
    body = fake.call_initiated(fake.new_call_control_id())
    response = send(client, body, timestamp=int(time.time()) - age)
    assert response.status_code == 403
    assert not Call.objects.exists() and not api.commands


def test_a_forged_call_is_refused_before_anything_happens(client, telnyx_number, api):
    response = send(client, fake.call_initiated(fake.new_call_control_id()), OTHER_KEY)
    assert response.status_code == 403
    assert not Call.objects.exists() and not ProcessedWebhookEvent.objects.exists()
    assert not api.commands


def test_a_body_that_is_not_a_telnyx_event_is_400(client, telnyx_credential):
    assert send(client, b'{"data": []}').status_code == 400


# -- call.initiated --------------------------------------------------------------------------------


def test_incoming_call_is_answered_then_streamed_in_l16_16k(client, telnyx_number, agent, api):
    ccid = fake.new_call_control_id()
    response = send(client, fake.call_initiated(ccid))
    assert response.status_code == 200

    call = Call.objects.get()
    assert (call.carrier, call.carrier_call_id, call.direction) == (
        "telnyx",
        ccid,
        Direction.INBOUND,
    )
    assert (call.from_number, call.to_number, call.agent, call.phone_number) == (
        fake.CALLER,
        fake.OUR_NUMBER,
        agent,
        telnyx_number,
    )
    assert call.status == CallStatus.RINGING

    answer, stream = api.commands
    assert (answer.action, stream.action) == ("answer", "streaming_start")
    assert answer.call_control_id == stream.call_control_id == ccid
    assert answer.headers["Authorization"] == f"Bearer {fake.API_KEY}"
    state = fake.decode_client_state(answer.body["client_state"])
    assert state == {"call_id": str(call.pk), "mode": "agent", "codec": "L16"}
    assert "stream_url" not in answer.body  # answer cannot carry the auth token or the rate
    body = stream.body
    assert body["stream_url"] == "wss://voice.example.test/telephony/telnyx/media/"
    assert body["stream_track"] == "inbound_track"
    assert body["stream_codec"] == body["stream_bidirectional_codec"] == "L16"
    assert body["stream_bidirectional_sampling_rate"] == 16000
    assert body["stream_bidirectional_mode"] == "rtp"
    assert body["client_state"] == answer.body["client_state"]
    assert body["custom_parameters"] == [{"name": "call_id", "value": str(call.pk)}]
    streamtokens.check(call.pk, body["stream_auth_token"])
    assert answer.body["command_id"] == f"answer-{call.pk}"
    assert body["command_id"] == f"stream-{call.pk}"


def test_a_pcmu_number_streams_pcmu_at_8k(client, telnyx_number, api):
    telnyx_number.carrier_data = {"codec": "PCMU"}
    telnyx_number.save()
    send(client, fake.call_initiated(fake.new_call_control_id()))
    body = api.of("streaming_start")[0].body
    assert (body["stream_codec"], body["stream_bidirectional_codec"]) == ("PCMU", "PCMU")
    assert body["stream_bidirectional_sampling_rate"] == 8000
    assert fake.decode_client_state(body["client_state"])["codec"] == "PCMU"


def test_a_repeated_event_is_processed_once(client, telnyx_number, api):
    body = fake.call_initiated(fake.new_call_control_id())
    assert send(client, body).status_code == 200
    assert send(client, body).status_code == 200
    assert Call.objects.count() == 1
    assert api.actions() == ["answer", "streaming_start"]


def test_the_event_claim_is_a_unique_row(telnyx_credential):
    """The claim is an insert under a unique constraint: a second claimant (from any process) loses."""
    event = TelnyxEvent.from_body(fake.call_hangup("v3:x"))
    assert claim_event(event) is True
    assert claim_event(event) is False


def test_api_unreachable_answers_503_and_the_retry_is_acted_on(client, telnyx_number, api):
    ccid = fake.new_call_control_id()
    body = fake.call_initiated(ccid)
    api.drop("streaming_start")
    assert send(client, body).status_code == 503
    assert send(client, body).status_code == 200  # Telnyx's retry of the same event
    assert Call.objects.count() == 1
    assert api.actions() == ["answer", "streaming_start", "answer", "streaming_start"]
    # The same command ids: Telnyx carries out a repeated command once.
    answers = {c.body["command_id"] for c in api.of("answer")}
    streams = {c.body["command_id"] for c in api.of("streaming_start")}
    assert len(answers) == len(streams) == 1


def test_streaming_refused_fails_the_call_and_hangs_up(client, telnyx_number, api):
    api.fail("streaming_start", 422, code="90015", title="Invalid value", detail="stream_codec")
    assert send(client, fake.call_initiated(fake.new_call_control_id())).status_code == 200
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "carrier_error")
    assert api.actions() == ["answer", "streaming_start", "hangup"]


def test_answer_refused_because_the_caller_left_waits_for_the_hangup(client, telnyx_number, api):
    ccid = fake.new_call_control_id()
    api.fail("answer")  # 90018: call has already ended
    assert send(client, fake.call_initiated(ccid)).status_code == 200
    assert api.actions() == ["answer"]
    send(client, fake.call_hangup(ccid, "originator_cancel", "caller"))
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.CANCELED, "caller_cancelled")


def test_no_api_key_fails_the_call(client, telnyx_number, api):
    telnyx_number.credential.secret = ""
    telnyx_number.credential.save()
    assert send(client, fake.call_initiated(fake.new_call_control_id())).status_code == 200
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "configuration_error")
    assert not api.commands


def test_outgoing_call_initiated_is_left_to_whoever_dialled(client, telnyx_number, api):
    send(client, fake.call_initiated(fake.new_call_control_id(), direction="outgoing"))
    assert not Call.objects.exists() and not api.commands


# -- calls no agent can take ----------------------------------------------------------------------


def _apology_flow(client, api, ccid):
    assert send(client, fake.call_initiated(ccid)).status_code == 200
    (answer,) = api.commands
    state = answer.body["client_state"]
    assert fake.decode_client_state(state)["mode"] == "apology"
    send(client, fake.call_answered(ccid, state))
    (speak,) = api.of("speak")
    assert "Sorry" in speak.body["payload"]
    send(client, fake.speak_ended(ccid, speak.body["client_state"]))
    assert api.actions() == ["answer", "speak", "hangup"]
    assert {c.call_control_id for c in api.commands} == {ccid}


@pytest.mark.parametrize("problem", ["number_disabled", "no_agent", "agent_disabled"])
def test_a_call_no_agent_can_take_hears_an_apology_and_is_hung_up(
    client, telnyx_number, api, problem
):
    if problem == "number_disabled":
        telnyx_number.enabled = False
        telnyx_number.save()
    elif problem == "no_agent":
        telnyx_number.agent = None
        telnyx_number.save()
    else:
        telnyx_number.agent.enabled = False
        telnyx_number.agent.save()
    ccid = fake.new_call_control_id()
    _apology_flow(client, api, ccid)
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.FAILED, problem)
    send(client, fake.call_hangup(ccid, "normal_clearing", "callee"))
    assert Call.objects.get().end_reason == problem  # the refusal stays the reason


def test_an_unknown_number_is_apologised_to_with_the_signing_accounts_key(
    client, telnyx_credential, api
):
    _apology_flow(client, api, fake.new_call_control_id())
    assert Call.objects.get().end_reason == "unknown_number"
    assert all(c.headers["Authorization"] == f"Bearer {fake.API_KEY}" for c in api.commands)


def test_a_number_of_another_account_is_refused(client, telnyx_number, api):
    create_credential(
        "telnyx",
        fake.API_KEY,
        data={"webhook_public_key": OTHER_KEY.public_b64},
        api_base_url=api.url,
    )
    send(client, fake.call_initiated(fake.new_call_control_id()), OTHER_KEY)
    assert Call.objects.get().end_reason == "account_mismatch"
    assert api.actions() == ["answer"]


# -- later events ---------------------------------------------------------------------------------


@pytest.fixture
def ringing_call(client, telnyx_number, api) -> Call:
    send(client, fake.call_initiated(fake.new_call_control_id()))
    api.commands.clear()
    return Call.objects.get()


def test_answered_puts_the_call_in_progress(client, ringing_call):
    send(
        client, fake.call_answered(ringing_call.carrier_call_id, occurred_at="2026-11-26T10:00:00Z")
    )
    call = Call.objects.get()
    assert call.status == CallStatus.IN_PROGRESS
    assert call.answered_at.isoformat() == "2026-11-26T10:00:00+00:00"
    assert CallEvent.objects.filter(call=call, data__to="in_progress").exists()


def test_hangup_after_answer_completes_the_call_with_its_duration(client, ringing_call):
    ccid = ringing_call.carrier_call_id
    send(client, fake.call_answered(ccid, occurred_at="2026-11-26T10:00:00Z"))
    send(
        client,
        fake.call_hangup(ccid, "normal_clearing", "caller", occurred_at="2026-11-26T10:01:05Z"),
    )
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    assert call.duration == timedelta(seconds=65)
    event = CallEvent.objects.filter(call=call, data__carrier_event="call.hangup").get()
    assert event.data["hangup_cause"] == "normal_clearing"


@pytest.mark.parametrize(
    ("cause", "status", "reason"),
    [
        ("originator_cancel", CallStatus.CANCELED, "caller_cancelled"),
        ("timeout", CallStatus.NO_ANSWER, "timeout"),
        ("call_rejected", CallStatus.FAILED, "rejected"),
    ],
)
def test_hangup_before_answer(client, ringing_call, cause, status, reason):
    send(client, fake.call_hangup(ringing_call.carrier_call_id, cause, "caller"))
    call = Call.objects.get()
    assert (call.status, call.end_reason, call.duration) == (status, reason, None)
    assert call.ended_at is not None


def test_events_out_of_order_never_move_a_call_back(client, ringing_call):
    ccid = ringing_call.carrier_call_id
    send(client, fake.call_hangup(ccid, "originator_cancel", "caller"))
    send(client, fake.call_answered(ccid))
    assert Call.objects.get().status == CallStatus.CANCELED


def test_our_hangup_of_a_streamed_call_is_left_to_the_session(client, ringing_call):
    Call.objects.filter(pk=ringing_call.pk).update(
        status=CallStatus.IN_PROGRESS,
        stream_token_used_at=timezone.now(),
        answered_at=timezone.now(),
    )
    send(client, fake.call_hangup(ringing_call.carrier_call_id, "normal_clearing", "callee"))
    call = Call.objects.get()
    assert call.status == CallStatus.IN_PROGRESS and call.end_reason == ""
    assert CallEvent.objects.filter(call=call, data__hangup_source="callee").exists()


def test_a_carrier_reason_replaces_the_streams_generic_one(client, ringing_call):
    Call.objects.filter(pk=ringing_call.pk).update(
        status=CallStatus.COMPLETED, end_reason="stream_stopped", ended_at=timezone.now()
    )
    send(client, fake.call_hangup(ringing_call.carrier_call_id, "time_limit", "unknown"))
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "time_limit")


def test_a_failed_stream_fails_the_call_and_hangs_up(client, ringing_call, api):
    ccid = ringing_call.carrier_call_id
    send(client, fake.streaming_event("streaming.started", ccid, stream_url="wss://x"))
    body = fake.streaming_event(
        "streaming.failed", ccid, failure_reason="connection_failed", stream_type="websocket"
    )
    assert send(client, body).status_code == 200
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "stream_failed")
    assert "connection_failed" in call.error
    assert api.actions() == ["hangup"]
    kinds = list(CallEvent.objects.filter(call=call).values_list("data__carrier_event", flat=True))
    assert "streaming.started" in kinds and "streaming.failed" in kinds


def test_events_for_calls_we_do_not_know_are_acknowledged(client, telnyx_credential, api):
    for body in (
        fake.call_answered("v3:unknown"),
        fake.call_hangup("v3:unknown"),
        fake.streaming_event("streaming.failed", "v3:unknown"),
        fake.webhook("call.bridged", fake.call_payload("v3:unknown")),
    ):
        assert send(client, body).status_code == 200
    assert not api.commands


def test_without_verification_the_settings_api_key_is_used(
    client, voiceagents_settings, agent, api
):
    voiceagents_settings["VERIFY_SIGNATURES"] = False
    voiceagents_settings["TELNYX_API_KEY"] = fake.API_KEY
    voiceagents_settings["TELNYX_API_URL"] = api.url
    response = send(client, fake.call_initiated(fake.new_call_control_id()), key=None)
    assert response.status_code == 200
    assert Call.objects.get().end_reason == "unknown_number"
    assert api.actions() == ["answer"]


def test_head_probe(client):
    assert client.head(WEBHOOK).status_code == 200
