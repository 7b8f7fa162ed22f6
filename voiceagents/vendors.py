"""The vendor registry: whose accounts a ``Credential`` can hold, and what each one stores.

A vendor is an account that issues a secret: an AI vendor (OpenAI, ElevenLabs, Deepgram) or a
carrier (Twilio, Telnyx). Providers, pipeline stages and carriers name the vendor whose credential
they use. Carrier vendors are registered by the telephony app, next to their carrier specs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from .datafields import DataField
from .registry import Registry


@dataclass(frozen=True)
class VendorSpec:
    #: snake_case id, stored in ``Credential.vendor`` and used as the settings prefix.
    id: str
    #: Display name in the vendor's own spelling.
    name: str
    #: What the credential's secret is for this vendor, shown in the admin.
    secret_help: str = ""
    #: Extra values a credential of this vendor stores in ``Credential.data``.
    data_fields: tuple[DataField, ...] = ()
    #: Run on a secret typed in the admin; each raises ``ValidationError`` saying the shape the
    #: vendor's secrets have. Only shapes the vendor documents: a check must never refuse a real
    #: key, so vendors whose keys change shape (or go through gateways) have none.
    secret_validators: tuple[Callable[[str], None], ...] = ()
    #: ``warning(secret, api_base_url)``: a caution about a secret that is unusual but may still
    #: work ('' for none). The admin shows it after saving instead of refusing the secret.
    secret_warning: Callable[[str, str], str] | None = None
    #: Dotted path of ``check(credential) -> voiceagents.connection.ConnectionResult``: one cheap
    #: authenticated request to the vendor (the admin's "Test connection"). Empty: no check.
    connection_check: str = ""


vendors: Registry[VendorSpec] = Registry("vendor")


def vendor_choices() -> list[tuple[str, str]]:
    """Choices of ``Credential.vendor`` (a callable, so new vendors need no migration)."""
    return vendors.choices()


def openai_key_warning(secret: str, api_base_url: str) -> str:
    """OpenAI's keys start 'sk-' (project, service-account and admin keys too); a gateway set as
    the API base URL may issue keys of its own shape, so this is a caution, never a refusal."""
    if secret.startswith("sk-") or api_base_url:
        return ""
    return _(
        "OpenAI API keys start with 'sk-' and this secret does not. It was saved; use "
        "“Test connection” to check it, or paste the whole key again."
    )


vendors.register(
    VendorSpec(
        id="openai",
        name="OpenAI",
        secret_help=_("An API key ('sk-…')."),
        secret_warning=openai_key_warning,
        connection_check="voiceagents.connection.check_openai",
    )
)
vendors.register(
    VendorSpec(
        id="elevenlabs",
        name="ElevenLabs",
        secret_help=_("An API key."),
        connection_check="voiceagents.connection.check_elevenlabs",
    )
)
vendors.register(
    VendorSpec(
        id="deepgram",
        name="Deepgram",
        secret_help=_("An API key."),
        connection_check="voiceagents.connection.check_deepgram",
    )
)
