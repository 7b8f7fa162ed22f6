"""The vendor registry: whose accounts a ``Credential`` can hold, and what each one stores.

A vendor is an account that issues a secret: an AI vendor (OpenAI, ElevenLabs, Deepgram) or a
carrier (Twilio, Telnyx). Providers, pipeline stages and carriers name the vendor whose credential
they use. Carrier vendors are registered by the telephony app, next to their carrier specs.
"""

from __future__ import annotations

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


vendors: Registry[VendorSpec] = Registry("vendor")


def vendor_choices() -> list[tuple[str, str]]:
    """Choices of ``Credential.vendor`` (a callable, so new vendors need no migration)."""
    return vendors.choices()


vendors.register(VendorSpec(id="openai", name="OpenAI", secret_help=_("An API key ('sk-…').")))
vendors.register(VendorSpec(id="elevenlabs", name="ElevenLabs", secret_help=_("An API key.")))
vendors.register(VendorSpec(id="deepgram", name="Deepgram", secret_help=_("An API key.")))
