"""Outbound calls: ``place_call`` dials a number for an agent through the carrier of one of its
numbers, and ``amd_result`` hands the carrier's answering-machine verdict to the live call.

The ``Call`` row is created ``queued`` (direction outbound) *before* the carrier's REST request, so
every callback that follows finds it: the carrier's URLs carry its id (signed with the rest of the
URL). A refused request fails the row with the carrier's message as its ``error``; the caller of
``place_call`` gets an ``OutboundCallError`` naming it. The carrier's half (the REST request) is
the ``dialer`` of its ``CarrierSpec`` (``telephony.carriers.<carrier>.outbound.dial``).

Answering-machine detection (docs/outbound.md): the carrier reports asynchronously, possibly to
another process than the one holding the call, so the verdict is stored on the row and sent to
the call's control group (``amd`` command); the session holds its first message until then.
"""

from __future__ import annotations

import logging
import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .carriers import carriers
from .conf import get_setting
from .exceptions import CarrierAPIError, ConfigurationError, VoiceAgentsError
from .models import Agent, Call, CallEvent, CallEventKind, CallStatus, Direction, PhoneNumber
from .validators import E164_RE, validate_variables

logger = logging.getLogger(__name__)

_PUNCTUATION = re.compile(r"[\s().-]")

#: ``answered_by`` values (Twilio ``AnsweredBy``, Telnyx ``result``) that mean a person.
HUMAN_RESULTS = frozenset({"human", "human_residence", "human_business"})
#: ... and a machine (a fax machine included: nobody will listen either way).
MACHINE_RESULTS = frozenset(
    {
        "machine",
        "machine_start",
        "machine_end_beep",
        "machine_end_silence",
        "machine_end_other",
        "fax",
        "fax_detected",
    }
)


def classify(answered_by: str) -> str:
    """``"human"``, ``"machine"`` or ``"unknown"`` (``unknown``, ``not_sure``, ``silence``...:
    the conversation goes on as with a person)."""
    value = (answered_by or "").strip().lower()
    if value in HUMAN_RESULTS:
        return "human"
    if value in MACHINE_RESULTS:
        return "machine"
    return "unknown"


class OutboundCallError(VoiceAgentsError):
    """The call could not be placed; ``call`` is its failed row when one was created."""

    def __init__(self, message: str, *, call: Call | None = None):
        super().__init__(message)
        self.call = call


def normalise_number(value: str) -> str:
    """``value`` without spaces, dots, dashes and parentheses; raises unless it is E.164."""
    number = _PUNCTUATION.sub("", str(value or ""))
    if not E164_RE.match(number):
        raise OutboundCallError(
            f"{str(value)[:40]!r} is not a phone number in international format "
            "(E.164, e.g. +14155550100)."
        )
    return number


def caller_numbers(agent: Agent):
    """The numbers ``agent`` may call from: its enabled numbers, oldest first."""
    return PhoneNumber.objects.filter(agent=agent, enabled=True).select_related("credential")


def _from_number(agent: Agent, from_number: str | PhoneNumber | None) -> PhoneNumber:
    numbers = caller_numbers(agent).order_by("pk")
    if isinstance(from_number, PhoneNumber):
        number = numbers.filter(pk=from_number.pk).first()
        wanted = from_number.number
    elif from_number:
        wanted = _PUNCTUATION.sub("", str(from_number))
        number = numbers.filter(number=wanted).first()
    else:
        number, wanted = numbers.first(), ""
        if number is None:
            raise OutboundCallError(
                f"The agent {agent.name!r} has no enabled phone number to call from."
            )
    if number is None:
        raise OutboundCallError(
            f"{wanted[:40]!r} is not an enabled phone number of the agent {agent.name!r}."
        )
    return number


