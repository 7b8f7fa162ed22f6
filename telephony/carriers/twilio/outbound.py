"""Placing a Twilio call: ``POST {TWILIO_API_URL}/2010-04-01/Accounts/{AccountSid}/Calls.json``
(docs/carriers/twilio.md#outbound-calls).

The form names our voice webhook as ``Url`` (Twilio fetches the same media-stream TwiML as for an
incoming call once the callee answers), our status callback for every progress event and, with
answering-machine detection, runs AMD asynchronously (``AsyncAmd=true``) so the stream starts at
once and the verdict arrives at ``AsyncAmdStatusCallback`` while the agent holds its greeting.
Every URL carries the call's id in its query: Twilio signs the whole URL, and the callbacks find
the row even before the REST response has named the CallSid.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx
from django.urls import reverse

from voiceagents.conf import get_setting
from voiceagents.exceptions import CarrierAPIError, ConfigurationError
from voiceagents.outbound import amd_timeout_s, ring_timeout_s
from voiceagents.transport import tls

from ..base import public_url
from .account import api_url

logger = logging.getLogger(__name__)

#: Progress events Twilio posts to the status callback.
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
#: Twilio's limits on ``MachineDetectionTimeout`` (seconds).
AMD_TIMEOUT_RANGE = (3, 59)


def _callback(name: str, call) -> str:
    return public_url(reverse(f"telephony:{name}"), f"call_id={call.pk}")


def call_form(call, number, agent) -> list[tuple[str, str]]:
    """The ``Calls.json`` form fields for ``call`` (a list: ``StatusCallbackEvent`` repeats)."""
    form = [
        ("To", call.to_number),
        ("From", number.number),
        ("Url", _callback("twilio_voice", call)),
        ("Method", "POST"),
        ("StatusCallback", _callback("twilio_status", call)),
        ("StatusCallbackMethod", "POST"),
        *(("StatusCallbackEvent", event) for event in STATUS_EVENTS),
        ("Timeout", str(ring_timeout_s())),
        # Twilio's own limit, a minute past the agent's: the session ends the call first.
        ("TimeLimit", str(agent.max_call_duration + 60)),
    ]
    options = call.outbound_options or {}
    if options.get("amd"):
        low, high = AMD_TIMEOUT_RANGE
        # DetectMessageEnd waits for the greeting's end (the beep) before it says "machine", so a
        # voicemail is spoken onto the recording; Enable answers sooner when we only hang up.
        detection = "DetectMessageEnd" if options.get("machine_action") == "voicemail" else "Enable"
        form += [
            ("MachineDetection", detection),
            ("MachineDetectionTimeout", str(min(max(int(amd_timeout_s()), low), high))),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", _callback("twilio_amd", call)),
            ("AsyncAmdStatusCallbackMethod", "POST"),
        ]
    return form


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('message') or response.reason_phrase} (Twilio error {body.get('code')})"
    except (ValueError, AttributeError):
        return response.text[:300] or response.reason_phrase


def dial(call, number, agent) -> str:
    """Ask Twilio to place ``call`` from ``number``; the CallSid. ``CarrierAPIError`` if refused."""
    credential = number.credential
    account_sid = (credential.data or {}).get("account_sid", "")
    secret = credential.secret
    if not account_sid or not secret:
        raise ConfigurationError(
            f"The Twilio credential {credential.label!r} of {number.number} has no account SID "
            "or auth token: it cannot place calls."
        )
    url = f"{api_url(credential)}/2010-04-01/Accounts/{quote(account_sid)}/Calls.json"
    timeout = float(get_setting("HTTP_TIMEOUT", cast=float))
    data: dict[str, list[str]] = {}
    for name, value in call_form(call, number, agent):
        data.setdefault(name, []).append(value)
    try:
        with tls.client(timeout=timeout) as client:
            response = client.post(url, data=data, auth=(account_sid, secret))
    except httpx.HTTPError as err:
        raise CarrierAPIError(
            f"Twilio could not be reached to place the call: {err.__class__.__name__}",
            vendor="twilio",
        ) from err
    if response.is_error:
        raise CarrierAPIError(
            f"Twilio refused the call: HTTP {response.status_code}: {_error_message(response)}",
            vendor="twilio",
        )
    try:
        sid = str(response.json()["sid"])
    except (ValueError, KeyError, TypeError) as err:
        raise CarrierAPIError("Twilio's answer names no call SID", vendor="twilio") from err
    return sid
