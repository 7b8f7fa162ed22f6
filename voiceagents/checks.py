"""System checks that guard risky django-voiceagents configuration."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from . import crypto
from .conf import get_setting
from .exceptions import ConfigurationError


@register()
def check_settings_shape(app_configs, **kwargs):
    value = getattr(settings, "VOICEAGENTS", {})
    if not isinstance(value, dict):
        return [Error("settings.VOICEAGENTS must be a dict.", id="voiceagents.E001")]
    return []


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
        # A provider's or stage's runtime class, a carrier's media consumer.
        runtime = getattr(spec, "runtime", "") or getattr(spec, "consumer", "")
        if runtime:
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
