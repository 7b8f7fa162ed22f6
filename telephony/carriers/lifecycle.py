"""What every carrier's webhooks do to a ``Call`` the same way: refuse, record, move forward only.

Carriers differ in their words (Twilio's ``CallStatus`` values, Telnyx's event types and hang-up
causes) and in how a webhook proves which account it belongs to. The rules are the same for all:

* a call no agent can take is recorded as failed with the reason, and the caller hears an
  apology (:func:`refusal`, :func:`record_inbound_call`);
* webhooks repeat and arrive out of order, so a call's status only moves forward: queued, then
  ringing, then in progress, then one final status that never changes again (:func:`advance`,
  :func:`fail`).

Each carrier maps its vocabulary onto ``CallStatus`` and calls these; none keeps its own copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from voiceagents import services
from voiceagents.models import FINAL_STATUSES, Call, CallStatus, PhoneNumber

from .base import mask_number

logger = logging.getLogger(__name__)

#: ``Call.end_reason`` of calls no agent can take, in the order they are checked.
UNKNOWN_NUMBER = "unknown_number"
ACCOUNT_MISMATCH = "account_mismatch"
NUMBER_DISABLED = "number_disabled"
NO_AGENT = "no_agent"
AGENT_DISABLED = "agent_disabled"
REFUSALS = frozenset({UNKNOWN_NUMBER, ACCOUNT_MISMATCH, NUMBER_DISABLED, NO_AGENT, AGENT_DISABLED})
#: What a refused caller hears, whatever the reason (it is not the caller's business).
APOLOGY = "Sorry, this number cannot take your call right now. Goodbye."

#: Live statuses in the order a call goes through them; every final status outranks them all.
_LIVE_RANK = {CallStatus.QUEUED: 0, CallStatus.RINGING: 1, CallStatus.IN_PROGRESS: 2}
_FINAL_RANK = len(_LIVE_RANK)


def refusal(number: PhoneNumber | None, same_account: Callable[[PhoneNumber], bool]) -> str:
    """Why no agent can take a call to ``number``, or ``""`` when one can.

    ``same_account(number)`` is the carrier's check that the webhook came from the account that
    owns the number (one server may hold several accounts' keys, and another account's call may
    dial our number). The value is what ``Call.end_reason`` records.
    """
    if number is None:
        return UNKNOWN_NUMBER
    if not same_account(number):
        return ACCOUNT_MISMATCH
    if not number.enabled:
        return NUMBER_DISABLED
    if number.agent is None:
        return NO_AGENT
    if not number.agent.enabled:
        return AGENT_DISABLED
    return ""


def record_inbound_call(
    carrier: str,
    carrier_call_id: str,
    *,
    number: PhoneNumber | None,
    from_number: str,
    to_number: str,
    reason: str,
) -> tuple[Call, bool]:
    """The ``Call`` of an incoming call, created once per carrier call id, and logged once.

    ``reason`` is :func:`refusal`'s answer; a refused call is stored as failed with it. A repeated
    webhook (carriers retry) gets the existing row and ``created`` False.
    """
    call, created = services.record_inbound_call(
        carrier,
        carrier_call_id,
        number=number,
        from_number=from_number,
        to_number=to_number,
        refusal=reason,
    )
    if not created:
        logger.info("%s call %s: webhook repeated (call %s)", carrier, carrier_call_id, call.pk)
    elif reason:
        logger.info(
            "%s call %s from %s to %s refused: %s",
            carrier,
            carrier_call_id,
            mask_number(from_number),
            mask_number(to_number),
            reason,
        )
    else:
        logger.info(
            "%s call %s from %s to %s: call %s, agent %s",
            carrier,
            carrier_call_id,
            mask_number(from_number),
            mask_number(to_number),
            call.pk,
            call.agent.slug,
        )
    return call, created


def can_connect(call: Call | None) -> bool:
    """True if ``call`` may still be connected to its agent (live, with an enabled agent)."""
    return call is not None and not call.is_final and call.agent is not None and call.agent.enabled


def rank(status: str) -> int:
    """Where ``status`` stands in a call's life; a call never moves to a lower rank."""
    return _FINAL_RANK if status in FINAL_STATUSES else _LIVE_RANK.get(status, 0)


def advance(
    call: Call, status: str, at: datetime, *, duration: timedelta | None = None
) -> list[str]:
    """Move ``call`` towards ``status`` as of ``at``, never backwards; the fields it changed.

    In progress sets ``answered_at`` (the earliest report wins) unless the call already ended.
    A final status sets ``ended_at`` and ``duration`` once (the carrier's ``duration`` if given,
    else answered to ended), also when the call had ended already and only lacked them. The status
    changes only to a higher :func:`rank`, so a final call keeps its status.
    """
    changed = []
    if status == CallStatus.IN_PROGRESS and not call.is_final:
        if call.answered_at is None or at < call.answered_at:
            call.answered_at = at
            changed.append("answered_at")
    if status in FINAL_STATUSES:
        if call.ended_at is None:
            call.ended_at = at
            changed.append("ended_at")
        if call.duration is None and (duration is not None or call.answered_at is not None):
            if duration is None:
                duration = max(call.ended_at - call.answered_at, timedelta(0))
            call.duration = duration
            changed.append("duration")
    if rank(status) > rank(call.status):
        call.status = status
        changed.append("status")
    return changed


def fail(call: Call, reason: str, error: str, at: datetime) -> bool:
    """End a live ``call`` as failed with ``reason``; False, and nothing changed, if it had ended."""
    if call.is_final:
        return False
    call.status = CallStatus.FAILED
    call.ended_at = at
    call.end_reason = reason[:100]
    call.error = error
    return True
