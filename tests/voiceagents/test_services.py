from datetime import timedelta

import pytest
from django.utils import timezone

from voiceagents import services, tasks
from voiceagents.models import Agent, Call, CallEvent, CallStatus

pytestmark = pytest.mark.django_db


def make_call(agent, status, age, answered=True):
    call = Call.objects.create(agent=agent, carrier="twilio", direction="inbound", status=status)
    created = timezone.now() - age
    Call.objects.filter(pk=call.pk).update(
        created_at=created, answered_at=created if answered else None
    )
    return Call.objects.get(pk=call.pk)


def test_reconcile_closes_only_calls_past_max_duration_plus_grace(voiceagents_settings):
    voiceagents_settings["STALE_CALL_GRACE"] = 60
    agent = Agent.objects.create(name="a", slug="a", max_call_duration=600)
    stale = make_call(agent, CallStatus.IN_PROGRESS, timedelta(seconds=700))
    fresh = make_call(agent, CallStatus.IN_PROGRESS, timedelta(seconds=500))
    finished = make_call(agent, CallStatus.COMPLETED, timedelta(days=1))

    assert services.reconcile_stale_calls() == 1

    stale.refresh_from_db()
    assert stale.status == CallStatus.FAILED
    assert stale.end_reason == "stale"
    assert stale.duration >= timedelta(seconds=700)
    assert CallEvent.objects.filter(call=stale, kind="status").count() == 1
    fresh.refresh_from_db()
    assert fresh.status == CallStatus.IN_PROGRESS
    finished.refresh_from_db()
    assert finished.status == CallStatus.COMPLETED
    assert services.reconcile_stale_calls() == 0  # idempotent


def test_reconcile_task_runs_the_service():
    agent = Agent.objects.create(name="a", slug="a", max_call_duration=10)
    make_call(agent, CallStatus.RINGING, timedelta(hours=2), answered=False)
    assert tasks.reconcile_stale_calls.apply().get() == 1
    assert Call.objects.get().duration is None  # never answered: no talk time


def test_deleting_a_call_deletes_its_recording_file(django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile

    call = Call.objects.create(carrier="twilio", direction="inbound")
    call.recording.save("x.wav", ContentFile(b"RIFF...."))
    storage, name = call.recording.storage, call.recording.name
    assert storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        call.delete()
    assert not storage.exists(name)


def test_old_webhook_dedup_records_are_pruned(voiceagents_settings):
    from voiceagents.models import ProcessedWebhookEvent

    voiceagents_settings["WEBHOOK_EVENT_RETENTION"] = 3600
    old = ProcessedWebhookEvent.objects.create(carrier="telnyx", event_id="old")
    ProcessedWebhookEvent.objects.filter(pk=old.pk).update(
        received_at=timezone.now() - timedelta(hours=2)
    )
    ProcessedWebhookEvent.objects.create(carrier="telnyx", event_id="new")
    assert tasks.prune_processed_webhook_events.apply().get() == 1
    assert list(ProcessedWebhookEvent.objects.values_list("event_id", flat=True)) == ["new"]
