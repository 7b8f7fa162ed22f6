"""Single-use tokens that authenticate a carrier's media stream for one call.

The voice webhook mints a token bound to the call id with a short expiry; the carrier hands it back
in the stream's ``start`` message (a TwiML ``<Parameter>``, or a Telnyx ``client_state``). The
consumer checks the HMAC and expiry without touching the database, then spends the token under
the call row's lock, in the transaction that starts the call, so it holds when the webhook and the
stream land on different server processes, and a replayed ``start`` is refused.

Format: ``<expiry unix seconds>.<random nonce>.<base64url HMAC-SHA256>``; the HMAC covers
``call_id|expiry|nonce`` under a key derived from ``SECRET_KEY`` with HKDF (its own "info", so it
shares nothing with the credential-encryption key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from django.conf import settings
from django.utils import timezone

from ..conf import get_setting
from ..crypto import derive_key
from ..exceptions import WebhookValidationFailure

HKDF_INFO = b"django-voiceagents media stream token v1"


def _keys() -> list[bytes]:
    """Signing key first, then keys from SECRET_KEY_FALLBACKS (tokens minted before a rotation)."""
    secrets_in_force = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [derive_key(s, HKDF_INFO) for s in secrets_in_force if s]


def _mac(key: bytes, call_id: str, expiry: int, nonce: str) -> str:
    digest = hmac.new(key, f"{call_id}|{expiry}|{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint(call_id, now: float | None = None) -> str:
    ttl = int(get_setting("STREAM_TOKEN_TTL", cast=int))
    expiry = int((now if now is not None else time.time()) + ttl)
    nonce = secrets.token_urlsafe(12)
    return f"{expiry}.{nonce}.{_mac(_keys()[0], str(call_id), expiry, nonce)}"


def check(call_id, token: str, now: float | None = None) -> None:
    """Raise WebhookValidationFailure unless ``token`` was minted for ``call_id`` and is unexpired.

    Pure computation, no database: the consumer calls it before anything else.
    """
    try:
        expiry_text, nonce, mac = token.split(".")
        expiry = int(expiry_text)
    except (AttributeError, ValueError):
        raise WebhookValidationFailure("malformed stream token", call_id=call_id) from None
    valid = any(hmac.compare_digest(mac, _mac(key, str(call_id), expiry, nonce)) for key in _keys())
    if not valid:
        raise WebhookValidationFailure("stream token does not match the call", call_id=call_id)
    if (now if now is not None else time.time()) > expiry:
        raise WebhookValidationFailure("stream token expired", call_id=call_id)


def spend(call) -> bool:
    """Mark ``call``'s token as used (not saved: the caller saves ``stream_token_used_at``); False
    if it was already spent (a replay).

    The caller holds the call's row lock (``select_for_update`` in a transaction): whichever
    process locks the row first wins, the database decides.
    """
    if call.stream_token_used_at is not None:
        return False
    call.stream_token_used_at = timezone.now()
    return True
