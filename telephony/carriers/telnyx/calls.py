"""The Django world of Telnyx calls: ``Call`` rows kept in step with Call Control webhooks.

Everything here is sync ORM work in short transactions; the async webhook view calls it through
``sync_to_async`` and does the REST commands itself, outside any transaction.

Webhooks repeat and arrive out of order (docs/carriers/telnyx.md#webhook-envelope), so each
function is idempotent and moves a call forward only: a final call stays final, an answered call
never rings again.

Who writes the end of a call: when the caller (or Telnyx) hangs up, ``call.hangup`` does, with the
mapped ``hangup_cause``. When our side hung up a call whose stream ran, the session is ending it
and writes its own reason (``provider_error``, ``max_duration``...); the webhook then only adds
its facts to the timeline.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from voiceagents import configcache, services
from voiceagents.exceptions import ConfigurationError
from voiceagents.models import (
    Call,
    CallEvent,
    CallEventKind,
    CallStatus,
    Credential,
    ProcessedWebhookEvent,
)

from .. import TELNYX, lifecycle
from . import events
from .codecs import StreamCodec
from .events import TelnyxEvent
from .rest import TelnyxAccount
from .signature import PublicKey, credential_public_keys

logger = logging.getLogger(__name__)

#: End reasons the media consumer writes when Telnyx ended the stream; ``call.hangup`` knows better.
STREAM_END_REASONS = frozenset({"stream_stopped", "stream_closed"})


# -- deduplication ----------------------------------------------------------------------------


def claim_event(event: TelnyxEvent) -> bool:
    """True if this process is the first to see ``event``; False for a repeated delivery.

    The unique constraint decides across processes. A handler that fails calls
    ``release_event`` so that Telnyx's retry is acted on.
    """
    try:
        with transaction.atomic():
            ProcessedWebhookEvent.objects.create(
                carrier=TELNYX.id, event_id=event.event_id, event_type=event.event_type
            )
    except IntegrityError:
        return False
    return True


def release_event(event: TelnyxEvent) -> None:
    ProcessedWebhookEvent.objects.filter(carrier=TELNYX.id, event_id=event.event_id).delete()


# -- accounts ---------------------------------------------------------------------------------


def account_for(
    credential: Credential | None, signers: list[PublicKey] | None = None
) -> TelnyxAccount | None:
    """The ``TelnyxAccount`` to command a call with, or None when no API key is configured.

    The number's credential first; for calls to numbers we do not know, the credential whose
    webhook key signed the request; then the ``TELNYX_API_KEY`` setting.
    """
    if credential is None and signers:
        ids = [s.credential_id for s in signers if s.credential_id is not None]
        credential = Credential.objects.filter(pk__in=ids).order_by("-is_default", "pk").first()
    try:
        return TelnyxAccount.from_credential(credential)
    except ConfigurationError as err:
        logger.error("Cannot command Telnyx calls: %s", err)
        return None


def _signed_by(credential: Credential, signers: list[PublicKey]) -> bool:
    own = set(credential_public_keys(credential))
    return not own or any(signer.key in own for signer in signers)


# -- call.initiated ---------------------------------------------------------------------------


CONNECT = "connect"
APOLOGISE = "apologise"
NOTHING = "nothing"


@dataclass(frozen=True)
class InboundCall:
    """The ``Call`` of an incoming ``call.initiated``, and how to go on with it."""

    call: Call
    created: bool
    codec: StreamCodec
    #: None when there is no API key to command the call with.
    account: TelnyxAccount | None

    @property
    def action(self) -> str:
        """``connect`` it to its agent, ``apologise`` and hang up, or do ``nothing`` (it ended)."""
        if not self.call.is_final:
            return CONNECT
        return APOLOGISE if self.call.end_reason in lifecycle.REFUSALS else NOTHING


def record_inbound_call(event: TelnyxEvent, signers: list[PublicKey] | None) -> InboundCall:
    """Create (once per ``call_control_id``) the ``Call`` of an incoming call.

    ``signers`` are the keys that verified the webhook (None when checks are off). Calls no agent
    can take are stored as failed, with the reason in ``end_reason``.
    """
    number = services.inbound_number(TELNYX.id, event.get("to"))
    # Signed by another Telnyx account we hold a key for: that one is not the number's owner.
    reason = lifecycle.refusal(
        number, lambda n: signers is None or _signed_by(n.credential, signers)
    )
    call, created = lifecycle.record_inbound_call(
        TELNYX.id,
        event.call_control_id,
        number=number,
        from_number=event.get("from"),
        to_number=event.get("to"),
        reason=reason,
    )
    owned = number is not None and reason != lifecycle.ACCOUNT_MISMATCH
    credential = number.credential if owned else None
    return InboundCall(
        call=call,
        created=created,
        codec=StreamCodec.named(number.carrier_data.get("codec") if number is not None else None),
        account=account_for(credential, signers),
    )


def mark_command_failure(call_id, reason: str, error: str) -> None:
    """A command the call needed was refused: fail the call unless it already ended."""
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None:
            return
        previous = call.status
        if not lifecycle.fail(call, reason, error, timezone.now()):
            return
        call.save(update_fields=["status", "ended_at", "end_reason", "error"])
        _event(
            call,
            CallEventKind.ERROR,
            None,
            {"from": previous, "reason": reason, "error": error[:500]},
        )


# -- later events -----------------------------------------------------------------------------


def find_call(event: TelnyxEvent, *, lock: bool = False) -> Call | None:
    """Our call for a webhook: by ``call_control_id``, else by the call id in ``client_state``."""
    calls = Call.objects.filter(carrier=TELNYX.id)
    if lock:
        calls = calls.select_for_update()
    call = (
        calls.filter(carrier_call_id=event.call_control_id).first()
        if event.call_control_id
        else None
    )
    state = event.client_state
    if call is None and state is not None and _is_uuid(state.call_id):
        call = calls.filter(pk=state.call_id).first()
        if call is not None and not call.carrier_call_id and event.call_control_id:
            # Our outbound call, before the dial's response named it: bind it now.
            call.carrier_call_id = event.call_control_id[:128]
            call.save(update_fields=["carrier_call_id"])
    return call


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def call_account(call: Call, signers: list[PublicKey] | None = None) -> TelnyxAccount | None:
    """The account to command ``call`` with: its number's credential (from ``configcache``)."""
    credential = None
    if call.phone_number_id is not None:
        credential = configcache.models(
            ("number_credential", call.phone_number_id),
            lambda: Credential.objects.get(phone_numbers__pk=call.phone_number_id),
        )
    return account_for(credential, signers)


