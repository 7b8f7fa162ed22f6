"""A fake Twilio for tests: signed webhook requests and media-stream frames.

Signatures come from the ``twilio`` package's own ``RequestValidator``, never from our
``telephony.carriers.twilio.signature``, so a shared misunderstanding of the algorithm cannot make
both sides agree. Frame builders return the JSON dicts of
docs/carriers/twilio.md#media-stream-frames (``json.dumps`` them, or pass them to
``WebsocketCommunicator.send_json_to``).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from urllib.parse import urlencode

from django.utils.datastructures import MultiValueDict
from twilio.request_validator import RequestValidator

#: Matches ``VOICEAGENTS['PUBLIC_URL']`` in tests/settings.py.
PUBLIC_URL = "https://voice.example.test"
#: Where our TwiML points the media stream (written out here on purpose, not imported).
MEDIA_PATH = "/telephony/twilio/media/"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
OTHER_AUTH_TOKEN = "fedcba9876543210fedcba9876543210"
CALLER = "+15551230000"
OUR_NUMBER = "+15559870000"

Params = Mapping[str, str | list[str]]


def new_sid(prefix: str) -> str:
    """A fresh Twilio-style SID: two letters and 32 hex digits (``CA…``, ``MZ…``)."""
    return prefix + secrets.token_hex(16)


def sign(
    url: str, params: Params | None = None, token: str = AUTH_TOKEN, algorithm: str | None = None
) -> str:
    """``X-Twilio-Signature`` for ``url`` and form ``params``, computed by the twilio SDK."""
    multi = MultiValueDict(
        {k: v if isinstance(v, list) else [v] for k, v in (params or {}).items()}
    )
    return RequestValidator(token).compute_signature(url, multi, algorithm)


def voice_params(**overrides: str) -> dict[str, str]:
    """Fields of an incoming-call webhook (docs/carriers/twilio.md#voice-webhook), fresh CallSid."""
    params = {
        "CallSid": new_sid("CA"),
        "AccountSid": ACCOUNT_SID,
        "From": CALLER,
        "To": OUR_NUMBER,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "FromCountry": "US",
        "ToCountry": "US",
    }
    params.update(overrides)
    return params


def status_params(
    call_sid: str, status: str, sequence: int | None, **overrides: str
) -> dict[str, str]:
    """Fields of a call status callback (docs/carriers/twilio.md#status-callbacks)."""
    params = voice_params(
        CallSid=call_sid, CallStatus=status, CallbackSource="call-progress-events"
    )
    params["Timestamp"] = "Thu, 26 Nov 2026 10:00:00 +0000"
    if sequence is not None:
        params["SequenceNumber"] = str(sequence)
    params.update(overrides)
    return params


def signed_post(
    client,
    path: str,
    params: Params,
    *,
    token: str | None = AUTH_TOKEN,
    public_url: str = PUBLIC_URL,
    algorithm: str | None = None,
    headers: Mapping[str, str] | None = None,
):
    """POST ``params`` form-encoded to ``path`` as Twilio would, signed for ``public_url + path``.

    ``token=None`` sends no signature at all.
    """
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["X-Twilio-Signature"] = sign(public_url + path, params, token, algorithm)
    return client.post(
        path,
        data=urlencode(params, doseq=True),
        content_type="application/x-www-form-urlencoded",
        headers=all_headers,
    )


def handshake_headers(
    token: str = AUTH_TOKEN, path: str = MEDIA_PATH, public_url: str = PUBLIC_URL
) -> list[tuple[bytes, bytes]]:
    """ASGI headers of Twilio's WebSocket upgrade, with the signature of the ``wss://`` URL."""
    wss_url = public_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + path
    return [
        (b"host", public_url.split("://", 1)[1].encode()),
        (b"x-twilio-signature", sign(wss_url, None, token).encode()),
    ]


# -- media-stream frames (docs/carriers/twilio.md#media-stream-frames) ---------------------------


def connected() -> dict:
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(
    stream_sid: str,
    call_sid: str,
    custom_parameters: Mapping[str, str] | None = None,
    *,
    sequence_number: int = 1,
    account_sid: str = ACCOUNT_SID,
) -> dict:
    return {
        "event": "start",
        "sequenceNumber": str(sequence_number),
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": dict(custom_parameters or {}),
        },
        "streamSid": stream_sid,
    }


def media(
    stream_sid: str,
    payload: bytes = b"\xff" * 160,
    *,
    chunk: int = 1,
    timestamp_ms: int = 0,
    sequence_number: int = 2,
    track: str = "inbound",
) -> dict:
    """Caller audio: ``payload`` is raw µ-law (160 bytes of 0xFF = 20 ms of silence)."""
    return {
        "event": "media",
        "sequenceNumber": str(sequence_number),
        "media": {
            "track": track,
            "chunk": str(chunk),
            "timestamp": str(timestamp_ms),
            "payload": base64.b64encode(payload).decode("ascii"),
        },
        "streamSid": stream_sid,
    }


def mark(stream_sid: str, name: str, *, sequence_number: int = 3) -> dict:
    """Twilio's echo of a mark we sent, once the audio before it has played."""
    return {
        "event": "mark",
        "sequenceNumber": str(sequence_number),
        "streamSid": stream_sid,
        "mark": {"name": name},
    }


def dtmf(stream_sid: str, digit: str, *, sequence_number: int = 4) -> dict:
    return {
        "event": "dtmf",
        "streamSid": stream_sid,
        "sequenceNumber": str(sequence_number),
        "dtmf": {"track": "inbound_track", "digit": digit},
    }


def stop(
    stream_sid: str, call_sid: str, *, sequence_number: int = 5, account_sid: str = ACCOUNT_SID
) -> dict:
    return {
        "event": "stop",
        "sequenceNumber": str(sequence_number),
        "stop": {"accountSid": account_sid, "callSid": call_sid},
        "streamSid": stream_sid,
    }
