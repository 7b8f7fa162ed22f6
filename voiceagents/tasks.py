"""Celery tasks: thin wrappers around ``services`` that take ids, never model instances."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="voiceagents.reconcile_stale_calls", ignore_result=False)
def reconcile_stale_calls() -> int:
    """Close calls left live by a crashed process. Schedule it every few minutes with beat."""
    return services.reconcile_stale_calls()
