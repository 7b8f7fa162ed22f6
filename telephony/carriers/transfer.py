"""What every carrier's transfer shares: the target of one live call, read once from the database.

A transfer hands the caller to another number on the carrier's side: our media stream ends and the
carrier bridges the caller to the new party. The caller ID the target sees is our own number (the
one the caller dialled, or the one an outbound call came from): carriers only let an account
present numbers it owns or has verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voiceagents.exceptions import CarrierAPIError, ConfigurationError
from voiceagents.models import Call, Direction


@dataclass(frozen=True)
class TransferTarget:
    """One live call as its carrier's transfer command needs it."""

    #: The carrier's id of the call (Twilio CallSid, Telnyx call_control_id).
    carrier_call_id: str
    #: Our number on the call: the caller ID the transfer target sees.
    our_number: str
    #: The carrier account to command the call with (carrier-specific).
    account: Any


def our_number(call: Call) -> str:
    """The call's number on our side: its ``PhoneNumber``, else the side that is ours."""
    if call.phone_number is not None:
        return call.phone_number.number
    return call.from_number if call.direction == Direction.OUTBOUND else call.to_number


def live_call(call_id, carrier: str) -> Call:
    """The call, with its number and credential; ``CarrierAPIError`` when it cannot be commanded."""
    call = (
        Call.objects.select_related("phone_number__credential")
        .filter(pk=call_id, carrier=carrier)
        .first()
    )
    if call is None or not call.carrier_call_id:
        raise CarrierAPIError(f"No {carrier} call to transfer", vendor=carrier, call_id=call_id)
    return call


def account_or_refusal(build, call: Call):
    """``build(credential)``, a ``ConfigurationError`` turned into a ``CarrierAPIError``: a call
    whose account cannot be used is refused like any other transfer the carrier would refuse."""
    credential = call.phone_number.credential if call.phone_number is not None else None
    try:
        return build(credential)
    except ConfigurationError as err:
        raise CarrierAPIError(f"Cannot command the call: {err}", vendor=call.carrier) from err
