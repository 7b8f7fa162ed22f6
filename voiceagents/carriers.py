"""The carrier registry: which phone companies numbers and calls may belong to.

``voiceagents`` knows no carrier: the telephony app registers its carriers here (in its
``AppConfig.ready()``), and ``PhoneNumber`` and ``Call`` read their choices and per-number fields
from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from .datafields import DataField
from .registry import Registry


@dataclass(frozen=True)
class CarrierSpec:
    """One carrier as the rest of the project sees it."""

    #: snake_case id, the value stored in ``Call.carrier`` and ``PhoneNumber.carrier``.
    id: str
    #: Display name in the vendor's own spelling.
    name: str
    #: Vendor id of the credential a number of this carrier needs (its account).
    vendor: str
    #: Extra per-number values stored in ``PhoneNumber.carrier_data`` (e.g. Telnyx's codec).
    number_fields: tuple[DataField, ...] = ()
    #: Dotted path of the media-stream consumer (``voiceagents.E005`` checks that it imports).
    consumer: str = ""
    #: Dotted path of ``dial(call, number, agent) -> carrier call id`` (outbound calls); ''
    #: when the carrier cannot place calls.
    dialer: str = ""


carriers: Registry[CarrierSpec] = Registry("carrier")


def carrier_choices() -> list[tuple[str, str]]:
    """Choices of ``PhoneNumber.carrier`` and ``Call.carrier``."""
    return carriers.choices()


def carrier_credentials() -> Q:
    """``limit_choices_to`` of ``PhoneNumber.credential``: credentials of a carrier's vendor."""
    return Q(vendor__in=[spec.vendor for spec in carriers])