def place_call(
    agent: Agent,
    to: str,
    from_number: str | PhoneNumber | None = None,
    first_message: str | None = None,
    variables: dict | None = None,
) -> Call:
    """Dial ``to`` for ``agent`` from one of its numbers; the ``Call`` row, ``queued``.

    ``first_message`` replaces the agent's (``""``: the agent waits for the callee to speak);
    ``variables`` add to the agent's for this call's prompt and messages. Raises
    ``OutboundCallError`` (with ``.call`` set once the row exists) when the call cannot be placed.
    """
    to = normalise_number(to)
    if not agent.enabled:
        raise OutboundCallError(f"The agent {agent.name!r} is disabled.")
    number = _from_number(agent, from_number)
    spec = carriers.find(number.carrier)
    if spec is None or not spec.dialer:
        raise OutboundCallError(f"The carrier {number.carrier!r} cannot place calls here.")
    variables = dict(variables or {})
    try:
        validate_variables(variables)
    except ValidationError as err:
        raise OutboundCallError("; ".join(err.messages)) from err
    options = {
        "first_message": first_message,
        "variables": variables,
        "amd": bool(agent.answering_machine_detection),
        "machine_action": agent.machine_action if agent.voicemail_message.strip() else "hangup",
    }
    call = Call.objects.create(
        agent=agent,
        phone_number=number,
        carrier=number.carrier,
        direction=Direction.OUTBOUND,
        from_number=number.number,
        to_number=to,
        status=CallStatus.QUEUED,
        outbound_options=options,
    )
    CallEvent.objects.create(
        call=call,
        kind=CallEventKind.STATUS,
        at_ms=0,
        data={"to": CallStatus.QUEUED, "reason": "outbound_call_placed"},
    )
    try:
        carrier_call_id = import_string(spec.dialer)(call, number, agent)
    except (CarrierAPIError, ConfigurationError) as err:
        reason = "configuration_error" if isinstance(err, ConfigurationError) else "dial_failed"
        message = str(err)
        _fail(call, reason, message)
        logger.warning("outbound call %s to %s not placed: %s", call.pk, number.carrier, message)
        raise OutboundCallError(message, call=call) from err
    # A callback may have named the carrier's id already (it carries our id): keep it then.
    Call.objects.filter(pk=call.pk, carrier_call_id="").update(carrier_call_id=carrier_call_id)
    call.refresh_from_db()
    logger.info("outbound call %s placed through %s (%s)", call.pk, number.carrier, carrier_call_id)
    return call


def _fail(call: Call, reason: str, error: str) -> None:
    with transaction.atomic():
        locked = Call.objects.select_for_update().get(pk=call.pk)
        if locked.is_final:
            return
        previous = locked.status
        locked.status = CallStatus.FAILED
        locked.ended_at = timezone.now()
        locked.end_reason = reason
        locked.error = error
        locked.save(update_fields=["status", "ended_at", "end_reason", "error"])
        CallEvent.objects.create(
            call=locked,
            kind=CallEventKind.ERROR,
            data={"from": previous, "to": locked.status, "reason": reason, "error": error[:500]},
        )
    call.refresh_from_db()


def bind_carrier_call(call_id, carrier: str, carrier_call_id: str) -> Call | None:
    """The outbound call ``call_id`` of ``carrier``, given the carrier's id for it if it had none.

    A callback can reach us before ``place_call`` has stored the id from the REST response.
    None when there is no such outbound call, or it belongs to another carrier call.
    """
    if not carrier_call_id:
        return None
    calls = Call.objects.filter(pk=call_id, carrier=carrier, direction=Direction.OUTBOUND)
    calls.filter(carrier_call_id="").update(carrier_call_id=carrier_call_id[:128])
    call = calls.select_related("agent").first()
    if call is None or call.carrier_call_id != carrier_call_id[:128]:
        return None
    return call


def amd_result(call: Call, answered_by: str, detail: dict | None = None) -> bool:
    """Store the carrier's AMD verdict on ``call`` and tell the live call; False if repeated."""
    answered_by = (answered_by or "unknown")[:40]
    # One transaction: a callback that fails half-way (and is retried) must find nothing stored.
    with transaction.atomic():
        updated = Call.objects.filter(pk=call.pk, answered_by="").update(answered_by=answered_by)
        if not updated:
            return False
        CallEvent.objects.create(
            call=call,
            kind=CallEventKind.OTHER,
            at_ms=max(int((timezone.now() - call.created_at).total_seconds() * 1000), 0),
            data={"amd": answered_by, "verdict": classify(answered_by), **(detail or {})},
        )
    logger.info("outbound call %s answered by %s", call.pk, answered_by)
    from .call.control import send_call_command

    try:
        send_call_command(call.pk, "amd", answered_by=answered_by)
    except Exception:  # noqa: BLE001 - the session re-reads the row once it joins its group
        logger.exception("call %s: cannot send the AMD result to the live call", call.pk)
    return True


def amd_timeout_s() -> float:
    """Seconds the agent holds its first message for the AMD verdict (``OUTBOUND_AMD_TIMEOUT``)."""
    return float(get_setting("OUTBOUND_AMD_TIMEOUT", cast=float))


def ring_timeout_s() -> int:
    """Seconds the callee's phone rings before the call is given up (``OUTBOUND_RING_TIMEOUT``)."""
    return int(get_setting("OUTBOUND_RING_TIMEOUT", cast=int))