def _at_ms(call: Call, at: datetime) -> int:
    return max(int((at - call.created_at).total_seconds() * 1000), 0)


def _event(call: Call, kind: str, at: datetime | None, data: dict) -> None:
    CallEvent.objects.create(
        call=call, kind=kind, at_ms=_at_ms(call, at or timezone.now()), data=data
    )


def apply_answered(event: TelnyxEvent) -> str:
    """``call.answered``: the call is in progress from ``occurred_at``. Returns what happened."""
    at = event.occurred_at or timezone.now()
    with transaction.atomic():
        call = find_call(event, lock=True)
        if call is None:
            return "unknown_call"
        if call.is_final:
            return "final"
        previous = call.status
        lifecycle.advance(call, CallStatus.IN_PROGRESS, at)
        call.save(update_fields=["status", "answered_at"])
        if previous != call.status:
            _event(
                call,
                CallEventKind.STATUS,
                at,
                {"from": previous, "to": call.status, "reason": "answered"},
            )
    return "changed" if previous != CallStatus.IN_PROGRESS else "unchanged"


def apply_streaming(event: TelnyxEvent) -> str:
    """``streaming.started/stopped/failed`` on the timeline; a failed stream fails the call.

    Returns ``"failed"`` when the call must now be hung up (nobody will talk to the caller).
    """
    with transaction.atomic():
        call = find_call(event, lock=True)
        if call is None:
            return "unknown_call"
        data = {"carrier_event": event.event_type, "stream_id": event.get("stream_id")[:128]}
        if event.event_type != "streaming.failed":
            _event(call, CallEventKind.OTHER, event.occurred_at, data)
            return "recorded"
        reason = event.get("failure_reason")[:500] or "unknown"
        _event(call, CallEventKind.ERROR, event.occurred_at, {**data, "failure_reason": reason})
        error = f"Telnyx could not stream the call's media: {reason}"
        if not lifecycle.fail(call, "stream_failed", error, event.occurred_at or timezone.now()):
            return "final"
        call.save(update_fields=["status", "ended_at", "end_reason", "error"])
    logger.warning("Telnyx call %s: streaming failed: %s", call.pk, reason)
    return "failed"


