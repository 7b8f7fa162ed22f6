"""Plain functions behind the Celery tasks and admin actions (easy to test without Celery)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .conf import get_setting
from .models import FINAL_STATUSES, Call, CallEvent, CallEventKind, CallStatus

logger = logging.getLogger(__name__)

#: Statuses of calls that some process believes are still live.
LIVE_STATUSES = (CallStatus.QUEUED, CallStatus.RINGING, CallStatus.IN_PROGRESS)


def reconcile_stale_calls(now=None) -> int:
    """Fail calls that stayed live longer than their agent's maximum duration plus a grace period.

    A server process that crashes mid-call never writes the call's end; without this, such calls
    would show "in progress" forever. Returns how many calls were closed. Idempotent.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=int(get_setting("STALE_CALL_GRACE", cast=int)))
    default_max = timedelta(hours=4)
    closed = 0
    candidates = Call.objects.filter(status__in=LIVE_STATUSES).select_related("agent")
    for call in candidates.iterator():
        limit = timedelta(seconds=call.agent.max_call_duration) if call.agent else default_max
        if call.created_at + limit + grace > now:
            continue
        with transaction.atomic():
            updated = Call.objects.filter(pk=call.pk, status__in=LIVE_STATUSES).update(
                status=CallStatus.FAILED,
                ended_at=now,
                end_reason="stale",
                error="No end of call was recorded (server restart or lost stream?); closed by "
                "reconcile_stale_calls.",
                duration=(now - call.answered_at) if call.answered_at else None,
            )
            if updated:
                CallEvent.objects.create(
                    call=call,
                    kind=CallEventKind.STATUS,
                    data={"from": call.status, "to": CallStatus.FAILED, "reason": "stale"},
                )
                closed += 1
    if closed:
        logger.warning("closed %d stale calls", closed)
    return closed


def finalize_call(call_id) -> str:
    """Post-call work after the stream ended. Idempotent; safe when the cleanup was cut short.

    For now it reconciles the call's status and duration: a call whose session never wrote its end
    (a worker killed during cleanup) but whose carrier reported it over is closed here.
    """
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None:
            logger.warning("finalize_call: no call %s", call_id)
            return "missing"
        changed = []
        if call.status not in FINAL_STATUSES and call.stream_token_used_at and call.ended_at:
            call.status = CallStatus.COMPLETED
            changed.append("status")
        if call.duration is None and call.answered_at and call.ended_at:
            call.duration = call.ended_at - call.answered_at
            changed.append("duration")
        if changed:
            call.save(update_fields=changed)
    # Outside the row lock: this is a request to the vendor.
    fetch_provider_report(call)
    return call.status


def fetch_provider_report(call: Call) -> bool:
    """Store the provider's own record of the call in ``provider_report``; True if it did.

    Only for providers with a ``report_fetcher``, when ``<PROVIDER_ID>_FETCH_CONVERSATION`` is on
    (``ELEVENLABS_CONVAI_FETCH_CONVERSATION``), the provider's session id is known and nothing was
    stored yet. A failure is logged and never raised: the call itself is already recorded.
    """
    from django.utils.module_loading import import_string

    from .exceptions import VoiceAgentsError
    from .providers import providers

    spec = providers.find(call.provider)
    if spec is None or not spec.report_fetcher:
        return False
    if not call.provider_session_id or call.provider_report:
        return False
    if not get_setting("FETCH_CONVERSATION", vendor=spec.id, default=False, cast=bool):
        return False
    try:
        report = import_string(spec.report_fetcher)(call)
    except VoiceAgentsError as err:
        logger.warning("call %s: cannot fetch the %s report: %s", call.pk, spec.name, err)
        return False
    except Exception:
        logger.exception("call %s: fetching the %s report failed", call.pk, spec.name)
        return False
    call.provider_report = report or {}
    call.save(update_fields=["provider_report"])
    return bool(report)


def prune_processed_webhook_events(now=None) -> int:
    """Delete webhook-dedup records older than ``WEBHOOK_EVENT_RETENTION`` seconds.

    Carriers retry a webhook for minutes to hours, not days: a week of ids is ample to refuse
    every duplicate while keeping the table small.
    """
    from .models import ProcessedWebhookEvent

    now = now or timezone.now()
    keep = timedelta(seconds=int(get_setting("WEBHOOK_EVENT_RETENTION", cast=int)))
    deleted, _ = ProcessedWebhookEvent.objects.filter(received_at__lt=now - keep).delete()
    if deleted:
        logger.info("pruned %d processed webhook events", deleted)
    return deleted


def inbound_number(carrier: str, to_number: str):
    """The carrier's ``PhoneNumber`` that was dialled (with its agent and credential), or None."""
    from .models import PhoneNumber

    return (
        PhoneNumber.objects.select_related("agent", "credential")
        .filter(number=to_number, carrier=carrier)
        .first()
    )


def record_inbound_call(
    carrier: str,
    carrier_call_id: str,
    *,
    number,
    from_number: str,
    to_number: str,
    refusal: str = "",
) -> tuple[Call, bool]:
    """The ``Call`` row of an inbound call, created once per carrier call id; ``(call, created)``.

    Carriers retry webhooks, so a repeat returns the existing row (``get_or_create`` also absorbs
    the race on the unique constraint). A call no agent can take (``refusal`` says why) is stored
    as failed with the reason in ``end_reason``.
    """
    from .models import Direction

    agent = number.agent if number is not None else None
    defaults = {
        "direction": Direction.INBOUND,
        "from_number": (from_number or "")[:64],
        "to_number": (to_number or "")[:64],
        "phone_number": number,
        "agent": agent,
        "provider": agent.provider if agent is not None else "",
        "status": CallStatus.RINGING,
    }
    if refusal:
        defaults.update(status=CallStatus.FAILED, end_reason=refusal, ended_at=timezone.now())
    return Call.objects.select_related("agent").get_or_create(
        carrier=carrier, carrier_call_id=carrier_call_id, defaults=defaults
    )
