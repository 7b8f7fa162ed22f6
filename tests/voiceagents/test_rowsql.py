"""``rowsql``: a call's narrow read and update by statements built once, against the real test
database (SQLite by default, PostgreSQL with DATABASE_URL): every kind of column the call's
start and end use comes back as the ORM reads it, and goes in as the ORM writes it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.voiceagents.factories import make_agent, make_call
from voiceagents.call import rowsql
from voiceagents.call.callsetup import _END_READ_FIELDS, _START_FIELDS
from voiceagents.models import Call, CallStatus

pytestmark = pytest.mark.django_db

EVERY_KIND = (*_START_FIELDS, *_END_READ_FIELDS)


@pytest.fixture
def call():
    now = timezone.now()
    return make_call(
        agent=make_agent(),
        status=CallStatus.IN_PROGRESS,
        answered_at=now - timedelta(seconds=7),
        stream_token_used_at=now,
        duration=timedelta(seconds=3, microseconds=250_000),
        metrics={"turns": 2, "nested": {"ms": [1.5, 2]}},
        outbound_options={"variables": {"name": "Ada"}},
        answered_by="human",
        recording="voiceagents/recordings/2026/12/04/x.wav",
        recording_duration=timedelta(milliseconds=2500),
        error="line one\nline 'two'",
    )


def test_a_read_gives_what_the_orm_gives_for_every_column_the_call_uses(call):
    with transaction.atomic():
        read = rowsql.read(Call, call.pk, EVERY_KIND, lock=True)
    orm = Call.objects.only(*EVERY_KIND).get(pk=call.pk)
    assert isinstance(read, Call) and read.pk == call.pk
    for name in EVERY_KIND:
        attname = Call._meta.get_field(name).attname
        assert getattr(read, attname) == getattr(orm, attname), name
    assert read.answered_at.tzinfo is not None
    assert read.recording.name == "voiceagents/recordings/2026/12/04/x.wav"
    # Only those columns were loaded; another is read on demand, as with .only().
    assert "carrier_status_seq" in read.get_deferred_fields()


def test_a_locked_read_locks_where_the_database_can(call):
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        rowsql.read(Call, call.pk, _START_FIELDS, lock=True)
    (select,) = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert select.endswith("FOR UPDATE") == connection.features.has_select_for_update


@pytest.mark.django_db(transaction=True)  # no test-wide transaction around it
def test_a_locked_read_needs_a_transaction(call):
    with pytest.raises(TransactionManagementError):
        rowsql.read(Call, call.pk, _START_FIELDS, lock=True)


def test_a_missing_row_reads_as_none():
    assert rowsql.read(Call, uuid.uuid4(), _START_FIELDS) is None


def test_an_update_writes_only_its_columns_as_the_orm_would(call):
    row = rowsql.read(Call, call.pk, _END_READ_FIELDS)
    ended = timezone.now()
    row.status = CallStatus.COMPLETED
    row.ended_at = ended
    row.duration = timedelta(minutes=2, microseconds=1)
    row.metrics = {"kept": None, "text": 'é "quoted"'}
    row.error = ""
    row.recording = "voiceagents/recordings/2026/12/04/y.wav"
    Call.objects.filter(pk=call.pk).update(to_number="+15550009999")  # not among its columns

    with CaptureQueriesContext(connection) as queries:
        rowsql.update(row, ["status", "ended_at", "duration", "metrics", "error", "recording"])

    (update,) = [q["sql"] for q in queries.captured_queries]
    assert update.startswith("UPDATE") and "to_number" not in update
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.ended_at == ended
    assert call.duration == timedelta(minutes=2, microseconds=1)
    assert call.metrics == {"kept": None, "text": 'é "quoted"'}
    assert call.error == ""
    assert call.recording.name == "voiceagents/recordings/2026/12/04/y.wav"
    assert call.to_number == "+15550009999"  # the concurrent write to another column stands


def test_an_update_of_a_row_that_is_gone_fails_like_save_with_update_fields(call):
    row = rowsql.read(Call, call.pk, _END_READ_FIELDS)
    Call.objects.filter(pk=call.pk).delete()
    row.status = CallStatus.COMPLETED
    with pytest.raises(DatabaseError):
        rowsql.update(row, ["status"])


def test_the_primary_key_is_not_updated_here(call):
    with pytest.raises(ValueError):
        rowsql.update(call, ["id"])


def test_an_insert_stores_the_row_as_save_would(call):
    from voiceagents.models import CallEvent

    before = timezone.now()
    event = CallEvent(call_id=call.pk, kind="status", at_ms=0, data={"to": "in_progress", "n": [1]})
    with CaptureQueriesContext(connection) as queries:
        rowsql.insert(event)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    (stored,) = CallEvent.objects.filter(call=call)
    assert (stored.kind, stored.at_ms, stored.data) == (
        "status",
        0,
        {"to": "in_progress", "n": [1]},
    )
    assert stored.created_at >= before  # auto_now_add, as save() sets it
    assert not event._state.adding


def _turn(call, seq, text, **kw):
    from voiceagents.models import TranscriptEntry

    fields = {
        "role": "agent",
        "start_ms": 100 * seq,
        "end_ms": 100 * seq + 50,
        "interrupted": False,
    }
    return TranscriptEntry(call_id=call.pk, seq=seq, text=text, **{**fields, **kw})


def _stored_turns(call):
    from voiceagents.models import TranscriptEntry

    return list(
        TranscriptEntry.objects.filter(call=call)
        .order_by("seq")
        .values_list("seq", "role", "text", "start_ms", "end_ms", "interrupted")
    )


def test_insert_many_stores_the_rows_as_bulk_create_would_in_one_statement(call):
    from voiceagents.models import CallEvent, TranscriptEntry

    other = make_call(agent=call.agent)
    mine = [_turn(call, 0, "hello 'there'"), _turn(call, 1, "", role="caller", interrupted=True)]
    theirs = [
        _turn(other, 0, "hello 'there'"),
        _turn(other, 1, "", role="caller", interrupted=True),
    ]
    with CaptureQueriesContext(connection) as queries:
        rowsql.insert_many(mine)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    TranscriptEntry.objects.bulk_create(theirs)
    assert _stored_turns(call) == _stored_turns(other) != []
    assert all(not entry._state.adding for entry in mine)

    before = timezone.now()
    rowsql.insert_many(
        [CallEvent(call_id=call.pk, kind="status", at_ms=n, data={"n": [n]}) for n in range(3)]
    )
    stored = CallEvent.objects.filter(call=call).order_by("at_ms")
    assert [(e.kind, e.at_ms, e.data) for e in stored] == [
        ("status", n, {"n": [n]}) for n in range(3)
    ]
    assert all(e.created_at >= before for e in stored)


def test_insert_many_upserts_as_bulk_create_with_update_conflicts_would(call):
    from voiceagents.call.transcripts import TURN_UPSERT
    from voiceagents.models import TranscriptEntry

    other = make_call(agent=call.agent)
    for target, write in (
        (call, lambda rows: rowsql.insert_many(rows, upsert=TURN_UPSERT)),
        (
            other,
            lambda rows: TranscriptEntry.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=list(TURN_UPSERT[0]),
                update_fields=list(TURN_UPSERT[1]),
            ),
        ),
    ):
        write([_turn(target, 0, "first"), _turn(target, 1, "second")])
        # A retried batch and a corrected turn: the role is not among the updated columns.
        write([_turn(target, 1, "second, corrected", role="caller", interrupted=True)])
        write([_turn(target, 1, "second, corrected", role="caller", interrupted=True)])
    assert _stored_turns(call) == _stored_turns(other)
    assert _stored_turns(call)[1] == (1, "agent", "second, corrected", 100, 150, True)


def test_insert_many_splits_what_is_more_than_one_statement_takes(call, monkeypatch):
    monkeypatch.setattr(rowsql, "MAX_BATCH", 2)
    rows = [_turn(call, seq, f"turn {seq}") for seq in range(5)]
    with CaptureQueriesContext(connection) as queries:
        rowsql.insert_many(rows)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"] * 3
    assert [text for _, _, text, *_ in _stored_turns(call)] == [f"turn {n}" for n in range(5)]


def test_insert_many_takes_one_model_at_a_time(call):
    from voiceagents.models import CallEvent

    with pytest.raises(TypeError):
        rowsql.insert_many([_turn(call, 0, "x"), CallEvent(call_id=call.pk, kind="status")])
    with CaptureQueriesContext(connection) as queries:
        rowsql.insert_many([])  # nothing to write: no statement, no error
    assert queries.captured_queries == []
