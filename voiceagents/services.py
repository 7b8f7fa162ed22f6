"""Plain functions behind the Celery tasks and admin actions (easy to test without Celery)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .conf import get_setting
from .models import Call, CallEvent, CallEventKind, CallStatus

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
