"""``X-Twilio-Signature``: computing and checking it on webhooks and the media-stream handshake.

The algorithm (docs/carriers/twilio.md#webhook-signature) is checked against
``twilio/request_validator.py`` 9.13.0: the exact URL Twilio requested, then for form posts each
parameter name (sorted) followed by each of its values (sorted), HMAC (SHA-1 with the account's
auth token; SHA-256 or SHA-1 with a SharedKey when ``X-Twilio-Webhooks-Signature-Settings`` names
one), standard base64. Twilio has varied on whether the default port is in the URL, so both forms
are tried. A non-form body is covered through the
``bodySHA256`` query parameter instead.

Secrets are passed as lists so several can be accepted at once (key rotation). This module never
logs; callers log the outcome without the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from voiceagents import configcache, dbthread
from voiceagents.conf import get_setting
from voiceagents.exceptions import (
    ConfigurationError,
    CredentialDecryptionError,
    WebhookValidationFailure,
)

from ..base import verification_enabled, websocket_url

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
_DIGESTS = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}

Params = Mapping[str, Any] | None


@dataclass(frozen=True)
class SigningScheme:
    """The hash and the candidate secrets that a request must have been signed with."""

    algorithm: str
    #: Candidate secrets, any of which may match (rotation). Kept out of ``repr()``.
    secrets: tuple[str, ...] = field(repr=False)
    #: For error messages: "auth token" or "shared key 'id'".
    source: str = "auth token"


def _values(params: Params) -> list[tuple[str, list[str]]]:
    if not params:
        return []
    if hasattr(params, "lists"):  # Django QueryDict / MultiValueDict
        return [(name, list(values)) for name, values in params.lists()]
    return [
        (name, [value] if isinstance(value, str) else list(value)) for name, value in params.items()
    ]


def compute_signature(url: str, params: Params, secret: str, algorithm: str = HMAC_SHA1) -> str:
    """The ``X-Twilio-Signature`` value for ``url`` and form ``params`` signed with ``secret``.

    ``params`` maps names to a value or a list of values; duplicates are ignored, as the SDK does.
    """
    digest = _DIGESTS[algorithm.upper()]
    merged: dict[str, set[str]] = {}
    for name, values in _values(params):
        merged.setdefault(name, set()).update(values)
    text = url + "".join(name + value for name in sorted(merged) for value in sorted(merged[name]))
    mac = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def url_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with the scheme's default port.

    The SDK tries the last two because Twilio has signed both; keeping the URL as given also
    covers ``wss://`` URLs, for which the SDK would add ``:80``.
    """
    parts = urlsplit(url)
    bare = parts.netloc if parts.port is None else parts.netloc.rsplit(":", 1)[0]
    default_port = 443 if parts.scheme in ("https", "wss") else 80
    variants = [
        url,
        urlunsplit(parts._replace(netloc=bare)),
        urlunsplit(parts._replace(netloc=f"{bare}:{parts.port or default_port}")),
    ]
    return list(dict.fromkeys(variants))


def _equal(a: str, b: str) -> bool:
    # Bytes, because hmac.compare_digest refuses non-ASCII str and the header is attacker-chosen.
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def signature_matches(
    url: str,
    params: Params,
    signature: str | None,
    secrets: Iterable[str],
    algorithm: str = HMAC_SHA1,
) -> bool:
    """True if ``signature`` is valid for ``url`` + ``params`` under any of ``secrets``."""
    if not signature:
        return False
    return any(
        _equal(compute_signature(variant, params, secret, algorithm), signature)
        for secret in secrets
        if secret
        for variant in url_variants(url)
    )


def body_hash_matches(url: str, body: bytes) -> bool:
    """True if the URL's ``bodySHA256`` query parameter is the hex SHA-256 of ``body``."""
    claimed = parse_qs(urlsplit(url).query).get("bodySHA256")
    return bool(claimed) and _equal(hashlib.sha256(body).hexdigest(), claimed[0])


def verify_request(
    url: str, params: Params, body: bytes | None, signature: str | None, scheme: SigningScheme
) -> None:
    """Raise ``WebhookValidationFailure`` unless the request is signed by ``scheme``.

    Form posts pass their fields as ``params`` and ``body=None``. Any other body must be covered by
    the JSON-body variant: a ``bodySHA256`` in the signed URL, and no params appended.
    """
    if not signature:
        raise WebhookValidationFailure(f"no {SIGNATURE_HEADER} header", vendor="twilio")
    if body and not body_hash_matches(url, body):
        raise WebhookValidationFailure(
            "body is not covered by a matching bodySHA256", vendor="twilio"
        )
    if not signature_matches(
        url, None if body else params, signature, scheme.secrets, scheme.algorithm
    ):
        raise WebhookValidationFailure(
            f"{SIGNATURE_HEADER} does not match ({scheme.algorithm}, {scheme.source})",
            vendor="twilio",
        )


