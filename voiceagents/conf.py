"""The one place where django-voiceagents reads its settings.

Lookup order for ``get_setting(name, vendor=...)``: an explicit value (a credential row, a
keyword argument) → ``settings.VOICEAGENTS[KEY]`` → an environment variable → the default →
``ConfigurationError`` naming every place that was looked at.

Vendor keys are ``<VENDOR>_<NAME>`` (``OPENAI_API_KEY``, ``TWILIO_API_URL``) and their environment
variable has the same name, as the vendors' own docs use. App-wide keys have no prefix in the
dict (``STREAM_TOKEN_TTL``) and read ``VOICEAGENTS_<KEY>`` from the environment.

Settings are read when an object is built (a view, a call session, a task), never at import,
so ``override_settings`` works in tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.conf import settings

from .exceptions import ConfigurationError

SETTINGS_NAME = "VOICEAGENTS"


class _Unset:
    def __repr__(self):
        return "<unset>"


UNSET: Any = _Unset()

#: Defaults of app-wide settings. Provider and stage URLs, models and voices are defaulted by
#: their registry spec (``ServiceSpec.resolve_url``); carrier API URLs where their client is built.
DEFAULTS: dict[str, Any] = {
    "PUBLIC_URL": None,
    "VERIFY_SIGNATURES": True,
    "CREDENTIALS_KEY": None,
    "REPLY_HANDLERS": {},
    # Tools agents may be given besides the built-in ones: {"name": "dotted.path"} (voiceagents.tools).
    "TOOLS": {},
    "TOOL_TIMEOUT": 10.0,
    "STREAM_TOKEN_TTL": 60,
    # Seconds a process trusts the numbers, agents and credentials it cached for call set-ups
    # (voiceagents.configcache): an edit made elsewhere reaches new calls within them; 0: no cache.
    "CONFIG_CACHE_SECONDS": 2.0,
    # Seconds a media stream may stay open without a valid ``start`` (telephony.media).
    "STREAM_START_TIMEOUT": 5.0,
    "HTTP_TIMEOUT": 10.0,
    "CONNECT_TIMEOUT": 10.0,
    "HEALTH_CHECK_TIMEOUT": 2.0,
    # Seconds a carrier webhook may take before the carrier gets an apology or a 503 (Twilio
    # gives up at 15 s); patter_site keeps the database pool's timeout below it.
    "WEBHOOK_DEADLINE": 8.0,
    "STALE_CALL_GRACE": 300,
    # Seconds between a server process's heartbeats while it has live calls, and of silence
    # after which its calls are closed as lost (voiceagents.call.ownership).
    "HEARTBEAT_INTERVAL": 5.0,
    "HEARTBEAT_TIMEOUT": 30.0,
    "WEBHOOK_EVENT_RETENTION": 7 * 24 * 3600,
    # Provider resilience (voiceagents.call.reconnect).
    "PROVIDER_MAX_FAILURES": 3,
    "PROVIDER_RECONNECT_TIMEOUT": 2.0,
    "RECONNECT_FILLER_MS": 600,
    "RECONNECT_LINE": "Sorry, the line dropped for a moment. I'm back.",
    "OPENAI_REALTIME_MAX_SESSION": 55 * 60,
    # False interruptions (voiceagents.call.false_barge): a barge-in with no caller words within
    # this many ms was noise, and the agent picks up where it was cut; 0 turns that off.
    "FALSE_INTERRUPTION_WINDOW_MS": 2000,
    # Speakerphone echo (voiceagents.audio.echo): caller frames that only repeat the agent's
    # own recent audio reach neither the provider nor the local voice detector. The delay is
    # the longest round trip plus room echo searched for, after the pacer's lead.
    # Off by default: it costs a third more CPU per call-minute while the agent talks (measured,
    # docs/interruptions.md); turn it on for lines whose callers use speakerphones.
    "ECHO_SUPPRESSION": False,
    "ECHO_MAX_DELAY_MS": 400,
    # Privacy (docs/privacy.md): full phone numbers in logs, hashed caller numbers, retention.
    "LOG_PII": False,
    "HASH_CALLER_NUMBERS": False,
    "RETENTION_DAYS": None,
    # Abuse limits (telephony.limits); 0 turns one off.
    "WEBHOOK_RATE_PER_IP": 600,
    "MEDIA_CONNECTIONS_PER_IP": 100,
    "MAX_CALLS_PER_PROCESS": 50,
    # Seconds a stopping server process waits for its live calls to end (telephony.draining).
    "DRAIN_TIMEOUT": 3600.0,
    "TRUSTED_PROXY_HEADER": None,
    # Rates for the calls' cost estimates, merged over voiceagents.costs.DEFAULT_RATES.
    "COST_RATES": {},
    # Times finalize_call's follow-up asks the carrier for its record and price (1, 2, 4... min
    # apart; 0: never ask).
    "CARRIER_RECORD_TRIES": 5,
    # The customer webhook after each call (voiceagents.call_webhook, docs/call-webhook.md).
    "CALL_WEBHOOK_URL": None,
    "CALL_WEBHOOK_SECRET": None,
    "CALL_WEBHOOK_TIMEOUT": 10.0,
    "CALL_WEBHOOK_MAX_RETRIES": 8,
    "CALL_WEBHOOK_RETRY_DELAY": 10.0,
    "CALL_WEBHOOK_ALLOW_PRIVATE": False,
    # Seconds a recording link in the webhook works (voiceagents.recording_links).
    "RECORDING_LINK_TTL": 7 * 24 * 3600,
    # Numbers an operator may transfer any live call to, besides its agent's transfer allowlist
    # (voiceagents.call.control): a closed list, so a stolen admin session cannot dial anywhere.
    "TRANSFER_ALLOWED_NUMBERS": [],
    # Outbound calls (voiceagents.outbound). Seconds the agent holds its first message for the
    # answering-machine verdict before it speaks as to a person (also the carrier's AMD limit);
    # seconds the callee's phone rings before the carrier gives up.
    "OUTBOUND_AMD_TIMEOUT": 30.0,
    "OUTBOUND_RING_TIMEOUT": 30,
}


def setting_key(name: str, vendor: str | None = None) -> str:
    """The key in the VOICEAGENTS dict: ``OPENAI_API_KEY`` for ``("API_KEY", "openai")``."""
    name = name.upper()
    return f"{vendor.upper()}_{name}" if vendor else name


def env_var_name(name: str, vendor: str | None = None) -> str:
    key = setting_key(name, vendor)
    return key if vendor else f"{SETTINGS_NAME}_{key}"


def _cast_env(raw: str, cast: Callable[[str], Any] | None) -> Any:
    if cast is None:
        return raw
    if cast is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    return cast(raw)


def get_setting(
    name: str,
    vendor: str | None = None,
    default: Any = UNSET,
    *,
    value: Any = UNSET,
    cast: Callable[[str], Any] | None = None,
) -> Any:
    """Return a django-voiceagents setting.

    ``value`` is an explicit value that wins when it is not None/empty (a credential row's field,
    a keyword argument). ``cast`` converts a value read from the environment (``int``, ``float``,
    ``bool``, ``list`` for comma-separated values). ``default`` falls back to ``DEFAULTS`` for
    app-wide keys.
    """
    if value is not UNSET and value not in (None, ""):
        return value
    key = setting_key(name, vendor)
    configured = getattr(settings, SETTINGS_NAME, None) or {}
    if not isinstance(configured, dict):
        raise ConfigurationError(f"settings.{SETTINGS_NAME} must be a dict")
    if key in configured:
        return configured[key]
    env_name = env_var_name(name, vendor)
    if env_name in os.environ:
        raw = os.environ[env_name]
        if cast is list:
            return [item.strip() for item in raw.split(",") if item.strip()]
        try:
            return _cast_env(raw, cast)
        except ValueError as err:
            raise ConfigurationError(f"Environment variable {env_name} is invalid: {err}") from err
    if default is not UNSET:
        return default
    if not vendor and key in DEFAULTS:
        return DEFAULTS[key]
    raise ConfigurationError(
        f"Missing setting: set {SETTINGS_NAME}[{key!r}] or the {env_name} environment variable"
    )
