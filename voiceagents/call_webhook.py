"""The customer webhook: after each call, its record is POSTed to ``CALL_WEBHOOK_URL``, signed.

The body is JSON: the call (numbers as stored, status, end reason, times, metrics), its transcript
and a signed, expiring link to its recording (``voiceagents.recording_links``). The signature
lets the receiver check that the body came from us and is fresh::

    X-VoiceAgents-Signature: t=1764790000,v1=<hex HMAC-SHA256 of "1764790000." + body>

with ``CALL_WEBHOOK_SECRET`` as the key (docs/call-webhook.md shows the check in Python).

The URL is the operator's, but its host name resolves at delivery time, so it is checked then:
every address it resolves to must be public (no loopback, private, link-local, multicast or
reserved address: a webhook must not become a way to reach the metadata service or the
database), unless ``CALL_WEBHOOK_ALLOW_PRIVATE`` is on. The connection then goes to the address
that was checked (the name is not resolved twice, so a DNS answer that changes in between cannot
slip a private address in), with the host name kept for the ``Host`` header and TLS. Redirects
are not followed, for the same reason.

Delivery is retried by the Celery task (``voiceagents.tasks.deliver_call_webhook``) when the
receiver cannot be reached, answers 5xx, 408 or 429; any other answer is final.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.core.serializers.json import DjangoJSONEncoder

from .conf import get_setting
from .models import Call, CallEvent, CallEventKind
from .recording_links import recording_url
from .transport import tls

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-VoiceAgents-Signature"
#: Answers after which trying again may help.
RETRYABLE_STATUSES = frozenset({408, 429})


class DeliveryRefused(Exception):
    """The webhook must not be sent (an address that is not allowed, no secret): final."""


class DeliveryFailed(Exception):
    """The receiver could not take the webhook this time: ``retryable`` says if trying later may
    help."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Delivery:
    status_code: int
    elapsed_ms: float


# -- the body ------------------------------------------------------------------------------------


def payload(call: Call) -> dict:
    """What the receiver gets about ``call``."""
    agent = call.agent
    return {
        "event": "call.ended",
        "call": {
            "id": str(call.pk),
            "direction": call.direction,
            "carrier": call.carrier,
            "carrier_call_id": call.carrier_call_id,
            "from": call.from_number,
            "to": call.to_number,
            "agent": {"id": agent.pk, "name": agent.name} if agent is not None else None,
            "provider": call.provider,
            "status": call.status,
            "end_reason": call.end_reason,
            "error": call.error,
            "created_at": call.created_at,
            "answered_at": call.answered_at,
            "ended_at": call.ended_at,
            "duration_s": call.duration.total_seconds() if call.duration is not None else None,
            "metrics": call.metrics,
            "cost": call.cost,
        },
        "transcript": [
            {
                "seq": entry.seq,
                "role": entry.role,
                "text": entry.text,
                "start_ms": entry.start_ms,
                "end_ms": entry.end_ms,
                "interrupted": entry.interrupted,
            }
            for entry in call.transcript.order_by("seq")
        ],
        "recording_url": recording_url(call),
    }


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """The ``X-VoiceAgents-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# -- where it may go -----------------------------------------------------------------------------


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve_destination(url: str, *, allow_private: bool) -> list[str]:
    """The addresses to connect to for ``url``, in order: its host resolved once and checked.

    Raises :class:`DeliveryRefused` for a URL that is not http(s) or a host with an address that
    is not public (unless ``allow_private``), :class:`DeliveryFailed` when the name does not
    resolve (retryable: DNS may be down for a moment).
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise DeliveryRefused(f"CALL_WEBHOOK_URL must be an http(s) URL, not {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise DeliveryFailed(f"cannot resolve {parts.hostname}: {err}", retryable=True) from err
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private:
        refused = [str(a) for a in addresses if not _allowed(a)]
        if refused:
            raise DeliveryRefused(
                f"{parts.hostname} resolves to {', '.join(refused)}, which is not a public "
                "address (set CALL_WEBHOOK_ALLOW_PRIVATE to deliver to it)"
            )
    return list(dict.fromkeys(str(a) for a in addresses))


def _pinned(url: str, address: str) -> tuple[str, str, dict]:
    """``url`` with its host replaced by ``address``, the Host header, and the TLS server name."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    host_header = parts.hostname + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), host_header, extensions


# -- sending -------------------------------------------------------------------------------------


def deliver(call_id, *, attempt: int = 1) -> Delivery:
    """POST the webhook of call ``call_id`` once; raises ``DeliveryRefused``/``DeliveryFailed``."""
    url = get_setting("CALL_WEBHOOK_URL")
    if not url:
        raise DeliveryRefused("CALL_WEBHOOK_URL is not set")
    secret = get_setting("CALL_WEBHOOK_SECRET")
    if not secret:
        raise DeliveryRefused("CALL_WEBHOOK_SECRET is not set: webhooks are only sent signed")
    call = Call.objects.select_related("agent").filter(pk=call_id).first()
    if call is None:
        raise DeliveryRefused(f"no call {call_id}")
    allow_private = get_setting("CALL_WEBHOOK_ALLOW_PRIVATE", cast=bool)
    addresses = resolve_destination(url, allow_private=allow_private)
    body = json.dumps(payload(call), cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "django-voiceagents call webhook",
        SIGNATURE_HEADER: signature(body, secret, int(time.time())),
        "X-VoiceAgents-Delivery-Attempt": str(attempt),
    }
    timeout = float(get_setting("CALL_WEBHOOK_TIMEOUT", cast=float))
    started = time.monotonic()
    with tls.client(timeout=timeout, follow_redirects=False) as client:
        for n, address in enumerate(addresses, 1):
            target, host_header, extensions = _pinned(url, address)
            try:
                response = client.post(
                    target,
                    content=body,
                    headers={**headers, "Host": host_header},
                    extensions=extensions,
                )
                break
            except httpx.ConnectError as err:
                if n == len(addresses):  # else the host's next address
                    raise DeliveryFailed(f"cannot connect: {err}", retryable=True) from err
            except httpx.HTTPError as err:
                raise DeliveryFailed(f"{type(err).__name__}: {err}", retryable=True) from err
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    status = response.status_code
    if 200 <= status < 300:
        return Delivery(status, elapsed_ms)
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    raise DeliveryFailed(f"the receiver answered {status}", retryable=retryable)


def record(call_id, outcome: str, **data) -> None:
    """Note a delivery's outcome on the call's timeline (what the operator sees in the admin)."""
    CallEvent.objects.create(
        call_id=call_id, kind=CallEventKind.WEBHOOK, data={"outcome": outcome, **data}
    )


def retry_delay(retries: int) -> float:
    """Seconds before try ``retries + 2``: ``CALL_WEBHOOK_RETRY_DELAY`` (10 s), doubled each time,
    at most 10 minutes."""
    base = float(get_setting("CALL_WEBHOOK_RETRY_DELAY", cast=float))
    return min(600.0, base * 2**retries)
