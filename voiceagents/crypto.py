"""Encryption at rest for provider and carrier secrets.

Secrets are Fernet tokens (AES-128-CBC + HMAC-SHA256, from ``cryptography``). Keys come from
``VOICEAGENTS["CREDENTIALS_KEY"]``: one Fernet key, or a list whose first key encrypts and whose
others still decrypt (rotation). Without it, keys are derived with HKDF-SHA256 from ``SECRET_KEY``
and then each of ``SECRET_KEY_FALLBACKS``, so rotating ``SECRET_KEY`` the Django way (old key moved
to the fallbacks) keeps every stored secret readable. ``manage.py voiceagents_rotate_credentials``
re-encrypts all rows with the current first key.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from .conf import get_setting
from .exceptions import ConfigurationError, CredentialDecryptionError

#: HKDF "info": binds derived keys to this purpose, so the same SECRET_KEY yields unrelated keys
#: for other uses (stream tokens use a different info string).
HKDF_INFO = b"django-voiceagents credential encryption v1"


@lru_cache(maxsize=32)
def derive_key(secret: str, info: bytes = HKDF_INFO) -> bytes:
    """A urlsafe-base64 32-byte key derived from ``secret`` with HKDF-SHA256.

    Kept per (secret, info): a call's set-up derives the same keys several times (its stream
    token, every stored secret it decrypts)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        secret.encode("utf-8")
    )
    return base64.urlsafe_b64encode(raw)


def configured_keys() -> list[bytes]:
    """The Fernet keys in force, newest (encrypting) first."""
    explicit = get_setting("CREDENTIALS_KEY", cast=list)
    if explicit:
        if isinstance(explicit, str | bytes):
            explicit = [explicit]
        return [k.encode("ascii") if isinstance(k, str) else k for k in explicit]
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [derive_key(s) for s in secrets if s]


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[bytes, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError) as err:
        raise ConfigurationError(
            "VOICEAGENTS['CREDENTIALS_KEY'] must be a Fernet key (32 url-safe base64-encoded "
            "bytes, e.g. from cryptography.fernet.Fernet.generate_key()) or a list of them"
        ) from err


def fernet() -> MultiFernet:
    keys = tuple(configured_keys())
    if not keys:
        raise ConfigurationError(
            "No credential encryption key: set SECRET_KEY or VOICEAGENTS['CREDENTIALS_KEY']"
        )
    return _fernet_for(keys)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as err:
        raise CredentialDecryptionError(
            "A stored secret cannot be decrypted with any configured key. Was SECRET_KEY or "
            "VOICEAGENTS['CREDENTIALS_KEY'] changed without keeping the old key as a fallback?"
        ) from err


def reencrypt(token: str) -> str:
    """The same secret encrypted under the current first key (for rotation)."""
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as err:
        raise CredentialDecryptionError("A stored secret cannot be decrypted for rotation") from err
