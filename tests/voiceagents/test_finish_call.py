"""``finish_call``: the end of a call is one locked read of the columns it needs and one UPDATE
of the columns it writes (no whole-row save, no deferred column read on the way)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from voiceagents.call.callsetup import finish_call
from voiceagents.models import Call, CallStatus

pytestmark = pytest.mark.django_db


def test_the_end_is_one_read_and_one_update_and_stores_everything(tmp_path):
    answered = timezone.now() - timedelta(seconds=3)
    call = Call.objects.create(
        carrier="twilio",
        direction="inbound",
        status=CallStatus.IN_PROGRESS,
        answered_at=answered,
        metrics={"kept": 1},
        from_number="+15550001111",
    )
    wav = tmp_path / "call.wav"
    wav.write_bytes(b"RIFF....WAVE")
    with CaptureQueriesContext(connection) as queries:
        status, reason = finish_call(
            call.pk,
            failed=False,
            end_reason="caller_hangup",
            error="",
            metrics={"turns": 2},
            recording_path=str(wav),
            recording_ms=2500,
            provider_session_id="sess_1",
        )
    sql = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert sql.count("SELECT") == 1 and sql.count("UPDATE") == 1, queries.captured_queries
    update = next(q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE"))
    assert "from_number" not in update and "carrier_call_id" not in update
    assert (status, reason) == (CallStatus.COMPLETED, "caller_hangup")
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED and call.end_reason == "caller_hangup"
    assert call.metrics == {"kept": 1, "turns": 2}
    assert call.provider_session_id == "sess_1"
    assert call.duration is not None and call.duration >= timedelta(seconds=3)
    assert call.recording.name.endswith(f"{call.pk}.wav")
    assert call.recording.read() == b"RIFF....WAVE"
    assert call.recording_duration == timedelta(milliseconds=2500)
    assert call.from_number == "+15550001111"
    assert not wav.exists()


def test_a_file_system_storage_moves_the_recording_into_place_instead_of_copying_it(
    tmp_path, settings
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    call = Call.objects.create(carrier="twilio", direction="inbound", status=CallStatus.IN_PROGRESS)
    wav = tmp_path / "call.wav"
    wav.write_bytes(b"RIFF....WAVE")
    inode = wav.stat().st_ino
    finish_call(
        call.pk,
        failed=False,
        end_reason="caller_hangup",
        error="",
        metrics={},
        recording_path=str(wav),
        recording_ms=100,
    )
    call.refresh_from_db()
    stored = tmp_path / "media" / call.recording.name
    # The same file, renamed (one file system here): no copy was written.
    assert stored.stat().st_ino == inode
    assert stored.read_bytes() == b"RIFF....WAVE" and not wav.exists()
