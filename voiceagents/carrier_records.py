"""After a call: the carrier's own record of it, to correct ours and price its leg.

Twilio keeps a Call resource per call: its final ``status``, its ``duration`` (whole seconds, as
billed) and, once Twilio has rated it (seconds to minutes after the end), its ``price`` (a
negative string: what was charged) in ``price_unit``. ``reconcile_with_carrier`` reads it and

- closes a call we still think live if Twilio says it is over (a status callback that never
  arrived; the session that never wrote its end), with Twilio's duration;
- puts Twilio's price in ``Call.cost`` in place of our estimate of the carrier's part.

It returns ``"pending"`` while Twilio has no price yet, so that the task asks again later. Other
carriers keep no such record in the API we use (Telnyx bills through detail records): their part
stays an estimate.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from . import costs
from .exceptions import CarrierAPIError, ConfigurationError
from .models import FINAL_STATUSES, Call, CallStatus

logger = logging.getLogger(__name__)

#: Twilio's final call statuses, in ours.
_TWILIO_FINAL = {
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELED,
}


def reconcile_with_carrier(call_id) -> str:
    """``"done"``, ``"pending"`` (ask again later), or why there is nothing to do."""
    from telephony.carriers.twilio.rest import TwilioAccount, fetch_call

    call = Call.objects.select_related("phone_number__credential").filter(pk=call_id).first()
    if call is None:
        return "missing"
    if call.carrier != "twilio" or not call.carrier_call_id:
        return "not_supported"
    try:
        account = TwilioAccount.from_credential(
            call.phone_number.credential if call.phone_number else None
        )
        record = fetch_call(account, call.carrier_call_id)
    except ConfigurationError as err:
        logger.warning("call %s: cannot ask Twilio about it: %s", call.pk, err)
        return "no_credential"
    except CarrierAPIError as err:
        logger.warning("call %s: Twilio's record of it is not available: %s", call.pk, err)
        return "pending" if err.status_code is None or err.status_code >= 500 else "refused"
    status = _TWILIO_FINAL.get(str(record.get("status") or ""))
    if status is None:
        return "pending"  # still live at Twilio
    price = _price(record.get("price"))
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call.pk)
        changed = []
        if call.status not in FINAL_STATUSES:
            logger.warning("call %s: closed from Twilio's record (%s)", call.pk, status)
            call.status = status
            call.end_reason = call.end_reason or "carrier_reconciled"
            call.ended_at = call.ended_at or timezone.now()
            changed += ["status", "end_reason", "ended_at"]
            seconds = _int(record.get("duration"))
            if call.duration is None and seconds is not None:
                call.duration = timedelta(seconds=seconds)
                changed.append("duration")
        if price is not None or changed:
            call.cost = costs.estimate(
                call, carrier_price=price, carrier_currency=str(record.get("price_unit") or "")
            )
            changed.append("cost")
        if changed:
            call.save(update_fields=changed)
    return "done" if price is not None else "pending"


def _price(value) -> float | None:
    try:
        return abs(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
