"""Celery tasks: thin wrappers around ``services`` that take ids, never model instances."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="voiceagents.reconcile_stale_calls", ignore_result=False)
def reconcile_stale_calls() -> int:
    """Close calls left live by a crashed process that had no heartbeat (older versions). Schedule
    it every few minutes with beat: ``recover_lost_calls`` closes the others within a minute."""
    return services.reconcile_stale_calls()


@shared_task(name="voiceagents.recover_lost_calls")
def recover_lost_calls() -> int:
    """Close the calls of server processes that stopped and keep their recordings. Schedule it
    every minute with beat."""
    return services.recover_lost_calls()


@shared_task(
    name="voiceagents.finalize_call",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def finalize_call(call_id: str) -> str:
    """Post-call work, queued when a call's stream ends."""
    return services.finalize_call(call_id)


@shared_task(name="voiceagents.finalize_calls")
def finalize_calls(call_ids: list[str]) -> dict[str, str]:
    """``finalize_call`` for the calls a server process ended together (``voiceagents.postcall``).

    One call's failure does not hold up the others: it is logged and that call is queued again
    on its own as ``finalize_call``, with its retries.
    """
    outcomes = {}
    for call_id in call_ids:
        try:
            outcomes[call_id] = services.finalize_call(call_id)
        except Exception:
            logger.exception("finalize_calls: call %s failed; queued again on its own", call_id)
            outcomes[call_id] = "requeued"
            try:
                finalize_call.delay(call_id)
            except Exception:
                logger.exception("call %s: cannot queue finalize_call", call_id)
    return outcomes


@shared_task(name="voiceagents.prune_processed_webhook_events")
def prune_processed_webhook_events() -> int:
    """Keep the webhook-dedup table small. Schedule it daily with beat."""
    return services.prune_processed_webhook_events()


@shared_task(name="voiceagents.purge_expired_call_content")
def purge_expired_call_content() -> dict:
    """Delete recordings and transcripts older than ``RETENTION_DAYS``. Schedule it daily."""
    from . import retention

    purged = retention.purge_expired_call_content()
    return {"recordings": purged.recordings, "transcript_entries": purged.transcript_entries}


@shared_task(name="voiceagents.deliver_call_webhook", bind=True, max_retries=None)
def deliver_call_webhook(self, call_id: str) -> str:
    """POST the call's record to ``CALL_WEBHOOK_URL``, retried with backoff while the receiver is
    unreachable or answers 5xx/408/429 (at most ``CALL_WEBHOOK_MAX_RETRIES`` more tries).

    Every outcome is on the call's timeline. With eager Celery (the demo) there is no broker to
    wait in: a retry runs at once.
    """
    retries = self.request.retries
    while True:
        outcome = _webhook_attempt(call_id, retries)
        if isinstance(outcome, str):
            return outcome
        if not self.request.is_eager:
            raise self.retry(countdown=outcome)
        retries += 1


def _webhook_attempt(call_id: str, retries: int) -> str | float:
    """One delivery: its outcome, or the seconds to wait before the next try."""
    from . import call_webhook
    from .conf import get_setting

    attempt = retries + 1
    try:
        delivery = call_webhook.deliver(call_id, attempt=attempt)
    except call_webhook.DeliveryRefused as err:
        logger.error("call %s: the call webhook is not sent: %s", call_id, err)
        call_webhook.record(call_id, "refused", attempt=attempt, error=str(err))
        return "refused"
    except call_webhook.DeliveryFailed as err:
        max_retries = int(get_setting("CALL_WEBHOOK_MAX_RETRIES", cast=int))
        final = not err.retryable or retries >= max_retries
        call_webhook.record(call_id, "failed", attempt=attempt, error=str(err), final=final)
        if final:
            logger.error("call %s: the call webhook failed for good: %s", call_id, err)
            return "failed"
        delay = call_webhook.retry_delay(retries)
        logger.warning(
            "call %s: the call webhook failed (%s); try %d in %.0f s",
            call_id,
            err,
            attempt + 1,
            delay,
        )
        return delay
    call_webhook.record(
        call_id, "delivered", attempt=attempt, status=delivery.status_code, ms=delivery.elapsed_ms
    )
    return "delivered"


@shared_task(name="voiceagents.reconcile_with_carrier", bind=True, max_retries=None)
def reconcile_with_carrier(self, call_id: str) -> str:
    """Correct the call from the carrier's record and take its price (``carrier_records``); asked
    again with backoff while the carrier has not rated the call (``CARRIER_RECORD_TRIES``)."""
    from . import carrier_records
    from .conf import get_setting

    outcome = carrier_records.reconcile_with_carrier(call_id)
    tries = int(get_setting("CARRIER_RECORD_TRIES", cast=int))
    if outcome == "pending" and not self.request.is_eager and self.request.retries + 1 < tries:
        raise self.retry(countdown=min(3600, 60 * 2**self.request.retries))
    return outcome


@shared_task(name="voiceagents.place_call")
def place_call(
    agent_id: int,
    to: str,
    from_number: str | None = None,
    first_message: str | None = None,
    variables: dict | None = None,
) -> str:
    """Dial ``to`` for the agent (``voiceagents.outbound.place_call``); the Call's id.

    Not retried: a second attempt would ring the callee twice. A refused call is recorded as a
    failed Call (its error says why) and raises ``OutboundCallError``.
    """
    from .models import Agent
    from .outbound import place_call as place

    agent = Agent.objects.get(pk=agent_id)
    call = place(agent, to, from_number, first_message=first_message, variables=variables)
    return str(call.pk)
