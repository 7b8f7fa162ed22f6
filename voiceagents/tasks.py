"""Celery tasks: thin wrappers around ``services`` that take ids, never model instances."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from . import services


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
