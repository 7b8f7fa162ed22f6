"""RETENTION_DAYS: recordings and transcripts of old calls are deleted, the call rows stay."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.voiceagents.factories import add_transcript, attach_recording, make_call
from voiceagents import tasks
from voiceagents.exceptions import ConfigurationError
from voiceagents.models import Call, CallStatus, TranscriptEntry
from voiceagents.retention import purge_expired_call_content

pytestmark = pytest.mark.django_db


def call_with_content(age_days: float, **fields) -> Call:
    call = make_call(**fields)
    attach_recording(call)
    add_transcript(call, {"seq": 0, "role": "caller", "text": "my card number is 4242"})
    Call.objects.filter(pk=call.pk).update(created_at=timezone.now() - timedelta(days=age_days))
    call.refresh_from_db()
    return call


def retained(call: Call) -> tuple[bool, bool, int]:
    """(recording referenced, recording file present, transcript entries)."""
    name = call.recording.name
    call.refresh_from_db()
    return (
        bool(call.recording),
        call.recording.storage.exists(name),
        TranscriptEntry.objects.filter(call=call).count(),
    )


def test_content_older_than_the_retention_period_is_deleted(settings):
    settings.VOICEAGENTS = {**settings.VOICEAGENTS, "RETENTION_DAYS": 30}
    old = call_with_content(31)
    recent = call_with_content(29)
    live = call_with_content(31, status=CallStatus.IN_PROGRESS)

    assert tasks.purge_expired_call_content() == {"recordings": 1, "transcript_entries": 1}

    assert retained(old) == (False, False, 0)
    assert retained(recent) == (True, True, 1)
    assert retained(live) == (True, True, 1)  # a call still running is nobody's to purge
    old.refresh_from_db()
    assert old.status == CallStatus.COMPLETED and old.recording_duration is None
    # Nothing left to do the second time.
    assert purge_expired_call_content().recordings == 0


def test_without_a_retention_period_everything_is_kept():
    old = call_with_content(3650)
    assert purge_expired_call_content().recordings == 0
    assert retained(old) == (True, True, 1)


@pytest.mark.parametrize("value", ["soon", -1])
def test_a_bad_retention_period_is_a_clear_error(settings, value):
    settings.VOICEAGENTS = {**settings.VOICEAGENTS, "RETENTION_DAYS": value}
    with pytest.raises(ConfigurationError, match="RETENTION_DAYS"):
        purge_expired_call_content()