# -- which secrets ---------------------------------------------------------------------------


def parse_signature_settings(header: str | None) -> tuple[str | None, str | None]:
    """``(key id, algorithm)`` from ``X-Twilio-Webhooks-Signature-Settings``; Nones when absent."""
    found: dict[str, str] = {}
    for part in (header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and value.strip():
            found[name.strip().lower()] = value.strip()
    return found.get("key"), found.get("algorithm")


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v]


def _setting_tokens() -> list[str]:
    return _as_list(get_setting("AUTH_TOKEN", vendor="twilio", default=None, cast=list))


def _credential_tokens(credentials: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    """``(account SID, auth token)`` of each credential whose token can be decrypted."""
    tokens = []
    for credential in credentials:
        try:
            secret = credential.secret
        except CredentialDecryptionError:
            logger.error("Twilio credential %s cannot be decrypted; skipped", credential.pk)
            continue
        if secret:
            tokens.append((str((credential.data or {}).get("account_sid") or ""), secret))
    return tuple(tokens)


def _twilio_credentials():
    from voiceagents.models import Credential

    return Credential.objects.filter(vendor="twilio").order_by("-is_default", "pk")


#: The ``configcache`` key of the stored tokens. One entry for every account: a deployment holds
#: a handful, and the account SID a request names is chosen by whoever sent it.
_STORED_TOKENS = "twilio_auth_tokens"


def _stored_tokens() -> tuple[tuple[str, str], ...]:
    """``(account SID, auth token)`` of every Twilio credential, default first (cached)."""
    return configcache.get(_STORED_TOKENS, lambda: _credential_tokens(_twilio_credentials()))


def _with_settings(tokens: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*tokens, *_setting_tokens()]))


def auth_tokens_for(account_sid: str | None) -> list[str]:
    """Auth tokens that may sign a webhook of ``account_sid`` (sync; may query the database).

    Every Twilio credential with that account SID (several during a rotation), then
    ``VOICEAGENTS['TWILIO_AUTH_TOKEN']`` (a token or a list of tokens).
    """
    stored = _stored_tokens() if account_sid else ()
    return _with_settings(token for account, token in stored if account == account_sid)


#: Most auth tokens tried on a request that names no account (a JSON body without an
#: ``AccountSid``): each costs three HMACs, and a deployment holds a handful.
MAX_TOKENS_TRIED = 50


