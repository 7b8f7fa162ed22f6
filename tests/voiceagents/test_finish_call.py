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

RECORDING = b"RIFF....WAVE"


@pytest.fixture
def media(tmp_path, settings):
    """``MEDIA_ROOT`` (a file system storage's root) in the test's directory."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def live_call():
    return Call.objects.create(carrier="twilio", direction="inbound", status=CallStatus.IN_PROGRESS)


@pytest.fixture
def wav(tmp_path):
    """A finished recording at its temporary path."""
    path = tmp_path / "call.wav"
    path.write_bytes(RECORDING)
    return path


def _stored(media):
    return [p for p in media.rglob("*") if p.is_file()]


def _ending(call, wav, **kw):
    end = dict(
        failed=False,
        end_reason="caller_hangup",
        error="",
        metrics={},
        recording_path=str(wav),
        recording_ms=100,
    )
    return finish_call(call.pk, **{**end, **kw})


def test_the_end_is_one_read_and_one_update_and_stores_everything(wav):
    answered = timezone.now() - timedelta(seconds=3)
    call = Call.objects.create(
        carrier="twilio",
        direction="inbound",
        status=CallStatus.IN_PROGRESS,
        answered_at=answered,
        metrics={"kept": 1},
        from_number="+15550001111",
    )
    with CaptureQueriesContext(connection) as queries:
        status, reason = _ending(
            call, wav, metrics={"turns": 2}, recording_ms=2500, provider_session_id="sess_1"
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
    assert call.recording.read() == RECORDING
    assert call.recording_duration == timedelta(milliseconds=2500)
    assert call.from_number == "+15550001111"
    assert not wav.exists()


def test_a_file_system_storage_moves_the_recording_into_place_instead_of_copying_it(
    media, live_call, wav
):
    call = live_call
    inode = wav.stat().st_ino
    _ending(call, wav)
    call.refresh_from_db()
    stored = media / call.recording.name
    # The same file, renamed (one file system here): no copy was written.
    assert stored.stat().st_ino == inode
    assert stored.read_bytes() == RECORDING and not wav.exists()


def test_a_recording_moved_before_the_end_failed_is_put_back_for_recovery(media, live_call, wav):
    """The UPDATE after the move fails (a metric the database cannot store), the transaction
    rolls back: the recording is back where recovery looks, and storage keeps no copy that no
    row names."""
    call = live_call
    with pytest.raises(TypeError):
        _ending(call, wav, metrics={"not json": object()})
    assert wav.read_bytes() == RECORDING
    assert not _stored(media)
    call.refresh_from_db()
    assert call.status == CallStatus.IN_PROGRESS and not call.recording


def test_a_recording_in_a_storage_off_this_file_system_is_copied_back(settings, live_call, wav):
    """A storage whose files are not on this machine's file system (``InMemoryStorage`` here,
    a bucket in production): the recording is read back from it, and the stored copy deleted."""
    from django.core.files.storage import InMemoryStorage, default_storage, storages

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    assert isinstance(storages["default"], InMemoryStorage)
    with pytest.raises(TypeError):
        _ending(live_call, wav, metrics={"not json": object()})
    assert wav.read_bytes() == RECORDING
    folders = [""]
    while folders:  # nothing left anywhere in the storage
        folder = folders.pop()
        subfolders, files = default_storage.listdir(folder)
        assert files == []
        folders += [f"{folder}/{sub}".lstrip("/") for sub in subfolders]


@pytest.mark.django_db(transaction=True)
def test_a_commit_that_fails_leaves_the_recording_both_stored_and_back_for_recovery(
    media, live_call, wav
):
    """Only the COMMIT fails (a deferred constraint trigger, PostgreSQL): it may have happened
    unacknowledged, so the stored copy stays and the recording is back at its temporary path
    too (recovery removes that one if the row names the stored copy)."""
    if connection.vendor != "postgresql":
        pytest.skip("a constraint that fails at COMMIT needs PostgreSQL's constraint triggers")
    call = live_call
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION va_test_refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused at commit'; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE CONSTRAINT TRIGGER va_test_refuse AFTER UPDATE ON voiceagents_call "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "WHEN (NEW.end_reason = 'refused_at_commit') EXECUTE FUNCTION va_test_refuse()"
        )
    try:
        with pytest.raises(Exception, match="refused at commit"):
            _ending(call, wav, end_reason="refused_at_commit")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER va_test_refuse ON voiceagents_call")
            cursor.execute("DROP FUNCTION va_test_refuse()")
    assert wav.read_bytes() == RECORDING
    (stored,) = _stored(media)
    assert stored.read_bytes() == RECORDING
    call.refresh_from_db()
    assert call.status == CallStatus.IN_PROGRESS and not call.recording
