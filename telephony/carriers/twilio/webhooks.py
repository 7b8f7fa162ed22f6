"""Twilio's HTTP webhooks: the incoming-call (voice) webhook and call status callbacks.

The voice webhook answers with TwiML (protocols.md §1.1–1.2): either a bidirectional media stream
to our consumer, carrying the call id and a single-use stream token, or a polite apology for calls
no agent can take. Status callbacks (§1.3) keep the ``Call`` row in step with Twilio; they repeat
and arrive out of order, so they are applied by ``SequenceNumber`` under a row lock and never move
a call backwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils import timezone

from voiceagents import services, streamtokens
from voiceagents.models import (
    FINAL_STATUSES,
    Call,
    CallEvent,
    CallEventKind,
    CallStatus,
    PhoneNumber,
)

from .. import TWILIO
from ..base import CarrierWebhookView, mask_number, public_url
from . import signature, twiml

logger = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

#: Twilio ``CallStatus`` → ours. ``initiated`` (dialling has started) only exists in callbacks.
STATUS_MAP = {
    "queued": CallStatus.QUEUED,
    "initiated": CallStatus.QUEUED,
    "ringing": CallStatus.RINGING,
    "in-progress": CallStatus.IN_PROGRESS,
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "failed": CallStatus.FAILED,
    "no-answer": CallStatus.NO_ANSWER,
    "canceled": CallStatus.CANCELED,
}

#: Live statuses only move forward; every final status outranks them all.
_RANK = {CallStatus.QUEUED: 0, CallStatus.RINGING: 1, CallStatus.IN_PROGRESS: 2}
_FINAL_RANK = 3


def _rank(status: str) -> int:
    return _FINAL_RANK if status in FINAL_STATUSES else _RANK.get(status, 0)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _timestamp(value: str | None) -> datetime | None:
    """Twilio's RFC 2822 ``Timestamp``, aware; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TwilioCallEvent:
    """The fields of a Twilio voice webhook or status callback that we act on."""

    call_sid: str
    account_sid: str
    from_number: str
    to_number: str
    call_status: str
    direction: str
    #: ``SequenceNumber`` of a status callback; None on the voice webhook.
    sequence: int | None = None
    #: ``CallDuration`` in seconds, on the terminal callback only.
    duration: int | None = None
    timestamp: datetime | None = None
    #: Every posted field, as lists (the raw payload, for events and debugging).
    raw: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_form(cls, form) -> TwilioCallEvent:
        return cls(
            call_sid=form.get("CallSid", ""),
            account_sid=form.get("AccountSid", ""),
            from_number=form.get("From", ""),
            to_number=form.get("To", ""),
            call_status=form.get("CallStatus", ""),
            direction=form.get("Direction", ""),
            sequence=_int_or_none(form.get("SequenceNumber")),
            duration=_int_or_none(form.get("CallDuration")),
            timestamp=_timestamp(form.get("Timestamp")),
            raw=dict(form.lists()),
        )


class TwilioSignatureMixin:
    """Verifier for ``X-Twilio-Signature`` (protocols.md §1.4) on Django requests.

    The signed URL is rebuilt from ``PUBLIC_URL`` plus the request's path and raw query string.
    Candidate secrets are the auth tokens of the posted ``AccountSid`` (reading it before the
    check is safe: it only selects keys), or the SharedKey named by the signature-settings header.
    """

    def verify_twilio_signature(self, request: HttpRequest) -> None:
        is_form = request.content_type == FORM_CONTENT_TYPE
        account_sid = request.POST.get("AccountSid") if is_form else None
        scheme = signature.signing_scheme(
            request.headers.get(signature.SETTINGS_HEADER),
            lambda: signature.auth_tokens_for(account_sid),
        )
        signature.verify_request(
            public_url(request.path, request.META.get("QUERY_STRING", "")),
            request.POST if is_form else None,
            None if is_form else request.body,
            request.headers.get(signature.SIGNATURE_HEADER),
            scheme,
        )


class TwilioWebhookView(TwilioSignatureMixin, CarrierWebhookView):
    """Common ground of Twilio's form-encoded webhooks."""

    carrier = TWILIO.id
    verifiers = ("verify_twilio_signature",)

    def parse(self, request: HttpRequest) -> TwilioCallEvent:
        return TwilioCallEvent.from_form(request.POST)

    def handle(self, request: HttpRequest, event: TwilioCallEvent) -> HttpResponse:
        if not event.call_sid:
            return HttpResponseBadRequest("CallSid is missing", content_type="text/plain")
        return self.handle_call(event)

    def handle_call(self, event: TwilioCallEvent) -> HttpResponse:
        raise NotImplementedError(f"{self.__class__.__name__}.handle_call()")


# -- incoming calls --------------------------------------------------------------------------


def _refusal(number: PhoneNumber | None, event: TwilioCallEvent) -> str:
    """Why no agent can take this call ('' when one can); the value of ``Call.end_reason``."""
    if number is None:
        return "unknown_number"
    if event.account_sid and number.credential.data.get("account_sid") != event.account_sid:
        # Signed by another account we hold a token for, e.g. an outbound call dialling our number.
        return "account_mismatch"
    if not number.enabled:
        return "number_disabled"
    if number.agent is None:
        return "no_agent"
    if not number.agent.enabled:
        return "agent_disabled"
    return ""


