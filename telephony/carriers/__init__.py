"""Carriers: the phone companies whose calls we answer (Twilio, Telnyx).

Each carrier lives in its own module or package (``telephony.carriers.twilio``) with its webhook
views, answer documents and media-stream consumer. This package only holds the registry, so that
importing it stays cheap: nothing here imports views, models or vendor code.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceagents.registry import Registry


@dataclass(frozen=True)
class CarrierSpec:
    """One carrier as the rest of the project sees it."""

    #: snake_case id, the value stored in ``Call.carrier`` and ``PhoneNumber.carrier``.
    id: str
    #: Display name in the vendor's own spelling.
    name: str


carriers: Registry[CarrierSpec] = Registry("carrier")

carriers.register(CarrierSpec(id="twilio", name="Twilio"))
carriers.register(CarrierSpec(id="telnyx", name="Telnyx"))
