"""Twilio's voice webhook and status callbacks: the security contract plus Twilio's quirks.

Requests are signed with the twilio SDK (``tests.fakes.twilio``), never with our own module.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.fakes import twilio as fake
from tests.telephony.webhook_cases import *  # noqa: F403  (the contract suite runs here)
from voiceagents.call import streamtokens
from voiceagents.models import Call, CallEvent, CallStatus, Direction, PhoneNumber

VOICE = reverse("telephony:twilio_voice")
STATUS = reverse("telephony:twilio_status")
FORM = "application/x-www-form-urlencoded"


class TwilioHarness:
    """The contract suite's view of one Twilio endpoint."""

    secret_setting = "TWILIO_AUTH_TOKEN"

    def __init__(self, path: str, make_credential):
        self.path = path
        self.make_credential = make_credential

    def install_secret(self, secret: str) -> None:
        self.make_credential(secret)

    def _params(self) -> dict[str, str]:
        if self.path == VOICE:
            return fake.voice_params()
        return fake.status_params(fake.new_sid("CA"), "completed", 3, CallDuration="7")

    def send(self, client, *, secret, public_url=None, tamper=False):
        params = self._params()
        headers = {}
        if secret is not None:
            headers["X-Twilio-Signature"] = fake.sign(
                (public_url or fake.PUBLIC_URL) + self.path, params, secret
            )
        if tamper:
            params["From"] = "+15550000001"
        return client.post(self.path, data=urlencode(params), content_type=FORM, headers=headers)

    def accepted(self, response) -> bool:
        if self.path == VOICE:
            return response.status_code == 200 and response.content.lstrip().startswith(b"<?xml")
        return response.status_code == 204


@pytest.fixture(params=[VOICE, STATUS], ids=["voice", "status"])
def webhook(request, make_twilio_credential):
    return TwilioHarness(request.param, make_twilio_credential)


def _stream(response):
    root = ET.fromstring(response.content)
    stream = root.find("Connect/Stream")
    return root, stream, {p.get("name"): p.get("value") for p in stream.findall("Parameter")}


# -- voice webhook ---------------------------------------------------------------------------


def test_signed_webhook_connects_the_call_to_the_media_stream(client, twilio_number, agent):
    params = fake.voice_params()
    response = fake.signed_post(client, VOICE, params)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    root, stream, parameters = _stream(response)
    assert [child.tag for child in root] == ["Connect", "Hangup"]
    assert stream.get("url") == "wss://voice.example.test/telephony/twilio/media/"
    assert set(parameters) == {"call_id", "stream_token"}
    streamtokens.check(parameters["call_id"], parameters["stream_token"])

    call = Call.objects.get()
    assert str(call.pk) == parameters["call_id"]
    assert (call.carrier, call.carrier_call_id, call.direction) == (
        "twilio",
        params["CallSid"],
        Direction.INBOUND,
    )
    assert (call.from_number, call.to_number) == (fake.CALLER, fake.OUR_NUMBER)
    assert (call.agent, call.phone_number, call.provider) == (agent, twilio_number, agent.provider)
    assert call.status == CallStatus.RINGING and call.ended_at is None


@pytest.mark.parametrize("token", [fake.OTHER_AUTH_TOKEN, None], ids=["forged", "missing"])
def test_unverified_webhook_is_refused_and_creates_no_call(client, twilio_number, token):
    response = fake.signed_post(client, VOICE, fake.voice_params(), token=token)
    assert response.status_code == 403
    assert not Call.objects.exists()


def test_webhook_signed_with_the_default_port_is_accepted(client, twilio_number):
    response = fake.signed_post(
        client, VOICE, fake.voice_params(), public_url="https://voice.example.test:443"
    )
    assert response.status_code == 200


def test_query_string_is_part_of_the_signed_url(client, twilio_number):
    params = fake.voice_params()
    url = VOICE + "?tenant=a%20b"
    sig = fake.sign(fake.PUBLIC_URL + url, params)
    ok = client.post(
        url, data=urlencode(params), content_type=FORM, headers={"X-Twilio-Signature": sig}
    )
    assert ok.status_code == 200
    moved = client.post(
        VOICE + "?tenant=other",
        data=urlencode(params),
        content_type=FORM,
        headers={"X-Twilio-Signature": sig},
    )
    assert moved.status_code == 403


