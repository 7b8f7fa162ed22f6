"""Placing a Telnyx call: ``POST {TELNYX_API_URL}/calls`` (dial;
docs/carriers/telnyx.md#outbound-calls).

The dial carries everything an answered incoming call gets from ``streaming_start``: the media
stream to our consumer in the number's codec, with a single-use stream token and the call id in
``client_state``, so the stream opens as soon as the callee answers. Events come to our Call
Control webhook (``webhook_url``), where ``call.answered`` and ``call.hangup`` move the row
and ``call.machine[.premium].detection.ended`` gives the answering-machine verdict.
"""

from __future__ import annotations

import time

import httpx
from django.urls import reverse

from voiceagents.call import streamtokens
from voiceagents.exceptions import CarrierAPIError, ConfigurationError
from voiceagents.outbound import ring_timeout_s
from voiceagents.transport import tls

from ..base import public_url
from .codecs import StreamCodec
from .events import MODE_AGENT, ClientState
from .rest import TelnyxAccount, _vendor_message
from .webhooks import media_stream_url


def dial_body(call, number, agent, connection_id: str) -> dict:
    """The JSON body of the dial request for ``call``."""
    codec = StreamCodec.named((number.carrier_data or {}).get("codec"))
    state = ClientState(str(call.pk), MODE_AGENT, codec.name).encode()
    ring = ring_timeout_s()
    # The token must outlive the ringing: it is spent when the stream opens, after the answer.
    token = streamtokens.mint(call.pk, now=time.time() + ring)
    body = {
        "connection_id": connection_id,
        "to": call.to_number,
        "from": number.number,
        "timeout_secs": ring,
        "time_limit_secs": agent.max_call_duration + 60,
        "webhook_url": public_url(reverse("telephony:telnyx_webhook")),
        **codec.streaming_params(
            media_stream_url(), auth_token=token, client_state=state, call_id=str(call.pk)
        ),
    }
    options = call.outbound_options or {}
    if options.get("amd"):
        # detect_beep reports the greeting's end too, so a voicemail is spoken after the beep.
        voicemail = options.get("machine_action") == "voicemail"
        body["answering_machine_detection"] = "detect_beep" if voicemail else "detect"
    return body


def dial(call, number, agent) -> str:
    """Ask Telnyx to place ``call``; its ``call_control_id``. ``CarrierAPIError`` if refused."""
    credential = number.credential
    connection_id = (credential.data or {}).get("connection_id", "")
    if not connection_id:
        raise ConfigurationError(
            f"The Telnyx credential {credential.label!r} of {number.number} has no connection "
            "ID (the Call Control application): it cannot place calls."
        )
    account = TelnyxAccount.from_credential(credential)
    try:
        with tls.client(
            base_url=account.base_url,
            headers={"Authorization": f"Bearer {account.api_key}", "Accept": "application/json"},
            timeout=account.timeout,
        ) as client:
            response = client.post("/calls", json=dial_body(call, number, agent, connection_id))
    except httpx.HTTPError as err:
        raise CarrierAPIError(
            f"Telnyx could not be reached to place the call: {err.__class__.__name__}",
            vendor="telnyx",
        ) from err
    if response.is_error:
        raise CarrierAPIError(
            f"Telnyx refused the call: HTTP {response.status_code}: {_vendor_message(response)}",
            vendor="telnyx",
        )
    try:
        return str(response.json()["data"]["call_control_id"])
    except (ValueError, KeyError, TypeError) as err:
        raise CarrierAPIError("Telnyx's answer names no call_control_id", vendor="telnyx") from err
