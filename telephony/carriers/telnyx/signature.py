"""Telnyx webhook signatures: Ed25519 over ``telnyx-timestamp|raw body``
(docs/carriers/telnyx.md#webhook-signature).

Telnyx signs each webhook with its account's private key. We verify the exact request bytes (never
a re-serialised copy) against every public key we hold, so keys can be rotated (a credential may
list several, one per line) and several Telnyx accounts can share one server. The matching keys are
returned: the webhook then checks that the number a call is for belongs to an account whose key
signed the request.

The timestamp bounds replays: older than ``MAX_AGE_S`` (the SDK's 300 s) is refused, and so is one
more than ``MAX_FUTURE_S`` ahead, which a genuine webhook cannot be beyond clock skew.

This module never logs; callers log outcomes without the signature.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from voiceagents import configcache
from voiceagents.conf import get_setting
from voiceagents.exceptions import ConfigurationError, WebhookValidationFailure

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
#: Webhooks signed longer ago than this are refused (the Telnyx SDK's default tolerance).
MAX_AGE_S = 300
#: Clock skew allowed for timestamps in the future; anything further ahead is refused.
MAX_FUTURE_S = 60
#: An Ed25519 signature is 64 bytes.
SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class PublicKey:
    """One webhook public key we hold, and where it came from."""

    #: The base64 text of the raw 32-byte key, as the Telnyx portal shows it.
    key: str
    #: Primary key of the Telnyx credential that lists it; None for ``TELNYX_PUBLIC_KEY``.
    credential_id: int | None = None


@lru_cache(maxsize=64)
def _load(key: str) -> Ed25519PublicKey | None:
    try:
        raw = base64.b64decode(key, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        return None


def is_valid_public_key(key: str) -> bool:
    """True if ``key`` is the base64 of a 32-byte Ed25519 public key."""
    return _load(key.strip()) is not None


def _timestamp(value: str | None, now: float) -> int:
    if not value:
        raise WebhookValidationFailure(f"no {TIMESTAMP_HEADER} header", vendor="telnyx")
    try:
        stamp = int(value)
    except ValueError:
        raise WebhookValidationFailure(
            f"{TIMESTAMP_HEADER} is not an integer", vendor="telnyx"
        ) from None
    if now - stamp > MAX_AGE_S:
        raise WebhookValidationFailure(
            f"stale webhook: signed {int(now - stamp)} s ago (limit {MAX_AGE_S} s)", vendor="telnyx"
        )
    if stamp - now > MAX_FUTURE_S:
        raise WebhookValidationFailure(
            f"webhook timestamp {int(stamp - now)} s in the future (limit {MAX_FUTURE_S} s)",
            vendor="telnyx",
        )
    return stamp


def _signature(value: str | None) -> bytes:
    if not value:
        raise WebhookValidationFailure(f"no {SIGNATURE_HEADER} header", vendor="telnyx")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookValidationFailure(
            f"{SIGNATURE_HEADER} is not base64", vendor="telnyx"
        ) from None
    if len(raw) != SIGNATURE_BYTES:
        raise WebhookValidationFailure(f"{SIGNATURE_HEADER} is not 64 bytes", vendor="telnyx")
    return raw


def verify(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    keys: Sequence[PublicKey],
    *,
    now: float | None = None,
) -> list[PublicKey]:
    """The keys among ``keys`` that signed ``timestamp|body``; raise if none did or it is stale.

    ``signature`` and ``timestamp`` are the raw header values. Raises ``WebhookValidationFailure``
    for a missing, malformed, stale, future or non-matching signature.
    """
    _timestamp(timestamp, time.time() if now is None else now)
    raw_signature = _signature(signature)
    message = timestamp.encode("ascii") + b"|" + body  # type: ignore[union-attr]
    matched = []
    for candidate in keys:
        loaded = _load(candidate.key)
        if loaded is None:
            continue
        try:
            loaded.verify(raw_signature, message)
        except InvalidSignature:
            continue
        matched.append(candidate)
    if not matched:
        raise WebhookValidationFailure(
            f"{SIGNATURE_HEADER} does not match any of {len(keys)} public key(s)", vendor="telnyx"
        )
    return matched


# -- which keys -------------------------------------------------------------------------------


def _setting_keys() -> list[PublicKey]:
    value = get_setting("PUBLIC_KEY", vendor="telnyx", default=None, cast=list)
    if not value:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [PublicKey(str(v).strip()) for v in values if str(v).strip()]


def credential_public_keys(credential) -> list[str]:
    """The webhook keys a Telnyx credential lists, one per line of its data."""
    text = credential.data.get("webhook_public_key") or ""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _credential_keys(credentials: Iterable) -> list[PublicKey]:
    return [
        PublicKey(key, credential.pk)
        for credential in credentials
        for key in credential_public_keys(credential)
    ]


def _stored_keys() -> tuple[PublicKey, ...]:
    from voiceagents.models import Credential

    rows = Credential.objects.filter(vendor="telnyx", data__has_key="webhook_public_key")
    return tuple(_credential_keys(rows.order_by("-is_default", "pk")))


def webhook_public_keys() -> list[PublicKey]:
    """Every Telnyx webhook key we hold: each Telnyx credential's, then ``TELNYX_PUBLIC_KEY``.

    Sync: may query the database (the credentials' keys are kept in ``configcache``). Raises
    ``ConfigurationError`` when there is no valid key at all, so that the view answers 503
    instead of accepting what it cannot verify.
    """
    keys = [*configcache.get("telnyx_public_keys", _stored_keys), *_setting_keys()]
    valid = [k for k in keys if is_valid_public_key(k.key)]
    if not valid:
        raise ConfigurationError(
            "No Telnyx public key to verify webhooks with: paste the key from the Telnyx portal "
            "(Keys & Credentials → Public Key) into the Telnyx credential, or set "
            "VOICEAGENTS['TELNYX_PUBLIC_KEY'] or the TELNYX_PUBLIC_KEY environment variable"
        )
    return valid
