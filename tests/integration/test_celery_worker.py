"""A real Celery worker, fed through Redis, runs voiceagents' tasks against the shared database."""

from __future__ import annotations

import re
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import quote, urlsplit

import pytest
import redis
from celery import current_app
from celery.exceptions import TimeoutError as CeleryTimeout
from django.db import connection
from django.utils import timezone

from tests.fakes.webhook_receiver import Receiver, verify
from tests.voiceagents.factories import make_call
from voiceagents import postcall
from voiceagents.models import Agent, Call, CallEvent, CallEventKind, CallStatus, TranscriptEntry
from voiceagents.tasks import deliver_call_webhook, reconcile_stale_calls

from .conftest import ManagedProcess, subprocess_env

RESULT_TIMEOUT = 30.0


def _wait_for_result(result, worker: ManagedProcess, timeout: float):
    """``result.get`` in short slices, failing at once (with its output) if the worker dies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return result.get(timeout=0.5, propagate=True)
        except CeleryTimeout:
            worker.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no result from the worker within {timeout} s\n--- worker ---\n"
                    + worker.describe()
                )


def _test_database_url(database_url: str) -> str:
    """DATABASE_URL pointing at the database this test runs in (pytest-django's test_<name>)."""
    name = connection.settings_dict["NAME"]
    return urlsplit(database_url)._replace(path="/" + quote(name)).geturl()


@contextmanager
def _worker_on_own_queue(start_process, redis_url, postgres_database_url, **env):
    """A real worker reading a queue of its own: ``(queue, worker)``. Stopped at the end, before
    pytest-django flushes the database it is connected to, and its queue's keys deleted."""
    run = uuid.uuid4().hex[:12]
    queue = f"voiceagents-it-{run}"
    worker = start_process(
        "celery-worker",
        [sys.executable, "-m", "celery", "-A", "patter_site", "worker"]
        + ["--pool=solo", "--concurrency=1", "-Q", queue, "-n", f"it-{run}@%h", "-l", "INFO"]
        + ["--without-heartbeat", "--without-gossip", "--without-mingle"],
        env=subprocess_env(
            REDIS_URL=redis_url, DATABASE_URL=_test_database_url(postgres_database_url), **env
        ),
    )
    try:
        yield queue, worker
    finally:
        worker.stop()
        with redis.Redis.from_url(redis_url) as client:
            client.delete(queue, f"_kombu.binding.{queue}")


def _wait_until(condition, worker: ManagedProcess, failure: str) -> None:
    """Poll ``condition`` until it holds, failing at once (with its output) if the worker dies."""
    deadline = time.monotonic() + RESULT_TIMEOUT
    while not condition():
        worker.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"{failure}\n" + worker.describe())
        time.sleep(0.2)


def _reroute() -> None:
    """Celery reads ``task_routes`` once, at its first message: read them again."""
    current_app.amqp.flush_routes()
    current_app.amqp.__dict__.pop("router", None)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_reconcile_stale_calls_runs_on_a_real_worker(
    redis_url, postgres_database_url, start_process
):
    assert connection.vendor == "postgresql"
    assert not current_app.conf.task_always_eager, "REDIS_URL set must turn eager Celery off"
    assert current_app.conf.broker_url == redis_url

    run = uuid.uuid4().hex[:12]
    agent = Agent.objects.create(name="Stale probe", slug=f"stale-{run}", max_call_duration=10)
    long_ago = timezone.now() - timedelta(days=1)
    stale = Call.objects.create(
        agent=agent, carrier="twilio", direction="inbound", status=CallStatus.IN_PROGRESS
    )
    Call.objects.filter(pk=stale.pk).update(created_at=long_ago, answered_at=long_ago)
    fresh = Call.objects.create(
        agent=agent, carrier="twilio", direction="inbound", status=CallStatus.IN_PROGRESS
    )

    with _worker_on_own_queue(start_process, redis_url, postgres_database_url) as (queue, worker):
        result = reconcile_stale_calls.apply_async(queue=queue)
        try:
            closed = _wait_for_result(result, worker, RESULT_TIMEOUT)
        finally:
            result.forget()

    assert closed == 1
    assert f"voiceagents.reconcile_stale_calls[{result.id}] succeeded" in worker.output()
    stale.refresh_from_db()
    assert stale.status == CallStatus.FAILED
    assert stale.end_reason == "stale"
    assert stale.ended_at is not None and stale.duration is not None
    assert CallEvent.objects.filter(call=stale, data__reason="stale").count() == 1
    fresh.refresh_from_db()
    assert fresh.status == CallStatus.IN_PROGRESS, "a call within its maximum duration was closed"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_call_webhook_is_retried_through_the_broker(
    redis_url, postgres_database_url, start_process
):
    """The receiver fails first: the retry waits in Redis (a countdown), then the worker delivers."""
    run = uuid.uuid4().hex[:12]
    agent = Agent.objects.create(name="Webhook probe", slug=f"hook-{run}")
    call = Call.objects.create(
        agent=agent, carrier="twilio", direction="inbound", status=CallStatus.COMPLETED
    )
    TranscriptEntry.objects.create(call=call, seq=0, role="agent", text="Hello.")
    secret = "whsec-integration"
    with (
        Receiver(500, 200) as receiver,
        _worker_on_own_queue(
            start_process,
            redis_url,
            postgres_database_url,
            VOICEAGENTS_CALL_WEBHOOK_URL=receiver.url,
            VOICEAGENTS_CALL_WEBHOOK_SECRET=secret,
            VOICEAGENTS_CALL_WEBHOOK_ALLOW_PRIVATE="1",
            VOICEAGENTS_CALL_WEBHOOK_RETRY_DELAY="1",
        ) as (queue, worker),
    ):
        deliver_call_webhook.apply_async(args=[str(call.pk)], queue=queue)
        delivered = CallEvent.objects.filter(
            call=call, kind=CallEventKind.WEBHOOK, data__outcome="delivered"
        )
        _wait_until(
            lambda: len(receiver.requests) >= 2 and delivered.exists(),
            worker,
            "the webhook was not delivered",
        )
    first, second = receiver.requests
    assert verify(second, secret)["transcript"][0]["text"] == "Hello."
    assert second["headers"]["X-VoiceAgents-Delivery-Attempt"] == "2"
    assert "retry: Retry in 1.0s" in worker.output(), worker.output()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_calls_ended_together_are_finalized_by_one_task_on_a_real_worker(
    redis_url, postgres_database_url, start_process
):
    """``voiceagents.postcall``: the ends of three calls reach the worker as one message."""
    now = timezone.now()
    calls = [make_call(answered_at=now - timedelta(seconds=30), ended_at=now) for _ in range(3)]
    routes = current_app.conf.task_routes
    with _worker_on_own_queue(start_process, redis_url, postgres_database_url) as (queue, worker):
        current_app.conf.task_routes = {"voiceagents.finalize_calls": {"queue": queue}}
        _reroute()
        try:
            for call in calls:
                postcall.queue_finalize(call.pk)
            unfinalized = Call.objects.filter(pk__in=[c.pk for c in calls], duration__isnull=True)
            _wait_until(lambda: not unfinalized.exists(), worker, "the calls were not finalized")
        finally:
            current_app.conf.task_routes = routes
            _reroute()
    output = worker.output()
    assert len(re.findall(r"Task voiceagents\.finalize_calls\[\S+\] received", output)) == 1, output
    for call in calls:
        call.refresh_from_db()
        assert call.duration == timedelta(seconds=30)
