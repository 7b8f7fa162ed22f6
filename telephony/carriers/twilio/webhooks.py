"""Twilio's HTTP webhooks: the incoming-call (voice) webhook and call status callbacks.

The voice webhook answers with TwiML: either a bidirectional media stream to our consumer, carrying
the call id and a single-use stream token, or a polite apology for calls no agent can take. Status
callbacks keep the ``Call`` row in step with Twilio; they repeat and arrive out of order, so they
are applied by ``SequenceNumber`` under a row lock and never move a call backwards. The wire
formats: docs/carriers/twilio.md#voice-webhook, #twiml-answer and #status-callbacks.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils import timezone
from django.utils.datastructures import MultiValueDict

from voiceagents import outbound, services
from voiceagents.call import callsetup, streamtokens
from voiceagents.models import Call, CallEvent, CallEventKind, CallStatus, PhoneNumber

from ... import limits
from .. import TWILIO, lifecycle
from ..base import CarrierWebhookView, public_url
from . import signature, twiml

logger = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"


def _json_fields(body: bytes) -> MultiValueDict:
    """A verified JSON body's top-level fields, shaped like a form post's (the same names).

    A body that is not a JSON object gives no fields: the view answers 400 (no CallSid).
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        logger.warning("Twilio JSON webhook body is not a JSON object (%d bytes)", len(body))
        return MultiValueDict()
    return MultiValueDict(
        {
            str(name): [str(value)]
            for name, value in data.items()
            if isinstance(value, str | int | float) and not isinstance(value, bool)
        }
    )


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


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


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
    """Verifier for ``X-Twilio-Signature`` on Django requests.

    The algorithm: docs/carriers/twilio.md#webhook-signature.

    The signed URL is rebuilt from ``PUBLIC_URL`` plus the request's path and raw query string.
    Candidate secrets are the auth tokens of the posted ``AccountSid`` (reading it before the
    check is safe: it only selects keys), or the SharedKey named by the signature-settings header.
    """

    def verify_twilio_signature(self, request: HttpRequest) -> None:
        is_form = request.content_type == FORM_CONTENT_TYPE
        if is_form:
            account_sid = request.POST.get("AccountSid")
            tokens = lambda: signature.auth_tokens_for(account_sid)  # noqa: E731
        else:
            # A JSON body (``bodySHA256``): its own AccountSid, or every token we hold.
            tokens = lambda: signature.auth_tokens_for_json(request.body)  # noqa: E731
        scheme = signature.signing_scheme(request.headers.get(signature.SETTINGS_HEADER), tokens)
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
        if request.content_type == JSON_CONTENT_TYPE:
            return TwilioCallEvent.from_form(_json_fields(request.body))
        return TwilioCallEvent.from_form(request.POST)

    def handle(self, request: HttpRequest, event: TwilioCallEvent) -> HttpResponse:
        if not event.call_sid:
            return HttpResponseBadRequest("CallSid is missing", content_type="text/plain")
        call_id = request.GET.get("call_id", "")
        if call_id and _is_uuid(call_id):
            # Our outbound call's URLs name its row (signed with the URL): a callback that
            # beats place_call's REST response still finds it, and binds the CallSid.
            outbound.bind_carrier_call(call_id, TWILIO.id, event.call_sid)
        return self.handle_call(event)

    def handle_call(self, event: TwilioCallEvent) -> HttpResponse:
        raise NotImplementedError(f"{self.__class__.__name__}.handle_call()")


# -- incoming calls --------------------------------------------------------------------------


def _same_account(number: PhoneNumber, event: TwilioCallEvent) -> bool:
    """False when another account we hold a token for signed it (e.g. its call dials our number)."""
    return not event.account_sid or number.credential.data.get("account_sid") == event.account_sid


def record_inbound_call(event: TwilioCallEvent) -> tuple[Call, bool]:
    """The ``Call`` row of this webhook, created once per CallSid; ``(call, created)``.

    Twilio retries a webhook that timed out, so a second request with the same CallSid returns
    the existing row. Calls no agent can take are stored as failed, the reason in ``end_reason``.
    """
    number = services.inbound_number(TWILIO.id, event.to_number)
    return lifecycle.record_inbound_call(
        TWILIO.id,
        event.call_sid,
        number=number,
        from_number=event.from_number,
        to_number=event.to_number,
        reason=lifecycle.refusal(number, lambda n: _same_account(n, event)),
    )


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