def test_unknown_number_gets_an_apology_and_a_failed_call_row(client, twilio_credential, caplog):
    params = fake.voice_params(To="+15550009999")
    with caplog.at_level(logging.INFO, logger="telephony"):
        response = fake.signed_post(client, VOICE, params)

    root = ET.fromstring(response.content)
    assert response.status_code == 200
    assert [child.tag for child in root] == ["Say", "Hangup"] and root.find("Say").text
    call = Call.objects.get()
    assert (call.status, call.end_reason, call.carrier_call_id) == (
        CallStatus.FAILED,
        "unknown_number",
        params["CallSid"],
    )
    assert call.ended_at is not None and call.agent is None
    assert "unknown_number" in caplog.text
    assert "+15550009999" not in caplog.text and fake.CALLER not in caplog.text
    assert "9999" in caplog.text


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"enabled": False}, "number_disabled"),
        ({"agent": None}, "no_agent"),
        ("agent_disabled", "agent_disabled"),
    ],
)
def test_numbers_that_cannot_answer_get_an_apology(client, twilio_number, change, reason):
    if change == "agent_disabled":
        twilio_number.agent.enabled = False
        twilio_number.agent.save()
    else:
        PhoneNumber.objects.filter(pk=twilio_number.pk).update(**change)

    response = fake.signed_post(client, VOICE, fake.voice_params())

    assert ET.fromstring(response.content).find("Connect") is None
    assert ET.fromstring(response.content).find("Say") is not None
    call = Call.objects.get()
    assert (call.status, call.end_reason, call.phone_number) == (
        CallStatus.FAILED,
        reason,
        twilio_number,
    )


def test_a_number_of_another_account_is_not_connected(
    client, twilio_number, make_twilio_credential
):
    other_account = "AC" + "e" * 32
    make_twilio_credential(fake.OTHER_AUTH_TOKEN, account_sid=other_account)
    params = fake.voice_params(AccountSid=other_account)
    response = fake.signed_post(client, VOICE, params, token=fake.OTHER_AUTH_TOKEN)
    assert ET.fromstring(response.content).find("Say") is not None
    assert Call.objects.get().end_reason == "account_mismatch"


def test_retried_webhook_creates_one_call_and_a_fresh_token(client, twilio_number):
    params = fake.voice_params()
    first = _stream(fake.signed_post(client, VOICE, params))[2]
    second = _stream(fake.signed_post(client, VOICE, params))[2]
    assert Call.objects.count() == 1
    assert first["call_id"] == second["call_id"]
    assert first["stream_token"] != second["stream_token"]
    streamtokens.check(second["call_id"], second["stream_token"])


def test_retried_webhook_of_a_refused_call_still_apologises(client, twilio_credential):
    params = fake.voice_params(To="+15550009999")
    fake.signed_post(client, VOICE, params)
    response = fake.signed_post(client, VOICE, params)
    assert ET.fromstring(response.content).find("Say") is not None
    assert Call.objects.count() == 1


def test_auth_token_from_settings_verifies(client, db, voiceagents_settings):
    voiceagents_settings["TWILIO_AUTH_TOKEN"] = ["old-token", "new-token"]
    for token in ("old-token", "new-token"):
        assert (
            fake.signed_post(
                client, STATUS, fake.status_params(fake.new_sid("CA"), "ringing", 0), token=token
            ).status_code
            == 204
        )
    assert (
        fake.signed_post(
            client, STATUS, fake.status_params("CA1", "ringing", 0), token="other"
        ).status_code
        == 403
    )


def test_head_probe_answers_without_acting(client, db):
    assert client.head(VOICE).status_code == 200
    assert not Call.objects.exists()


# -- SharedKey (HMAC-SHA256) mode ------------------------------------------------------------

SHARED_HEADERS = {"X-Twilio-Webhooks-Signature-Settings": "key=kid-1,algorithm=HMAC_SHA256"}


def test_shared_key_sha256_signature_is_accepted(client, twilio_number, voiceagents_settings):
    voiceagents_settings["TWILIO_SHARED_KEYS"] = {"kid-1": "shared-secret"}
    response = fake.signed_post(
        client,
        VOICE,
        fake.voice_params(),
        token="shared-secret",
        algorithm="HMAC_SHA256",
        headers=SHARED_HEADERS,
    )
    assert (
        response.status_code == 200 and ET.fromstring(response.content).find("Connect") is not None
    )