def json_body_account_sid(body: bytes) -> str | None:
    """The account SID a JSON webhook body names (``AccountSid``, ``account_sid`` or
    ``accountSid``, at the top level), or None. Only selects which tokens to try."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, Mapping):
        return None
    for name in ("AccountSid", "account_sid", "accountSid"):
        value = data.get(name)
        if isinstance(value, str) and value.startswith("AC"):
            return value[:64]
    return None


def auth_tokens_for_json(body: bytes) -> list[str]:
    """Auth tokens that may sign a JSON-body webhook (sync; may query the database).

    Those of the account the body names, as for form posts; when it names none, every token we
    hold, at most ``MAX_TOKENS_TRIED`` (the signature then picks the right one).
    """
    account_sid = json_body_account_sid(body)
    if account_sid:
        return auth_tokens_for(account_sid)
    tokens = all_auth_tokens()
    if len(tokens) > MAX_TOKENS_TRIED:
        logger.warning(
            "A Twilio JSON webhook names no account: only %d of the %d auth tokens are tried",
            MAX_TOKENS_TRIED,
            len(tokens),
        )
    return tokens[:MAX_TOKENS_TRIED]


def all_auth_tokens() -> list[str]:
    """Every Twilio auth token we hold: for the media-stream handshake, which names no account
    (sync; may query the database)."""
    return _with_settings(token for _, token in _stored_tokens())


def cached_auth_tokens() -> list[str] | None:
    """``all_auth_tokens()`` when this process has them cached, else None. Never queries: for
    the event loop."""
    stored = configcache.peek(_STORED_TOKENS)
    if stored is configcache.MISS:
        return None
    return _with_settings(token for _, token in stored)


def shared_keys() -> dict[str, str]:
    """``VOICEAGENTS['TWILIO_SHARED_KEYS']``: SharedKey id → secret, for Webhooks Rules."""
    value = get_setting("SHARED_KEYS", vendor="twilio", default=None)
    if isinstance(value, str):  # from the environment: JSON
        try:
            value = json.loads(value)
        except ValueError as err:
            raise ConfigurationError("TWILIO_SHARED_KEYS must be a JSON object") from err
    if value is not None and not isinstance(value, Mapping):
        raise ConfigurationError("VOICEAGENTS['TWILIO_SHARED_KEYS'] must map key ids to secrets")
    return dict(value or {})


def signing_scheme(
    settings_header: str | None,
    auth_tokens: Callable[[], Sequence[str]],
    every_token: Callable[[], Sequence[str]] = all_auth_tokens,
) -> SigningScheme:
    """The scheme a request claims, with the secrets to check it against.

    Without an ``algorithm=`` in the settings header (or without the header) Twilio signs with the
    auth token and HMAC-SHA1; ``auth_tokens`` is called only then (and ``every_token``, all the
    tokens we hold, when it gave none). Otherwise the header must name a known algorithm and a
    key id from ``TWILIO_SHARED_KEYS``. Raises ``WebhookValidationFailure`` for claims we refuse
    and ``ConfigurationError`` when we hold no secret at all.
    """
    key_id, algorithm = parse_signature_settings(settings_header)
    if algorithm is None:
        tokens = tuple(auth_tokens())
        if not tokens and every_token():
            # We hold tokens, just none for the account this request names: a forgery or a
            # misrouted webhook, refused with 403 (a 503 + ERROR would let anyone spam our logs).
            raise WebhookValidationFailure("no Twilio credential for this account", vendor="twilio")
        if not tokens:
            raise ConfigurationError(
                "No Twilio auth token to verify the signature: add a Twilio credential with the "
                "request's account SID, or set VOICEAGENTS['TWILIO_AUTH_TOKEN'] or the "
                "TWILIO_AUTH_TOKEN environment variable"
            )
        return SigningScheme(HMAC_SHA1, tokens)
    if algorithm.upper() not in _DIGESTS:
        raise WebhookValidationFailure(
            f"unsupported signature algorithm {algorithm[:40]!r}", vendor="twilio"
        )
    if not key_id:
        raise WebhookValidationFailure(f"{SETTINGS_HEADER} names no key", vendor="twilio")
    keys = shared_keys()
    if not keys:
        raise ConfigurationError(
            "A Twilio webhook is signed with a SharedKey but none is configured: set "
            "VOICEAGENTS['TWILIO_SHARED_KEYS'] = {'<key id>': '<secret>'} or the TWILIO_SHARED_KEYS "
            "environment variable (JSON)"
        )
    if key_id not in keys:
        raise WebhookValidationFailure(f"unknown SharedKey id {key_id[:60]!r}", vendor="twilio")
    return SigningScheme(algorithm.upper(), (keys[key_id],), source=f"shared key {key_id!r}")


# -- media-stream handshake ------------------------------------------------------------------


def verify_stream_handshake(
    path: str,
    signature: str | None,
    secrets: Sequence[str],
    *,
    algorithm: str = HMAC_SHA1,
    query_string: str = "",
    base_url: str | None = None,
) -> bool:
    """True if the WebSocket upgrade's ``X-Twilio-Signature`` is valid.

    The rules: docs/carriers/twilio.md#stream-handshake-signature.

    Twilio signs the ``wss://`` URL it connected to with nothing appended. We rebuild it from
    ``PUBLIC_URL`` (https→wss) and ``path`` (``scope["path"]``), never from proxy-rewritten scope
    values. Our TwiML puts no query string on the stream URL; if one arrives anyway, both
    canonicalisations seen in the wild are tried (left in the URL, or moved into the params as
    Twilio's own helper does). Pure: no settings are read when ``base_url`` is given.
    """
    url = websocket_url(path, base_url)
    if not query_string:
        return signature_matches(url, None, signature, secrets, algorithm)
    params = parse_qs(query_string, keep_blank_values=True)
    return signature_matches(f"{url}?{query_string}", None, signature, secrets, algorithm) or (
        signature_matches(url, params, signature, secrets, algorithm)
    )


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def acheck_stream_handshake(scope: Mapping[str, Any]) -> None:
    """Check a Twilio media-stream ``websocket.connect`` scope; for the consumer's ``connect()``.

    Returns when the handshake is authentic (or checks are disabled); raises
    ``WebhookValidationFailure`` when it is not and ``ConfigurationError`` when we hold no token.
    Tries every Twilio auth token we hold: the handshake names no account. When this process has
    them cached (``voiceagents.configcache``) it all runs here, on the event loop; only a miss
    goes to the database thread.
    """
    if not verification_enabled():
        return
    settings_header = _header(scope, SETTINGS_HEADER.lower().encode())
    tokens = cached_auth_tokens()
    if tokens is None:
        scheme = await dbthread.run(signing_scheme, settings_header, all_auth_tokens)
    else:
        held = lambda: tokens  # noqa: E731
        scheme = signing_scheme(settings_header, held, held)
    ok = verify_stream_handshake(
        scope["path"],
        _header(scope, SIGNATURE_HEADER.lower().encode()),
        scheme.secrets,
        algorithm=scheme.algorithm,
        query_string=scope.get("query_string", b"").decode("latin-1"),
    )
    if not ok:
        raise WebhookValidationFailure(
            "media-stream handshake signature does not match", vendor="twilio"
        )