def apply_hangup(event: TelnyxEvent) -> str:
    """``call.hangup``: end the call with its mapped end reason, unless the session owns the end.

    Returns ``"unknown_call"``, ``"deferred"`` (our side hung up a streamed call: the session writes
    the end), ``"ended"`` or ``"updated"`` (it had ended already; facts filled in).
    """
    cause, source = event.get("hangup_cause")[:64], event.get("hangup_source")[:32]
    at = event.occurred_at or timezone.now()
    with transaction.atomic():
        call = find_call(event, lock=True)
        if call is None:
            return "unknown_call"
        reason = events.end_reason(cause, source, call.direction)
        data = {
            "carrier_event": "call.hangup",
            "hangup_cause": cause,
            "hangup_source": source,
            "sip_hangup_cause": event.get("sip_hangup_cause")[:16],
            "end_reason": reason,
        }
        previous = call.status
        if call.is_final:
            # It keeps its status and only gains a missing end time or duration.
            outcome, final = "updated", call.status
            if call.end_reason in STREAM_END_REASONS:
                call.end_reason = reason
        elif call.stream_token_used_at is not None and source == events.local_party(call.direction):
            _event(call, CallEventKind.OTHER, at, data)
            return "deferred"
        else:
            outcome = "ended"
            answered = call.answered_at is not None or call.status == CallStatus.IN_PROGRESS
            final = events.final_status(cause, answered)
            call.end_reason = reason
        lifecycle.advance(call, final, at)
        call.save(update_fields=["status", "ended_at", "duration", "end_reason"])
        _event(call, CallEventKind.STATUS, at, {**data, "from": previous, "to": call.status})
    logger.info("Telnyx call %s ended: %s (%s, %s)", call.pk, reason, cause or "?", source or "?")
    return outcome


# -- for the media consumer -------------------------------------------------------------------

#: ``(call_control_id, account)``: what a REST command to one live call needs.
Target = tuple[str, TelnyxAccount]


def stream_hangup_target(call_id, stream_id: str, call_control_id: str) -> Target | None:
    """``(call_control_id, account)`` to hang up a call whose stream we refused, or None.

    Only when the refused stream really is that call's (same ``call_control_id``) and no other
    stream owns the call: a replayed token must never hang up the genuine conversation.
    """
    call = Call.objects.filter(pk=call_id, carrier=TELNYX.id).first()
    if call is None or not call.carrier_call_id or call.carrier_call_id != call_control_id:
        return None
    if call.stream_token_used_at is not None and call.stream_id != stream_id[:128]:
        return None
    account = call_account(call)
    return (call.carrier_call_id, account) if account is not None else None


def live_call_target(call_id) -> Target | None:
    """``(call_control_id, account)`` of a live call, to hang it up or transfer it; or None."""
    call = Call.objects.filter(pk=call_id, carrier=TELNYX.id).first()
    if call is None or not call.carrier_call_id:
        return None
    account = call_account(call)
    return (call.carrier_call_id, account) if account is not None else None
