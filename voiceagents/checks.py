"""System checks that guard risky django-voiceagents configuration."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.files.storage import DefaultStorage, FileSystemStorage, storages
from django.urls import Resolver404, resolve
from django.utils.module_loading import import_string

from . import crypto
from .conf import DEFAULTS, get_setting
from .exceptions import ConfigurationError


@register()
def check_settings_shape(app_configs, **kwargs):
    value = getattr(settings, "VOICEAGENTS", {})
    if not isinstance(value, dict):
        return [Error("settings.VOICEAGENTS must be a dict.", id="voiceagents.E001")]
    return []


@register()
def check_numeric_settings(app_configs, **kwargs):
    """Every app-wide setting whose default is a number holds a finite number >= 0.

    They are read on the call path (timeouts, limits, the configuration cache's lifetime): a
    typo there would otherwise fail each call as it starts, not the server as it starts.
    """
    errors = []
    for name, default in DEFAULTS.items():
        if isinstance(default, bool) or not isinstance(default, int | float):
            continue
        integer = isinstance(default, int)
        try:
            value = get_setting(name, cast=int if integer else float)
        except ConfigurationError as err:  # an environment variable that does not parse
            errors.append(Error(str(err), id="voiceagents.E007"))
            continue
        if _non_negative_number(value, integer=integer) is None:
            kind = "a whole number" if integer else "a number"
            errors.append(
                Error(
                    f"VOICEAGENTS['{name}'] must be {kind} >= 0, not {value!r}.",
                    hint=f"The default is {default!r}.",
                    id="voiceagents.E007",
                )
            )
    return errors


def _non_negative_number(value, *, integer: bool) -> float | None:
    """``value`` as the call path reads it (``int()`` or ``float()``), or None if that fails or
    gives a negative or non-finite number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(int(value) if integer and isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


@register(Tags.security)
def check_signature_verification(app_configs, **kwargs):
    try:
        verify = get_setting("VERIFY_SIGNATURES", cast=bool)
    except ConfigurationError as err:
        return [Error(str(err), id="voiceagents.E001")]
    if not verify and not settings.DEBUG:
        return [
            Warning(
                "Webhook and media-stream signature checks are disabled while DEBUG is off.",
                hint="Anyone who finds your URLs can place calls on your provider accounts. "
                "Remove VOICEAGENTS['VERIFY_SIGNATURES'] = False outside development.",
                id="voiceagents.W001",
            )
        ]
    return []


@register(Tags.security)
def check_credentials_key(app_configs, **kwargs):
    try:
        crypto.fernet()
    except ConfigurationError as err:
        return [
            Error(
                str(err),
                hint="Generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'",
                id="voiceagents.E002",
            )
        ]
    return []


@register()
def check_reply_handlers(app_configs, **kwargs):
    paths = get_setting("REPLY_HANDLERS") or {}
    if not isinstance(paths, dict):
        return [
            Error(
                "VOICEAGENTS['REPLY_HANDLERS'] must map names to dotted paths.",
                id="voiceagents.E003",
            )
        ]
    errors = []
    for name, path in paths.items():
        try:
            handler = import_string(path)
        except ImportError as err:
            errors.append(
                Error(
                    f"Reply handler {name!r}: cannot import {path!r} ({err}).",
                    id="voiceagents.E003",
                )
            )
            continue
        if not callable(handler):
            errors.append(
                Error(f"Reply handler {name!r}: {path!r} is not callable.", id="voiceagents.E003")
            )
    return errors


@register(deploy=True)
def check_channel_layer_for_production(app_configs, **kwargs):
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    backend = layers.get("default", {}).get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The in-memory channel layer only reaches consumers in the same process.",
                hint="Hang-up, transfer and live monitoring from the admin or Celery cannot reach "
                "calls in other processes. Use channels_redis (set REDIS_URL in the example "
                "project) when you run more than one ASGI process.",
                id="voiceagents.W002",
            )
        ]
    return []


