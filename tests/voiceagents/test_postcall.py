"""Post-call work queued in batches (``voiceagents.postcall``): one Celery message for the calls a
process ended within a window, read back from Celery's in-memory broker."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from tests.voiceagents.factories import make_call
from voiceagents import postcall
from voiceagents.tasks import finalize_call, finalize_calls


@pytest.fixture
def broker():
    """Celery's in-memory broker of the test settings, read instead of eager Celery: its
    messages, as (task, args). (The integration run has Redis: tests/integration covers it.)"""
    conf = current_app.conf
    if not conf.broker_url.startswith("memory://"):
        pytest.skip("the broker is not Celery's in-memory one")
    eager = conf.task_always_eager
    conf.task_always_eager = False
    yield messages
    conf.task_always_eager = eager


def messages(timeout: float = 2.0) -> list[tuple[str, list]]:
    """What reached the broker: waits for the first message, then takes all that follow."""
    got = []
    with current_app.connection_for_read() as conn:
        queue = conn.SimpleQueue(current_app.conf.task_default_queue)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                if got:
                    break
                continue
            args, _kwargs, _embed = message.decode()
            got.append((message.headers["task"], args))
            message.ack()
        queue.close()
    return got


def test_calls_ended_together_are_sent_as_one_task(broker):
    assert not finalize_call.app.conf.task_always_eager
    for n in range(5):
        postcall.queue_finalize(f"call-{n}")
    assert broker() == [("voiceagents.finalize_calls", [[f"call-{n}" for n in range(5)]])]


def test_a_large_window_is_split_at_the_batch_limit(broker, monkeypatch):
    monkeypatch.setattr(postcall, "MAX_BATCH", 2)
    for n in range(5):
        postcall.queue_finalize(f"call-{n}")
    sent = broker()
    assert [len(args[0]) for _, args in sent] == [2, 2, 1]
    assert [i for _, args in sent for i in args[0]] == [f"call-{n}" for n in range(5)]


def test_calls_apart_are_sent_apart(broker):
    postcall.queue_finalize("early")
    first = broker()
    postcall.queue_finalize("late")
    assert first == [("voiceagents.finalize_calls", [["early"]])]
    assert broker() == [("voiceagents.finalize_calls", [["late"]])]


@pytest.mark.django_db
def test_one_failing_call_does_not_hold_up_the_others(caplog):
    now = timezone.now()
    ended = [make_call(answered_at=now - timedelta(seconds=5), ended_at=now) for _ in range(2)]
    ids = [str(ended[0].pk), "not-a-call-id", str(ended[1].pk)]
    outcomes = finalize_calls.apply(args=[ids]).get()
    assert outcomes == {ids[0]: "completed", ids[1]: "requeued", ids[2]: "completed"}
    for call in ended:
        call.refresh_from_db()
        # Reconciled from its times by finalize_call (the rows were made without it).
        assert call.duration == timedelta(seconds=5), "finalize_call did not run for every call"
    assert "finalize_calls: call not-a-call-id failed" in caplog.text