@pytest.mark.parametrize(
    ("headers", "algorithm"),
    [
        (
            {"X-Twilio-Webhooks-Signature-Settings": "key=kid-2,algorithm=HMAC_SHA256"},
            "HMAC_SHA256",
        ),
        (
            {"X-Twilio-Webhooks-Signature-Settings": "key=kid-1,algorithm=HMAC_SHA512"},
            "HMAC_SHA256",
        ),
        ({}, "HMAC_SHA256"),
        (SHARED_HEADERS, "HMAC_SHA1"),
    ],
    ids=["unknown-key", "unknown-algorithm", "no-settings-header", "wrong-hash"],
)
def test_shared_key_mismatches_are_refused(
    client, twilio_number, voiceagents_settings, headers, algorithm
):
    voiceagents_settings["TWILIO_SHARED_KEYS"] = {"kid-1": "shared-secret"}
    response = fake.signed_post(
        client,
        VOICE,
        fake.voice_params(),
        token="shared-secret",
        algorithm=algorithm,
        headers=headers,
    )
    assert response.status_code == 403
    assert not Call.objects.exists()


def test_shared_key_without_configured_keys_answers_503(client, twilio_number):
    response = fake.signed_post(
        client,
        VOICE,
        fake.voice_params(),
        token="shared-secret",
        algorithm="HMAC_SHA256",
        headers=SHARED_HEADERS,
    )
    assert response.status_code == 503
    assert "TWILIO_SHARED_KEYS" in response.content.decode()


def test_unknown_account_is_refused_with_403_when_we_hold_other_tokens(
    client, twilio_number, caplog
):
    response = fake.signed_post(client, VOICE, fake.voice_params(AccountSid="AC" + "9" * 32))
    assert response.status_code == 403
    assert not Call.objects.exists()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# -- status callbacks ------------------------------------------------------------------------


@pytest.fixture
def ringing_call(client, twilio_number) -> Call:
    fake.signed_post(client, VOICE, fake.voice_params())
    return Call.objects.get()


def _status(client, call, status, sequence, **extra):
    params = fake.status_params(call.carrier_call_id, status, sequence, **extra)
    response = fake.signed_post(client, STATUS, params)
    assert response.status_code == 204 and response.content == b""
    call.refresh_from_db()
    return call


def test_in_progress_sets_answered_at(client, ringing_call):
    call = _status(
        client, ringing_call, "in-progress", 1, Timestamp="Thu, 26 Nov 2026 10:00:05 +0000"
    )
    assert call.status == CallStatus.IN_PROGRESS
    assert call.answered_at == datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC)
    assert call.carrier_status_seq == 1
    event = CallEvent.objects.get(call=call)
    assert event.kind == "status"
    assert (event.data["previous"], event.data["status"], event.data["sequence"]) == (
        "ringing",
        "in_progress",
        1,
    )


def test_completed_sets_ended_at_and_duration(client, ringing_call):
    _status(client, ringing_call, "in-progress", 1, Timestamp="Thu, 26 Nov 2026 10:00:05 +0000")
    call = _status(
        client,
        ringing_call,
        "completed",
        2,
        Timestamp="Thu, 26 Nov 2026 10:01:05 +0000",
        CallDuration="61",
    )
    assert call.status == CallStatus.COMPLETED
    assert call.ended_at == datetime(2026, 11, 26, 10, 1, 5, tzinfo=UTC)
    assert call.duration == timedelta(seconds=61)
    assert CallEvent.objects.filter(call=call).count() == 2


def test_out_of_order_callback_is_ignored(client, ringing_call):
    _status(client, ringing_call, "completed", 3, CallDuration="12")
    call = _status(client, ringing_call, "in-progress", 2)
    assert call.status == CallStatus.COMPLETED
    assert call.answered_at is None
    assert call.carrier_status_seq == 3


def test_repeated_callback_is_idempotent(client, ringing_call):
    _status(client, ringing_call, "in-progress", 1)
    first = Call.objects.get(pk=ringing_call.pk)
    call = _status(client, ringing_call, "in-progress", 1)
    assert (call.status, call.answered_at) == (first.status, first.answered_at)
    assert CallEvent.objects.filter(call=call).count() == 1


@pytest.mark.parametrize("final", ["completed", "busy", "no-answer", "failed", "canceled"])
def test_a_final_call_never_goes_back_to_a_live_status(client, ringing_call, final):
    _status(client, ringing_call, final, 2)
    for sequence, status in enumerate(["ringing", "in-progress", "completed"], start=3):
        call = _status(client, ringing_call, status, sequence)
        assert call.status == final.replace("-", "_")
        assert call.carrier_status_seq == sequence