@register()
def check_registries(app_configs, **kwargs):
    """Every provider, stage and carrier names a registered vendor; runtimes can be imported."""
    from .carriers import carriers
    from .providers import STAGES, providers
    from .vendors import vendors

    errors = []
    users = [("provider", spec) for spec in providers]
    users += [(f"{stage} stage", spec) for stage, registry in STAGES.items() for spec in registry]
    users += [("carrier", spec) for spec in carriers]
    for kind, spec in users:
        if spec.vendor and spec.vendor not in vendors:
            errors.append(
                Error(
                    f"The {kind} {spec.id!r} uses vendor {spec.vendor!r}, which is not registered.",
                    hint="Register a VendorSpec for it in voiceagents.vendors.vendors.",
                    id="voiceagents.E004",
                )
            )
        # A provider's or stage's runtime class, a carrier's media consumer and dialer.
        runtimes = [getattr(spec, "runtime", "") or getattr(spec, "consumer", "")]
        runtimes.append(getattr(spec, "dialer", ""))
        for runtime in filter(None, runtimes):
            try:
                import_string(runtime)
            except ImportError as err:
                errors.append(
                    Error(
                        f"The {kind} {spec.id!r}: cannot import its runtime {runtime!r} ({err}).",
                        id="voiceagents.E005",
                    )
                )
    return errors


#: Where a recording would be stored (``recording_upload_to``'s shape); only its URL is computed.
SAMPLE_RECORDING = "voiceagents/recordings/2000/01/01/sample.wav"
#: Views that serve files to anyone: what ``django.conf.urls.static.static()`` installs.
PUBLIC_FILE_VIEWS = ("django.views.static.serve", "django.contrib.staticfiles.views.serve")


def recording_storage():
    """The storage that ``Call.recording`` saves to (the default storage unless changed)."""
    from .models import Call

    storage = Call._meta.get_field("recording").storage
    return storages["default"] if isinstance(storage, DefaultStorage) else storage


@register(Tags.security)
def check_recordings_outside_project(app_configs, **kwargs):
    """Recordings written into the project's directory end up in backups, images and git."""
    storage = recording_storage()
    if not isinstance(storage, FileSystemStorage):
        return []
    location = Path(storage.location).resolve()  # no MEDIA_ROOT: the working directory
    base_dir = getattr(settings, "BASE_DIR", None)
    projects = {Path.cwd().resolve(), *([Path(base_dir).resolve()] if base_dir else [])}
    inside = next((p for p in projects if location.is_relative_to(p)), None)
    if inside is None:
        return []
    return [
        Warning(
            f"Call recordings would be stored in {location}, inside the project directory "
            f"{inside}: where they can be committed to git, copied into images and backups.",
            hint="Set MEDIA_ROOT to a directory outside the project that only the server can "
            "read (e.g. /var/lib/<project>/media), or give STORAGES['default'] a private "
            "storage (a bucket without public access).",
            id="voiceagents.W003",
        )
    ]


@register(Tags.security)
def check_recordings_not_served_publicly(app_configs, **kwargs):
    """Recordings are served by the admin's permission-checked view, never as public media."""
    try:
        url = recording_storage().url(SAMPLE_RECORDING)
    except Exception:  # noqa: BLE001 - a storage without URLs serves nothing
        return []
    parts = urlsplit(url)
    public_host = urlsplit(get_setting("PUBLIC_URL") or "").hostname
    if parts.scheme and parts.hostname != public_host:
        return []  # another server's URL: its access rules are not ours to see
    try:
        match = resolve(parts.path if parts.path.startswith("/") else "/" + parts.path)
    except Resolver404:
        return []
    view = f"{match.func.__module__}.{match.func.__name__}"
    if view not in PUBLIC_FILE_VIEWS:
        return []
    return [
        Warning(
            f"Call recordings are served to anyone who has their URL: {parts.path} is "
            f"answered by {view} (MEDIA_URL served by the project's URLconf).",
            hint="Remove static(settings.MEDIA_URL, ...) from your urls.py: staff listen to "
            "recordings on the call's admin page, which checks their permission.",
            id="voiceagents.W004",
        )
    ]


@register(Tags.security)
def check_call_webhook_signed(app_configs, **kwargs):
    """The customer webhook is only ever sent signed: a URL without a secret is a mistake."""
    if get_setting("CALL_WEBHOOK_URL") and not get_setting("CALL_WEBHOOK_SECRET"):
        return [
            Error(
                "VOICEAGENTS['CALL_WEBHOOK_URL'] is set but CALL_WEBHOOK_SECRET is not: call "
                "webhooks are signed with it, and none will be sent without it.",
                hint="Set VOICEAGENTS['CALL_WEBHOOK_SECRET'] (or VOICEAGENTS_CALL_WEBHOOK_SECRET) "
                "to a long random string and give it to the receiver.",
                id="voiceagents.E006",
            )
        ]
    return []