def fail_unconnectable(call: Call) -> None:
    """Fail a live call whose agent was removed or disabled since its first webhook."""
    reason = lifecycle.NO_AGENT if call.agent is None else lifecycle.AGENT_DISABLED
    with transaction.atomic():
        locked = Call.objects.select_for_update().get(pk=call.pk)
        previous = locked.status
        error = (
            "The agent was disabled or removed after the call came in; the caller heard an apology."
        )
        if not lifecycle.fail(locked, reason, error, timezone.now()):
            return
        locked.save(update_fields=["status", "ended_at", "end_reason", "error"])
        CallEvent.objects.create(
            call=locked,
            kind=CallEventKind.STATUS,
            data={"from": previous, "to": locked.status, "reason": reason},
        )
    logger.warning("Twilio call %s (%s) refused: %s", call.carrier_call_id, call.pk, reason)


class TwilioVoiceWebhookView(TwilioWebhookView):
    """Incoming call: connect it to the number's agent over a media stream, or apologise."""

    deadline_answer = "the apology TwiML (the caller hears it, then the call ends)"

    def deadline_response(self, request: HttpRequest) -> HttpResponse:
        # Twilio would give up at 15 s and play its own error; an apology is kinder. Its retry
        # (same CallSid) could only come after Twilio's own timeout, too late for the caller.
        return HttpResponse(twiml.apology(), content_type=twiml.CONTENT_TYPE)

    def handle_call(self, event: TwilioCallEvent) -> HttpResponse:
        if event.direction.startswith("outbound"):
            call = existing_outbound_call(event)
        else:
            call, _ = record_inbound_call(event)
        refused = limits.refusal() if lifecycle.can_connect(call) else None
        if refused is not None:
            # This process runs MAX_CALLS_PER_PROCESS calls already, or is stopping: busy, rather
            # than a bad call.
            logger.warning("Twilio call %s (%s) refused: %s", event.call_sid, call.pk, refused[0])
            callsetup.fail_before_start(call.pk, *refused)
            return HttpResponse(twiml.reject_busy(), content_type=twiml.CONTENT_TYPE)
        if not lifecycle.can_connect(call):
            if call is not None and not call.is_final:
                # A repeated webhook after its agent went away: no stream will end this call.
                fail_unconnectable(call)
            document = twiml.apology()
        else:
            # A fresh token on every request: a retried webhook may mean the first answer was lost.
            parameters = {"call_id": str(call.pk), "stream_token": streamtokens.mint(call.pk)}
            document = twiml.connect_stream(twiml.media_stream_url(), parameters)
        return HttpResponse(document, content_type=twiml.CONTENT_TYPE)


# -- status callbacks ------------------------------------------------------------------------


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
        duration = timedelta(seconds=event.duration) if event.duration is not None else None
        lifecycle.advance(call, status, event.timestamp or timezone.now(), duration=duration)
        if call.is_final and not call.end_reason and call.stream_token_used_at is None:
            # No media stream ever started, so no session will say why the call ended: Twilio's
            # status does (a call whose stream started gets its reason from the session).
            call.end_reason = NO_STREAM_END_REASONS.get(call.status, "no_media_stream")
        if event.sequence is not None:
            call.carrier_status_seq = event.sequence
        call.save(
            update_fields=[
                "status",
                "answered_at",
                "ended_at",
                "duration",
                "end_reason",
                "carrier_status_seq",
            ]
        )
        if call.status == previous:
            return "unchanged"
        _status_event(call, previous, event).save()
    logger.info("Twilio call %s (%s): %s -> %s", event.call_sid, call.pk, previous, call.status)
    return "changed"


#: ``end_reason`` of a call Twilio ended before its media stream started, by final status.
#: ``completed``: the caller hung up during the greeting TwiML, or the stream never connected.
NO_STREAM_END_REASONS = {
    CallStatus.BUSY: "busy",
    CallStatus.NO_ANSWER: "no_answer",
    CallStatus.CANCELED: "caller_cancelled",
    CallStatus.FAILED: "carrier_failed",
}


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


# -- answering-machine detection (outbound calls) ---------------------------------------------


class TwilioAmdCallbackView(TwilioWebhookView):
    """``AsyncAmdStatusCallback``: ``AnsweredBy`` for an outbound call, handed to the live call.

    Always 204 once verified (Twilio ignores the body); a repeated callback changes nothing.
    """

    def handle_call(self, event: TwilioCallEvent) -> HttpResponse:
        call = Call.objects.filter(carrier=TWILIO.id, carrier_call_id=event.call_sid).first()
        if call is None:
            logger.info("Twilio AMD callback for unknown call %s ignored", event.call_sid)
            return HttpResponse(status=204)
        answered_by = (event.raw.get("AnsweredBy") or [""])[0]
        duration = _int_or_none((event.raw.get("MachineDetectionDuration") or [""])[0])
        outbound.amd_result(call, answered_by, {"detection_ms": duration})
        return HttpResponse(status=204)
