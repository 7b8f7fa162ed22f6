"""Abuse limits at the webhooks (``telephony.limits``): requests per client IP, the client IP
taken from a proxy header only when that header is trusted, and the busy refusal of a new call
when the process runs as many calls as it may.

The media-stream side: tests/calls/test_call_limits.py (in process) and
tests/servers/test_abuse_limits.py (real daphne and uvicorn processes).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

from django.urls import reverse

from telephony import limits
from tests.fakes import telnyx as telnyx_fake
from tests.fakes import twilio as fake
from tests.telephony.test_telnyx_webhooks import (  # noqa: F401  (fixtures)
    _no_telnyx_settings_from_the_environment,
    api,
    telnyx_credential,
    telnyx_number,
)
from tests.telephony.test_telnyx_webhooks import send as send_telnyx
from voiceagents.models import Call, CallStatus

VOICE = reverse("telephony:twilio_voice")
TELNYX = reverse("telephony:telnyx_webhook")


def post_voice(client, ip: str, *, signed: bool = True, forwarded_for: str | None = None):
    """Twilio's voice webhook for a new call, from the socket peer ``ip``."""
    params = fake.voice_params(CallSid=fake.new_sid("CA"))
    headers = {}
    if signed:
        headers["X-Twilio-Signature"] = fake.sign(fake.PUBLIC_URL + VOICE, params, fake.AUTH_TOKEN)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return client.post(
        VOICE,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
        REMOTE_ADDR=ip,
    )


# -- the pieces ------------------------------------------------------------------------------------


def test_the_peer_address_is_the_client_unless_a_proxy_header_is_trusted(voiceagents_settings):
    forwarded = [("X-Forwarded-For", "198.51.100.1, 192.0.2.9")]
    assert limits.client_ip("10.0.0.2", forwarded) == "10.0.0.2"
    voiceagents_settings["TRUSTED_PROXY_HEADER"] = "x-forwarded-for"
    # The last entry is the one the proxy added; the first is whatever the client claimed.
    assert limits.client_ip("10.0.0.2", forwarded) == "192.0.2.9"
    assert limits.client_ip("10.0.0.2", []) == "10.0.0.2"


def test_the_rate_window_forgets_requests_older_than_a_minute():
    now = [1000.0]
    rate = limits.RequestRate(clock=lambda: now[0])
    assert [rate.allow("a", 2) for _ in range(3)] == [True, True, False]
    assert rate.allow("b", 2)  # another address has its own count
    now[0] += limits.RATE_WINDOW - 1
    assert not rate.allow("a", 2)
    now[0] += 1.5
    assert rate.allow("a", 2)


def test_call_slots_refuse_over_the_limit_and_are_given_back(voiceagents_settings):
    voiceagents_settings["MAX_CALLS_PER_PROCESS"] = 2
    assert [limits.start_call() for _ in range(3)] == [True, True, False]
    assert limits.at_capacity() and limits.live_calls() == 2
    limits.end_call()
    assert not limits.at_capacity()
    voiceagents_settings["MAX_CALLS_PER_PROCESS"] = 0  # off
    assert limits.start_call() and limits.start_call() and not limits.at_capacity()


# -- webhooks per client IP ------------------------------------------------------------------------


def test_a_flood_from_one_address_gets_429_before_any_signature_check(
    client, twilio_number, voiceagents_settings, caplog
):
    voiceagents_settings["WEBHOOK_RATE_PER_IP"] = 3
    with caplog.at_level(logging.WARNING, logger="telephony.security"):
        statuses = [post_voice(client, "203.0.113.7", signed=False).status_code for _ in range(4)]
        refused = post_voice(client, "203.0.113.7")  # even a genuine one, from that address
    assert statuses == [403, 403, 403, 429]
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert post_voice(client, "203.0.113.8").status_code == 200  # others are served
    assert Call.objects.count() == 1
    assert "from 203.0.113.7: over WEBHOOK_RATE_PER_IP" in caplog.text


def test_a_forged_forwarded_for_header_does_not_evade_the_limit(
    client, twilio_number, voiceagents_settings
):
    voiceagents_settings["WEBHOOK_RATE_PER_IP"] = 2
    statuses = [
        post_voice(client, "203.0.113.7", forwarded_for=f"198.51.100.{n}").status_code
        for n in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_count(
    client, twilio_number, voiceagents_settings
):
    voiceagents_settings["WEBHOOK_RATE_PER_IP"] = 2
    voiceagents_settings["TRUSTED_PROXY_HEADER"] = "X-Forwarded-For"
    proxy = "10.0.0.2"
    first = [post_voice(client, proxy, forwarded_for="198.51.100.1").status_code for _ in range(3)]
    other = post_voice(client, proxy, forwarded_for="203.0.113.50, 198.51.100.2").status_code
    assert (first, other) == ([200, 200, 429], 200)


def test_the_async_telnyx_webhook_is_limited_too(
    client,
    telnyx_number,  # noqa: F811 - the fixture
    api,  # noqa: F811
    voiceagents_settings,
):
    voiceagents_settings["WEBHOOK_RATE_PER_IP"] = 1
    first = send_telnyx(client, telnyx_fake.call_initiated(telnyx_fake.new_call_control_id()))
    second = send_telnyx(client, telnyx_fake.call_initiated(telnyx_fake.new_call_control_id()))
    assert (first.status_code, second.status_code) == (200, 429)
    assert Call.objects.count() == 1


# -- a new call when the process is at capacity ---------------------------------------------------


def test_twilio_gets_a_busy_reject_at_capacity_and_the_call_is_recorded(
    client, twilio_number, voiceagents_settings
):
    voiceagents_settings["MAX_CALLS_PER_PROCESS"] = 1
    assert limits.start_call()  # a live call of this process

    response = post_voice(client, "203.0.113.7")

    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert [(el.tag, el.attrib) for el in root] == [("Reject", {"reason": "busy"})]
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.FAILED, limits.AT_CAPACITY)
    assert "MAX_CALLS_PER_PROCESS" in call.error

    limits.end_call()  # that call ended: the next one is connected
    root = ET.fromstring(post_voice(client, "203.0.113.7").content)
    assert root.find("Connect/Stream") is not None


def test_telnyx_rejects_as_busy_at_capacity_and_the_call_is_recorded(
    client,
    telnyx_number,  # noqa: F811 - the fixture
    api,  # noqa: F811
    voiceagents_settings,
):
    voiceagents_settings["MAX_CALLS_PER_PROCESS"] = 1
    assert limits.start_call()
    ccid = telnyx_fake.new_call_control_id()

    assert send_telnyx(client, telnyx_fake.call_initiated(ccid)).status_code == 200

    assert api.actions() == ["reject"]
    (reject,) = api.of("reject")
    assert (reject.call_control_id, reject.body["cause"]) == (ccid, "USER_BUSY")
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.FAILED, limits.AT_CAPACITY)


def test_telnyx_unreachable_for_the_reject_is_retried_and_the_call_stays_live(
    client,
    telnyx_number,  # noqa: F811 - the fixture
    api,  # noqa: F811
    voiceagents_settings,
):
    voiceagents_settings["MAX_CALLS_PER_PROCESS"] = 1
    assert limits.start_call()
    body = telnyx_fake.call_initiated(telnyx_fake.new_call_control_id())
    api.drop("reject")
    assert send_telnyx(client, body).status_code == 503
    assert Call.objects.get().status == CallStatus.RINGING
    limits.end_call()  # capacity freed before Telnyx's retry: the call is taken after all
    assert send_telnyx(client, body).status_code == 200
    assert api.actions() == ["reject", "answer", "streaming_start"]
