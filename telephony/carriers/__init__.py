"""Carriers: the phone companies whose calls we answer (Twilio, Telnyx), registered with voiceagents.

Each carrier lives in its own package (``telephony.carriers.twilio``) with its webhook views,
answer documents and media-stream consumer. This module registers, for each, the vendor spec of
its account credential (what ``Credential.data`` holds) and the carrier spec (what
``PhoneNumber.carrier_data`` holds) in the ``voiceagents`` registries. It is imported by
``TelephonyConfig.ready()`` and stays cheap: nothing here imports views, models or vendor code.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from voiceagents.carriers import CarrierSpec, carriers
from voiceagents.datafields import DataField
from voiceagents.vendors import VendorSpec, vendors

validate_twilio_account_sid = RegexValidator(
    re.compile(r"^AC[0-9a-f]{32}$"),
    _("Enter the account SID as Twilio shows it: 'AC' and 32 hex digits."),
    code="invalid_account_sid",
)

#: An API key SID or the account SID ('SK'/'AC' and 32 hex digits), pasted as the secret.
_TWILIO_SID = re.compile(r"(SK|AC)[0-9a-fA-F]{32}")
_TWILIO_AUTH_TOKEN = re.compile(r"[0-9a-fA-F]{32}")


def validate_twilio_auth_token(value: str) -> None:
    """A Twilio credential's secret is the account's auth token (32 hex digits): Twilio signs
    webhooks with it, so an API key ('SK…') and its secret cannot stand in for it."""
    sid = _TWILIO_SID.fullmatch(value)
    if sid and sid.group(1) == "SK":
        raise ValidationError(
            _(
                "This is an API key SID ('SK…'). Twilio signs its webhooks with the account's "
                "auth token: paste the auth token (32 hex digits, under Account Info in the "
                "Twilio Console)."
            ),
            code="api_key_sid",
        )
    if sid:
        raise ValidationError(
            _(
                "This is the account SID ('AC…'): put it in Account SID, and the auth token "
                "(32 hex digits) here."
            ),
            code="account_sid",
        )
    if not _TWILIO_AUTH_TOKEN.fullmatch(value):
        raise ValidationError(
            _(
                "Enter the auth token as Twilio shows it: 32 hex digits (0-9, a-f). This one "
                "is %(length)s characters long."
            ),
            params={"length": len(value)},
            code="invalid_auth_token",
        )


def validate_telnyx_api_key(value: str) -> None:
    """Telnyx API v2 keys start with 'KEY'; v1 keys, which Bearer requests cannot use, do not."""
    if not value.startswith("KEY"):
        raise ValidationError(
            _(
                "Enter a Telnyx API v2 key: it starts with 'KEY' (Mission Control portal → "
                "API Keys). Webhook public keys and v1 API keys do not work here."
            ),
            code="invalid_api_key",
        )


validate_telnyx_connection_id = RegexValidator(
    re.compile(r"^[0-9]{1,32}$"),
    _("Enter the connection ID as Telnyx shows it: digits only."),
    code="invalid_connection_id",
)


def validate_telnyx_public_keys(value: str) -> None:
    """Each non-blank line is the base64 of a 32-byte Ed25519 public key (as Telnyx shows it)."""
    from .telnyx.signature import is_valid_public_key

    lines = [line.strip() for line in value.splitlines() if line.strip()]
    if not all(is_valid_public_key(line) for line in lines):
        raise ValidationError(
            _("Each line must be a base64 Ed25519 public key (32 bytes), as Telnyx shows it."),
            code="invalid_public_key",
        )


TWILIO_VENDOR = VendorSpec(
    id="twilio",
    name="Twilio",
    secret_help=_("The account's auth token (32 hex digits)."),
    secret_validators=(validate_twilio_auth_token,),
    connection_check="telephony.carriers.twilio.account.check_connection",
    data_fields=(
        DataField(
            key="account_sid",
            label=_("Account SID"),
            help_text=_("The account SID, e.g. 'AC0123…'. Webhooks are matched to it."),
            required=True,
            validators=(validate_twilio_account_sid,),
        ),
    ),
)

TELNYX_VENDOR = VendorSpec(
    id="telnyx",
    name="Telnyx",
    secret_help=_("The Telnyx API v2 key (starts 'KEY')."),
    secret_validators=(validate_telnyx_api_key,),
    connection_check="telephony.carriers.telnyx.account.check_connection",
    data_fields=(
        DataField(
            key="connection_id",
            label=_("Connection ID"),
            help_text=_("The Call Control application (connection) ID."),
            validators=(validate_telnyx_connection_id,),
        ),
        DataField(
            key="webhook_public_key",
            label=_("Webhook public key"),
            help_text=_(
                "The base64 Ed25519 public key from the Mission Control portal. During a key "
                "rotation, put one key per line; every listed key is accepted."
            ),
            validators=(validate_telnyx_public_keys,),
            multiline=True,
        ),
    ),
)

TWILIO = CarrierSpec(
    id="twilio",
    name="Twilio",
    vendor="twilio",
    consumer="telephony.carriers.twilio.media.TwilioMediaConsumer",
    dialer="telephony.carriers.twilio.outbound.dial",
)

TELNYX = CarrierSpec(
    id="telnyx",
    name="Telnyx",
    vendor="telnyx",
    number_fields=(
        DataField(
            key="codec",
            label=_("Media codec"),
            help_text=_(
                "The audio format of the call's media stream. L16 at 16 kHz carries wideband "
                "speech and is converted for the voice provider; PCMU at 8 kHz is phone quality "
                "and passes through to OpenAI Realtime unchanged."
            ),
            choices=(
                ("L16", _("L16: 16-bit linear PCM, 16 kHz (wideband)")),
                ("PCMU", _("PCMU: G.711 µ-law, 8 kHz (narrowband)")),
            ),
            default="L16",
        ),
    ),
    consumer="telephony.carriers.telnyx.media.TelnyxMediaConsumer",
    dialer="telephony.carriers.telnyx.outbound.dial",
)

# The staff's browser as the phone (an admin test call): no account, so no vendor.
BROWSER = CarrierSpec(
    id="browser",
    name="Browser test call",
    vendor="",
    consumer="telephony.carriers.browser.media.BrowserMediaConsumer",
)

vendors.register(TWILIO_VENDOR)
vendors.register(TELNYX_VENDOR)
carriers.register(TWILIO)
carriers.register(TELNYX)
carriers.register(BROWSER)
