"""Callers' numbers stored as keyed hashes (``VOICEAGENTS['HASH_CALLER_NUMBERS']``).

The hash is an HMAC-SHA256 of the number in E.164 under a key derived from ``SECRET_KEY`` (its
own HKDF "info"), so calls from the same number still group together while the number itself
cannot be read back, nor found by hashing every number without the key. The last two digits
stay readable for the operator: ``h:3f9a2b7c1d4e5f60a1b2:00``. Rotating ``SECRET_KEY`` starts
new groups.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from django.conf import settings

from .conf import get_setting
from .crypto import derive_key

HKDF_INFO = b"django-voiceagents caller number hash v1"
HASHED = re.compile(r"^h:[0-9a-f]{20}:\d{0,2}$")


def hash_number(number: str) -> str:
    """``number``'s keyed hash with its last two digits; a hash or an empty value unchanged."""
    if not number or HASHED.match(number):
        return number
    digits = re.sub(r"\D", "", number)
    canonical = f"+{digits}" if digits else number
    key = derive_key(settings.SECRET_KEY, HKDF_INFO)
    mac = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()[:20]
    return f"h:{mac}:{digits[-2:]}"


def hashing_enabled() -> bool:
    return bool(get_setting("HASH_CALLER_NUMBERS", cast=bool))


def hash_caller_number(sender, instance, raw=False, **kwargs) -> None:
    """``pre_save`` of ``Call``: an inbound call's caller number is hashed before it is stored."""
    from .models import Direction

    if raw or not hashing_enabled() or instance.direction != Direction.INBOUND:
        return
    instance.from_number = hash_number(instance.from_number)
