"""The admin's "Test connection": one cheap authenticated request to a credential's vendor, for the admin.

Each vendor names its check in ``VendorSpec.connection_check``: a function taking the saved
``Credential`` and returning a ``ConnectionResult`` (built with ``probe``). The request goes where
calls go: the credential's API base URL, else the vendor's URL setting, else its public API. The
result carries the vendor's own error message and HTTP status, never the secret; the secret is
never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.utils.module_loading import import_string

from .conf import get_setting
from .exceptions import CredentialDecryptionError
from .transport import tls
from .vendors import vendors

logger = logging.getLogger(__name__)

#: Vendor messages are cut to this many characters.
MESSAGE_CHARS = 300


@dataclass(frozen=True)
class ConnectionResult:
    """What a connection check found: accepted or not, and what to tell the operator."""

    ok: bool
    message: str
    #: The vendor's HTTP status; None when no answer came (unreachable, timed out).
    status_code: int | None = None


def check_connection(credential) -> ConnectionResult:
    """Run the vendor's check on ``credential`` (saved, with a secret); never raises for the
    vendor's answer or a network failure."""
    spec = vendors.find(credential.vendor)
    if spec is None or not spec.connection_check:
        return ConnectionResult(False, f"There is no connection test for {credential.vendor}.")
    try:
        has_secret = bool(credential.secret)
    except CredentialDecryptionError as err:
        return ConnectionResult(False, str(err.args[0]))
    if not has_secret:
        return ConnectionResult(False, "The credential has no secret to test.")
    result = import_string(spec.connection_check)(credential)
    log = logger.info if result.ok else logger.warning
    log(
        "connection test of %s credential %s: %s (HTTP %s)",
        credential.vendor,
        credential.pk,
        "accepted" if result.ok else "failed",
        result.status_code,
    )
    return result


def probe(
    vendor: str,
    url: str,
    *,
    secret: str,
    accepted: Callable[[Any], str],
    **request: Any,
) -> ConnectionResult:
    """``GET url`` with the vendor's authentication in ``request`` (``headers``/``auth``).

    A 2xx answer is a success whose message is ``accepted(json_body)``; any other answer is a
    failure with the vendor's message and status; no answer is a failure saying why.
    """
    timeout = float(get_setting("HTTP_TIMEOUT", cast=float))
    try:
        with tls.client(timeout=timeout) as client:
            response = client.get(url, **request)
    except httpx.TimeoutException:
        return ConnectionResult(False, f"{vendor} did not answer {url} within {timeout:g} s.")
    except httpx.HTTPError as err:
        reason = redact(str(err) or err.__class__.__name__, secret)
        return ConnectionResult(False, f"Could not reach {vendor} at {url}: {reason}")
    status = response.status_code
    if 200 <= status < 300:
        try:
            body = response.json()
        except ValueError:
            body = None
        return ConnectionResult(True, redact(accepted(body), secret), status)
    message = redact(vendor_message(response), secret)
    return ConnectionResult(
        False, f"{vendor} refused the request (HTTP {status}): {message}", status
    )


def vendor_message(response: httpx.Response) -> str:
    """The human part of a vendor's error body, in each vendor's shape, else a short body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:MESSAGE_CHARS] or response.reason_phrase
    if isinstance(body, dict):
        for text in _messages(body):
            if text:
                return str(text)[:MESSAGE_CHARS]
    return str(body)[:MESSAGE_CHARS]


def _messages(body: dict):
    """Candidate messages, most specific first, from the error shapes vendors use."""
    error = body.get("error")
    if isinstance(error, dict):  # OpenAI: {"error": {"message", "type", "code"}}
        yield error.get("message")
    detail = body.get("detail")
    if isinstance(detail, dict):  # ElevenLabs: {"detail": {"status", "message"}}
        yield detail.get("message") or detail.get("status")
    elif isinstance(detail, str):
        yield detail
    errors = body.get("errors")
    if isinstance(errors, list):  # Telnyx: {"errors": [{"code", "title", "detail"}]}
        yield "; ".join(
            str(e.get("detail") or e.get("title")) for e in errors if isinstance(e, dict)
        )
    yield body.get("err_msg")  # Deepgram: {"err_code", "err_msg", "request_id"}
    yield body.get("message")  # Twilio: {"code", "message", "more_info", "status"}


def redact(text: str, secret: str) -> str:
    """``text`` without ``secret`` in it (a vendor may echo what it was sent)."""
    return text.replace(secret, "••••") if secret else text


def api_root(url: str) -> str:
    """The REST root of a service URL: http(s) for ws(s), the path cut before its ``v1``.

    ``wss://api.openai.com/v1/realtime`` → ``https://api.openai.com``;
    ``https://gateway.example.com/openai/v1/chat/completions`` → ``https://gateway.example.com/openai``.
    """
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    segments = parts.path.split("/")
    if "v1" in segments:
        segments = segments[: segments.index("v1")]
    return urlunsplit((scheme, parts.netloc, "/".join(segments).rstrip("/"), "", ""))


# -- the AI vendors' checks ------------------------------------------------------------------


def _service_root(registry, spec_id: str, credential) -> str:
    """The REST root of the calls a credential serves: its override, else the spec's setting."""
    return api_root(registry.get(spec_id).resolve_url(credential.api_base_url))


def check_openai(credential) -> ConnectionResult:
    """``GET /v1/models`` (Bearer): free, and every working key may list models."""
    from .providers import providers

    secret = credential.secret
    url = _service_root(providers, "openai_realtime", credential) + "/v1/models"

    def accepted(body) -> str:
        count = len(field_of(body, "data") or [])
        return f"OpenAI accepted the key ({count} models available)."

    return probe("OpenAI", url, secret=secret, accepted=accepted, headers=_bearer("Bearer", secret))


def check_elevenlabs(credential) -> ConnectionResult:
    """``GET /v1/user`` (``xi-api-key``); a key restricted without "User: read" is refused with
    ElevenLabs' own "missing permission" message."""
    from .providers import providers

    secret = credential.secret
    url = _service_root(providers, "elevenlabs_convai", credential) + "/v1/user"

    def accepted(body) -> str:
        tier = field_of(field_of(body, "subscription"), "tier")
        plan = f" (plan: {tier})" if tier else ""
        return f"ElevenLabs accepted the key{plan}."

    return probe(
        "ElevenLabs",
        url,
        secret=secret,
        accepted=accepted,
        headers={"xi-api-key": secret, "Accept": "application/json"},
    )


def check_deepgram(credential) -> ConnectionResult:
    """``GET /v1/projects`` (``Authorization: Token``): the projects the key belongs to."""
    from .providers.stages import stt_stages

    secret = credential.secret
    url = _service_root(stt_stages, "deepgram", credential) + "/v1/projects"

    def accepted(body) -> str:
        projects = field_of(body, "projects") or []
        names = ", ".join(str(field_of(p, "name")) for p in projects if field_of(p, "name"))
        shown = f" (projects: {names})" if names else ""
        return f"Deepgram accepted the key{shown}."

    return probe(
        "Deepgram", url, secret=secret, accepted=accepted, headers=_bearer("Token", secret)
    )


def _bearer(scheme: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"{scheme} {secret}", "Accept": "application/json"}


def field_of(body: Any, key: str) -> Any:
    """``body[key]`` when ``body`` is a JSON object, else None (vendors' bodies vary)."""
    return body.get(key) if isinstance(body, dict) else None
