"""System checks for the carrier app."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.http.request import split_domain_port, validate_host

from voiceagents.conf import get_setting


@register()
def check_public_url(app_configs, **kwargs):
    public_url = get_setting("PUBLIC_URL")
    if not public_url:
        return [
            Warning(
                "No public base URL is configured, so Twilio and Telnyx cannot reach this server "
                "and webhook signatures cannot be checked against the URL the carrier signed.",
                hint="Set VOICEAGENTS['PUBLIC_URL'] (or the VOICEAGENTS_PUBLIC_URL environment "
                "variable) to the https address carriers reach, e.g. https://voice.example.com.",
                id="telephony.W001",
            )
        ]
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [
            Error(
                f"VOICEAGENTS['PUBLIC_URL'] = {public_url!r} is not an http(s) URL.",
                hint="Use the bare base address, e.g. https://voice.example.com",
                id="telephony.E001",
            )
        ]
    if parts.scheme != "https" and not settings.DEBUG:
        return [
            Error(
                "VOICEAGENTS['PUBLIC_URL'] must be https outside DEBUG: carriers only stream "
                "media to wss:// URLs and signed webhooks must not travel in clear text.",
                id="telephony.E002",
            )
        ]
    return []


@register()
def check_public_url_host_allowed(app_configs, **kwargs):
    """The carriers' webhooks come to PUBLIC_URL's host: Django must accept it (ALLOWED_HOSTS)."""
    public_url = get_setting("PUBLIC_URL")
    if not public_url:
        return []
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return []  # telephony.E001 says so
    domain, _ = split_domain_port(parts.netloc.rpartition("@")[2])
    # What HttpRequest.get_host() accepts: with DEBUG and no ALLOWED_HOSTS, local names only.
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if domain and validate_host(domain, allowed):
        return []
    return [
        Error(
            f"The host of VOICEAGENTS['PUBLIC_URL'] ({domain or parts.netloc!r}) is not in "
            "ALLOWED_HOSTS, so Django refuses every carrier webhook to it "
            "(DisallowedHost, HTTP 400) and no call can come in.",
            hint=f"Add {domain or parts.netloc!r} to ALLOWED_HOSTS.",
            id="telephony.E004",
        )
    ]


@register()
def check_telnyx_public_keys(app_configs, **kwargs):
    from .carriers.telnyx.signature import _setting_keys, is_valid_public_key

    try:
        keys = _setting_keys()
    except Exception as err:  # noqa: BLE001 - a malformed setting is what this check reports
        return [Error(f"TELNYX_PUBLIC_KEY cannot be read: {err}", id="telephony.E003")]
    bad = [index for index, key in enumerate(keys) if not is_valid_public_key(key.key)]
    if bad:
        return [
            Warning(
                f"{len(bad)} of the TELNYX_PUBLIC_KEY values are not Ed25519 public keys "
                "(base64 of 32 bytes) and are ignored when verifying Telnyx webhooks.",
                hint="Copy the key from the Telnyx portal (Keys & Credentials → Public Key).",
                id="telephony.W002",
            )
        ]
    return []