@pytest.mark.parametrize(
    "final, reason",
    [
        ("completed", "no_media_stream"),
        ("busy", "busy"),
        ("no-answer", "no_answer"),
        ("canceled", "caller_cancelled"),
        ("failed", "carrier_failed"),
    ],
)
def test_a_call_ended_before_its_stream_started_says_why(client, ringing_call, final, reason):
    call = _status(client, ringing_call, final, 2)
    assert (call.status, call.end_reason) == (final.replace("-", "_"), reason)


def test_a_call_whose_stream_started_gets_its_reason_from_the_session(client, ringing_call):
    Call.objects.filter(pk=ringing_call.pk).update(stream_token_used_at=timezone.now())
    assert _status(client, ringing_call, "completed", 2).end_reason == ""


def test_live_statuses_only_move_forward(client, ringing_call):
    _status(client, ringing_call, "in-progress", 2)
    assert _status(client, ringing_call, "ringing", 5).status == CallStatus.IN_PROGRESS


def test_a_terminal_callback_fills_the_duration_of_a_refused_call(client, twilio_credential):
    params = fake.voice_params(To="+15550009999")
    fake.signed_post(client, VOICE, params)
    call = _status(client, Call.objects.get(), "completed", 4, CallDuration="3")
    assert (call.status, call.end_reason, call.duration) == (
        CallStatus.FAILED,
        "unknown_number",
        timedelta(seconds=3),
    )


def test_callback_without_a_sequence_number_is_applied(client, ringing_call):
    call = _status(client, ringing_call, "in-progress", None)
    assert call.status == CallStatus.IN_PROGRESS and call.carrier_status_seq is None


def test_status_callback_for_an_unknown_call_is_acknowledged(client, twilio_credential, caplog):
    with caplog.at_level(logging.INFO, logger="telephony"):
        response = fake.signed_post(
            client, STATUS, fake.status_params("CA" + "9" * 32, "completed", 1)
        )
    assert response.status_code == 204
    assert not Call.objects.exists()
    assert "unknown call" in caplog.text


def test_unknown_call_status_value_is_ignored(client, ringing_call):
    call = _status(client, ringing_call, "teleported", 1)
    assert call.status == CallStatus.RINGING and call.carrier_status_seq is None


def test_callback_without_call_sid_is_a_bad_request(client, twilio_credential):
    params = fake.status_params("", "completed", 1)
    assert fake.signed_post(client, STATUS, params).status_code == 400


def test_fake_frames_have_the_documented_shapes():
    start = fake.start("MZ1", "CA1", {"call_id": "c", "stream_token": "t"})
    assert start["start"]["customParameters"] == {"call_id": "c", "stream_token": "t"}
    assert start["sequenceNumber"] == "1" and start["streamSid"] == start["start"]["streamSid"]
    media = fake.media("MZ1", b"\xff" * 160, chunk=2, timestamp_ms=20)
    assert len(media["media"]["payload"]) == 216 and media["media"]["chunk"] == "2"
    assert [
        f["event"]
        for f in (
            fake.connected(),
            fake.mark("MZ1", "m"),
            fake.dtmf("MZ1", "1"),
            fake.stop("MZ1", "CA1"),
        )
    ] == [
        "connected",
        "mark",
        "dtmf",
        "stop",
    ]


def test_outbound_call_with_a_row_is_connected(client, twilio_number, agent):
    call = Call.objects.create(
        carrier="twilio",
        carrier_call_id=fake.new_sid("CA"),
        direction=Direction.OUTBOUND,
        agent=agent,
        status=CallStatus.QUEUED,
    )
    params = fake.voice_params(
        CallSid=call.carrier_call_id, Direction="outbound-api", From=fake.OUR_NUMBER, To=fake.CALLER
    )
    parameters = _stream(fake.signed_post(client, VOICE, params))[2]
    assert parameters["call_id"] == str(call.pk)
    assert Call.objects.count() == 1


def test_outbound_call_without_a_row_is_not_recorded_as_inbound(client, twilio_number):
    params = fake.voice_params(Direction="outbound-api", From=fake.OUR_NUMBER, To=fake.CALLER)
    response = fake.signed_post(client, VOICE, params)
    assert ET.fromstring(response.content).find("Say") is not None
    assert not Call.objects.exists()
