"""The customer webhook: signed, retried while the receiver fails, refused towards private
addresses, with a recording link that works without an admin login and stops working."""

from __future__ import annotations

import time

import pytest
from django.core import signing
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse

from tests.fakes.webhook_receiver import SECRET, Receiver, verify
from tests.voiceagents.factories import add_transcript, attach_recording, make_agent, make_call
from voiceagents import tasks
from voiceagents.models import CallEvent, CallEventKind, CallStatus
from voiceagents.services import finalize_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver_settings(voiceagents_settings):
    voiceagents_settings.update(
        CALL_WEBHOOK_SECRET=SECRET,
        CALL_WEBHOOK_ALLOW_PRIVATE=True,  # the receiver is on 127.0.0.1
        CALL_WEBHOOK_TIMEOUT=5.0,
        PUBLIC_URL="https://agents.example.com",
    )
    return voiceagents_settings


def a_finished_call():
    call = make_call(
        agent=make_agent(name="Front desk"), status=CallStatus.COMPLETED, end_reason="caller_hangup"
    )
    add_transcript(
        call,
        {"seq": 0, "role": "agent", "text": "Hello, front desk.", "start_ms": 0, "end_ms": 900},
        {
            "seq": 1,
            "role": "caller",
            "text": "Are you open today?",
            "start_ms": 1500,
            "end_ms": 2600,
        },
    )
    recording = attach_recording(call)
    return call, recording


def outcomes(call) -> list[tuple]:
    return [
        (e.data["outcome"], e.data.get("attempt"))
        for e in CallEvent.objects.filter(call=call, kind=CallEventKind.WEBHOOK).order_by("pk")
    ]


def test_finalize_delivers_a_signed_webhook_retried_after_a_failure(
    receiver_settings, eager_celery, client
):
    call, recording = a_finished_call()
    with Receiver(503, 200) as receiver:
        receiver_settings["CALL_WEBHOOK_URL"] = f"{receiver.url}/hooks/calls?src=va"
        finalize_call(call.pk)
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert second["path"] == "/hooks/calls?src=va"
    assert second["headers"]["X-VoiceAgents-Delivery-Attempt"] == "2"
    body = verify(second)
    assert verify(first) == body
    assert body["event"] == "call.ended"
    assert body["call"]["id"] == str(call.pk)
    assert body["call"]["status"] == "completed" and body["call"]["end_reason"] == "caller_hangup"
    assert body["call"]["agent"]["name"] == "Front desk"
    assert [(t["role"], t["text"]) for t in body["transcript"]] == [
        ("agent", "Hello, front desk."),
        ("caller", "Are you open today?"),
    ]
    link = body["recording_url"]
    assert link.startswith("https://agents.example.com/recordings/")
    # The link works without a login, and serves the recording.
    response = client.get(link.removeprefix("https://agents.example.com"))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == recording
    assert outcomes(call) == [("queued", None), ("failed", 1), ("delivered", 2)]


def test_the_call_page_tells_the_deliveries(receiver_settings, eager_celery, admin_client):
    call, _ = a_finished_call()
    with Receiver(503, 200) as receiver:
        receiver_settings["CALL_WEBHOOK_URL"] = receiver.url
        finalize_call(call.pk)
    page = admin_client.get(reverse("admin:voiceagents_call_change", args=[call.pk]))
    text = page.content.decode()
    assert "The call webhook was queued" in text
    assert (
        "The call webhook failed (try 1): the receiver answered 503; it will be tried again" in text
    )
    assert "The call webhook was delivered (try 2, answer 200)" in text


def test_finalize_twice_sends_one_webhook(receiver_settings, eager_celery):
    call, _ = a_finished_call()
    with Receiver(200) as receiver:
        receiver_settings["CALL_WEBHOOK_URL"] = receiver.url
        finalize_call(call.pk)
        finalize_call(call.pk)
    assert len(receiver.requests) == 1


def test_a_call_still_live_sends_no_webhook(receiver_settings, eager_celery):
    call = make_call(status=CallStatus.IN_PROGRESS)
    with Receiver(200) as receiver:
        receiver_settings["CALL_WEBHOOK_URL"] = receiver.url
        finalize_call(call.pk)
    assert receiver.requests == []