def record_inbound_call(event: TwilioCallEvent) -> tuple[Call, bool]:
    """The ``Call`` row of this webhook, created once per CallSid; ``(call, created)``.

    Twilio retries a webhook that timed out, so a second request with the same CallSid returns
    the existing row (``get_or_create`` also absorbs the race on the unique constraint). Calls no
    agent can take are stored as failed, with the reason in ``end_reason``.
    """
    number = services.inbound_number(TWILIO.id, event.to_number)
    reason = _refusal(number, event)
    call, created = services.record_inbound_call(
        TWILIO.id,
        event.call_sid,
        number=number,
        from_number=event.from_number,
        to_number=event.to_number,
        refusal=reason,
    )
    if created and reason:
        logger.info(
            "Twilio call %s from %s to %s refused: %s",
            event.call_sid,
            mask_number(event.from_number),
            mask_number(event.to_number),
            reason,
        )
    elif created:
        logger.info(
            "Twilio call %s from %s to %s: call %s, agent %s",
            event.call_sid,
            mask_number(event.from_number),
            mask_number(event.to_number),
            call.pk,
            call.agent.slug,
        )
    else:
        logger.info("Twilio voice webhook repeated for call %s (%s)", event.call_sid, call.pk)
    return call, created


def existing_outbound_call(event: TwilioCallEvent) -> Call | None:
    """The row of an outbound call that Twilio asks TwiML for; never creates one.

    Only the code that placed the call knows its agent, and a row created here would collide
    with the one it inserts once Twilio's REST response names the CallSid.
    """
    call = (
        Call.objects.select_related("agent")
        .filter(carrier=TWILIO.id, carrier_call_id=event.call_sid)
        .first()
    )
    if call is None:
        logger.warning(
            "Twilio %s call %s reached the voice webhook before its Call row existed",
            event.direction[:20],
            event.call_sid,
        )
    return call


def _can_connect(call: Call | None) -> bool:
    return call is not None and not call.is_final and call.agent is not None and call.agent.enabled


class TwilioVoiceWebhookView(TwilioWebhookView):
    """Incoming call: connect it to the number's agent over a media stream, or apologise."""

    def handle_call(self, event: TwilioCallEvent) -> HttpResponse:
        if event.direction.startswith("outbound"):
            call = existing_outbound_call(event)
        else:
            call, _ = record_inbound_call(event)
        if not _can_connect(call):
            document = twiml.apology()
        else:
            # A fresh token on every request: a retried webhook may mean the first answer was lost.
            parameters = {"call_id": str(call.pk), "stream_token": streamtokens.mint(call.pk)}
            document = twiml.connect_stream(twiml.media_stream_url(), parameters)
        return HttpResponse(document, content_type=twiml.CONTENT_TYPE)


# -- status callbacks ------------------------------------------------------------------------


def _apply(call: Call, status: str, event: TwilioCallEvent) -> None:
    """Move ``call`` towards ``status`` without ever going backwards."""
    at = event.timestamp or timezone.now()
    if status == CallStatus.IN_PROGRESS and call.answered_at is None and not call.is_final:
        call.answered_at = at
    if status in FINAL_STATUSES:
        if call.ended_at is None:
            call.ended_at = at
        if call.duration is None and event.duration is not None:
            call.duration = timedelta(seconds=event.duration)
        elif call.duration is None and call.answered_at is not None:
            call.duration = max(call.ended_at - call.answered_at, timedelta(0))
    if _rank(status) > _rank(call.status):
        call.status = status


def _status_event(call: Call, previous: str, event: TwilioCallEvent) -> CallEvent:
    at = event.timestamp or timezone.now()
    return CallEvent(
        call=call,
        kind=CallEventKind.STATUS,
        at_ms=max(int((at - call.created_at).total_seconds() * 1000), 0),
        data={
            "status": call.status,
            "previous": previous,
            "carrier_status": event.call_status,
            "sequence": event.sequence,
            "sip_response_code": event.raw.get("SipResponseCode", [None])[0],
        },
    )


def apply_status_callback(event: TwilioCallEvent) -> str:
    """Apply one status callback; returns what happened, for logs and tests.

    ``"unknown_call"``, ``"unknown_status"``, ``"stale"`` (a sequence number not newer than the
    last applied), ``"unchanged"`` or ``"changed"``. The row is locked so that two callbacks
    handled at once apply in sequence order.
    """
    status = STATUS_MAP.get(event.call_status)
    if status is None:
        logger.warning(
            "Twilio call %s: unknown CallStatus %r ignored", event.call_sid, event.call_status[:40]
        )
        return "unknown_status"
    with transaction.atomic():
        call = (
            Call.objects.select_for_update()
            .filter(carrier=TWILIO.id, carrier_call_id=event.call_sid)
            .first()
        )
        if call is None:
            return "unknown_call"
        last = call.carrier_status_seq
        if event.sequence is not None and last is not None and event.sequence <= last:
            return "stale"
        previous = call.status
        _apply(call, status, event)
        if event.sequence is not None:
            call.carrier_status_seq = event.sequence
        call.save(
            update_fields=["status", "answered_at", "ended_at", "duration", "carrier_status_seq"]
        )
        if call.status == previous:
            return "unchanged"
        _status_event(call, previous, event).save()
    logger.info("Twilio call %s (%s): %s -> %s", event.call_sid, call.pk, previous, call.status)
    return "changed"


class TwilioStatusCallbackView(TwilioWebhookView):
    """Call progress from Twilio. Always 204 once verified: Twilio ignores the body.

    A callback for a CallSid we have no row for is answered 204 too, and logged: Twilio sends
    callbacks for every call on a number or account (child legs, calls placed by other tools),
    and a 404 would only fill Twilio's debugger with errors nobody can act on; it would not retry.
    """

    def handle_call(self, event: TwilioCallEvent) -> HttpResponse:
        outcome = apply_status_callback(event)
        if outcome == "unknown_call":
            logger.info("Twilio status callback for unknown call %s ignored", event.call_sid)
        elif outcome == "stale":
            logger.debug(
                "Twilio call %s: stale status callback %s ignored", event.call_sid, event.sequence
            )
        return HttpResponse(status=204)