def test_retries_stop_after_the_configured_number(receiver_settings, caplog):
    receiver_settings["CALL_WEBHOOK_MAX_RETRIES"] = 2
    call, _ = a_finished_call()
    with Receiver(500) as receiver:
        receiver_settings["CALL_WEBHOOK_URL"] = receiver.url
        assert tasks.deliver_call_webhook.apply(args=[str(call.pk)]).get() == "failed"
    assert len(receiver.requests) == 3
    assert outcomes(call) == [("failed", 1), ("failed", 2), ("failed", 3)]
    assert "the call webhook failed for good" in caplog.text


@pytest.mark.parametrize("status", [400, 401, 404, 301])
def test_an_answer_that_retrying_cannot_fix_is_final(receiver_settings, status):
    call, _ = a_finished_call()
    with Receiver(status, 200) as receiver:
        receiver_settings["CALL_WEBHOOK_URL"] = receiver.url
        assert tasks.deliver_call_webhook.apply(args=[str(call.pk)]).get() == "failed"
    assert len(receiver.requests) == 1  # a redirect is not followed either


@pytest.mark.parametrize("status", [408, 429, 502])
def test_busy_or_broken_receivers_are_tried_again(receiver_settings, status):
    call, _ = a_finished_call()
    with Receiver(status, 204) as receiver:
        receiver_settings["CALL_WEBHOOK_URL"] = receiver.url
        assert tasks.deliver_call_webhook.apply(args=[str(call.pk)]).get() == "delivered"
    assert len(receiver.requests) == 2


def test_an_unreachable_receiver_is_tried_again(receiver_settings):
    receiver_settings["CALL_WEBHOOK_MAX_RETRIES"] = 1
    call, _ = a_finished_call()
    with Receiver() as receiver:
        url = receiver.url  # a port that nobody listens on once the receiver is gone
    receiver_settings["CALL_WEBHOOK_URL"] = url
    assert tasks.deliver_call_webhook.apply(args=[str(call.pk)]).get() == "failed"
    assert [o for o, _ in outcomes(call)] == ["failed", "failed"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.1.2.3", "169.254.169.254"])
def test_private_addresses_are_refused_unless_allowed(receiver_settings, host, caplog):
    receiver_settings["CALL_WEBHOOK_ALLOW_PRIVATE"] = False
    call, _ = a_finished_call()
    with Receiver(200) as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        receiver_settings["CALL_WEBHOOK_URL"] = f"http://{host}:{port}/hook"
        assert tasks.deliver_call_webhook.apply(args=[str(call.pk)]).get() == "refused"
    assert receiver.requests == []
    assert "not a public address" in caplog.text
    assert outcomes(call) == [("refused", 1)]


def test_the_name_is_resolved_once_and_kept_for_the_host_header(receiver_settings):
    call, _ = a_finished_call()
    with Receiver(200) as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        receiver_settings["CALL_WEBHOOK_URL"] = f"http://localhost:{port}/hook"
        assert tasks.deliver_call_webhook.apply(args=[str(call.pk)]).get() == "delivered"
    assert receiver.requests[0]["headers"]["Host"] == f"localhost:{port}"


def test_a_webhook_without_a_secret_is_never_sent(receiver_settings):
    receiver_settings["CALL_WEBHOOK_SECRET"] = ""
    call, _ = a_finished_call()
    with Receiver(200) as receiver:
        receiver_settings["CALL_WEBHOOK_URL"] = receiver.url
        assert tasks.deliver_call_webhook.apply(args=[str(call.pk)]).get() == "refused"
        with pytest.raises(SystemCheckError, match="voiceagents.E006"):
            call_command("check")
    assert receiver.requests == []


def test_recording_links_expire_and_cannot_be_forged(receiver_settings, client):
    call, _ = a_finished_call()
    token = signing.TimestampSigner(salt="voiceagents.recording-link").sign(str(call.pk))
    assert client.get(f"/recordings/{token}/").status_code == 200
    forged = signing.TimestampSigner(salt="another-salt").sign(str(call.pk))
    assert client.get(f"/recordings/{forged}/").status_code == 404
    assert client.get(f"/recordings/{token[:-2]}xx/").status_code == 404
    receiver_settings["RECORDING_LINK_TTL"] = 0
    time.sleep(1.1)
    assert client.get(f"/recordings/{token}/").status_code == 404


def test_a_recording_link_answers_byte_ranges(receiver_settings, client):
    call, recording = a_finished_call()
    token = signing.TimestampSigner(salt="voiceagents.recording-link").sign(str(call.pk))
    response = client.get(f"/recordings/{token}/", HTTP_RANGE="bytes=4-11")
    assert response.status_code == 206
    assert b"".join(response.streaming_content) == recording[4:12]
    assert response["Cache-Control"] == "private, no-store"
