"""The shared transcript writer: one transaction per tick for all calls of an event loop.

Everything runs against the real test database (SQLite by default, PostgreSQL with
DATABASE_URL), through the real database thread of ``database_sync_to_async``.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import IntegrityError, connection, transaction

from tests.voiceagents.factories import make_call
from voiceagents.call.transcripts import BackgroundWriter, _BatchWriter
from voiceagents.models import Call, CallEvent, CallStatus, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 0.05
LOG = logging.getLogger("tests.transcripts")
WRITER_LOGGER = "voiceagents.call.transcripts"


class WriteLog:
    """An execute wrapper on the database thread's connection: every INSERT of a transcript entry
    or call event, with the transaction it ran in (the outermost atomic block, None when the
    statement committed on its own)."""

    def __init__(self):
        self.inserts: list[tuple[str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        statement = sql.lstrip().upper()
        if statement.startswith("INSERT") and (
            "VOICEAGENTS_TRANSCRIPTENTRY" in statement or "VOICEAGENTS_CALLEVENT" in statement
        ):
            blocks = context["connection"].atomic_blocks
            table = "transcript" if "TRANSCRIPTENTRY" in statement else "event"
            self.inserts.append((table, blocks[0] if blocks else None))
        return execute(sql, params, many, context)

    def transactions(self) -> int:
        """How many transactions the recorded INSERTs ran in."""
        outer = [block for _, block in self.inserts]
        return len({id(b) for b in outer if b is not None}) + outer.count(None)

    def clear(self):
        self.inserts.clear()


@pytest.fixture
async def write_log():
    """Installed on the connection of the thread that database_sync_to_async runs in."""
    log = WriteLog()
    # `connection` must be looked up in that thread (it is a thread-local).
    await database_sync_to_async(lambda: connection.execute_wrappers.append(log))()
    yield log
    await database_sync_to_async(lambda: connection.execute_wrappers.remove(log))()


async def eventually(predicate, timeout: float = 5.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def new_calls(n: int) -> list[Call]:
    return [await sync_to_async(make_call)(status=CallStatus.IN_PROGRESS) for _ in range(n)]


async def entries(call) -> list[tuple[int, str, str]]:
    rows = TranscriptEntry.objects.filter(call_id=call.pk).order_by("seq")
    return [(e.seq, e.role, e.text) async for e in rows]


async def entry_count(*calls) -> int:
    return await TranscriptEntry.objects.filter(call_id__in=[c.pk for c in calls]).acount()


async def event_count(*calls) -> int:
    return await CallEvent.objects.filter(call_id__in=[c.pk for c in calls]).acount()


def writer_for(call, **kwargs) -> BackgroundWriter:
    return BackgroundWriter(call.pk, LOG, interval=kwargs.pop("interval", INTERVAL), **kwargs)


async def started_writers(n: int, **kwargs) -> tuple[list[Call], list[BackgroundWriter]]:
    """``n`` live calls, each with a writer registered with the shared one."""
    calls = await new_calls(n)
    writers = [writer_for(call, **kwargs) for call in calls]
    for writer in writers:
        writer.start()
    return calls, writers


def say(writer: BackgroundWriter, role: str, text: str, *, settled: bool = True):
    turn = writer.new_turn(role, f"item-{writer._next_seq}", text=text)
    turn.settled = settled
    return turn


def assert_writer_task_gone():
    assert _BatchWriter.active() == []
    others = asyncio.all_tasks() - {asyncio.current_task()}
    assert not [t for t in others if t.get_name() == "voiceagents-transcript-writer"]


async def test_all_calls_are_written_in_one_transaction_per_tick(write_log):
    calls, writers = await started_writers(4)
    assert len(_BatchWriter.active()) == 1  # one shared task, not one per call
    for n, writer in enumerate(writers):
        say(writer, "agent", f"hello {n}")
        say(writer, "caller", f"hi {n}")
        writer.event("dtmf", 100 + n, digit=str(n))

    await eventually(lambda: entry_count(*calls), what="the first rows")
    assert await entry_count(*calls) == 8  # all calls at once: the same tick
    assert await event_count(*calls) == 4
    # One INSERT per model for all four calls, both in a single transaction.
    assert [table for table, _ in write_log.inserts] == ["transcript", "event"]
    assert write_log.transactions() == 1

    write_log.clear()
    for n, writer in enumerate(writers):
        say(writer, "agent", f"bye {n}")
    await eventually(lambda: entry_count(*calls), what="the second rows")
    await eventually(lambda: write_log.inserts, what="the second tick")
    assert await entry_count(*calls) == 12
    assert [table for table, _ in write_log.inserts] == ["transcript"]
    assert write_log.transactions() == 1

    for writer in writers:
        await writer.close()
    assert [w.rows_written for w in writers] == [4, 4, 4, 4]
    for n, call in enumerate(calls):
        assert await entries(call) == [
            (0, "agent", f"hello {n}"),
            (1, "caller", f"hi {n}"),
            (2, "agent", f"bye {n}"),
        ]
    assert await event_count(*calls) == 4  # nothing written twice
    assert_writer_task_gone()


async def test_conversation_order_survives_a_caller_turn_that_settles_late():
    """OpenAI transcribes the caller after the agent has already answered."""
    (call,) = await new_calls(1)
    played = set()

    def settle():
        for turn in writer.turns.values():
            if turn.role == "agent" and turn.turn_id in played:
                turn.settled = True

    writer = writer_for(call, settle=settle)
    writer.start()
    caller = writer.new_turn("caller", "c1")  # speech started: seq 0, no text yet
    agent = writer.new_turn("agent", "a1", text="Sure, one moment.")
    played.add("a1")  # the agent's reply has played: the settle callback settles it

    await eventually(lambda: agent.written, what="the agent turn")
    assert await entries(call) == [(1, "agent", "Sure, one moment.")]
    assert not caller.written

    caller.text, caller.settled = "Can you check my order?", True
    await eventually(lambda: caller.written, what="the caller turn")
    assert await entries(call) == [
        (0, "caller", "Can you check my order?"),
        (1, "agent", "Sure, one moment."),
    ]
    # Written in the order they settled, read back in the order they were said.
    by_pk = [e.role async for e in TranscriptEntry.objects.filter(call=call).order_by("pk")]
    assert by_pk == ["agent", "caller"]
    await writer.close()
    assert_writer_task_gone()


async def test_closing_one_call_writes_its_rest_at_once_while_the_others_go_on(write_log):
    # A long interval: whatever is written before the next tick was written by close().
    (first, second), (a, b) = await started_writers(2, interval=30)
    say(a, "agent", "Hello!")
    say(a, "caller", "I was cut off", settled=False)  # the call ends before it settles
    a.event("error", 5, code="x")
    say(b, "agent", "Hi there")

    await asyncio.wait_for(a.close(), 5)
    assert await entries(first) == [(0, "agent", "Hello!"), (1, "caller", "I was cut off")]
    assert await event_count(first) == 1
    assert write_log.transactions() == 1  # the closing call alone
    assert await entry_count(second) == 0  # not the other call's rows
    batcher = _BatchWriter.active()
    assert len(batcher) == 1 and not batcher[0].task.done()  # still working for the other call
    assert list(batcher[0].writers) == [b]

    await b.close()
    assert await entries(second) == [(0, "agent", "Hi there")]
    assert_writer_task_gone()


async def test_the_other_call_keeps_being_written_after_one_closes():
    (first, second), (a, b) = await started_writers(2)
    say(a, "agent", "one")
    await a.close()
    say(b, "agent", "two")
    await eventually(lambda: entry_count(second), what="the other call's rows")
    assert len(_BatchWriter.active()) == 1
    await b.close()
    assert await entries(first) == [(0, "agent", "one")]
    assert await entries(second) == [(0, "agent", "two")]
    assert_writer_task_gone()


async def test_close_during_a_shared_batch_in_flight_waits_and_writes_everything_once():
    (first, second), (a, b) = await started_writers(2)
    say(a, "agent", "in the batch")
    a.event("dtmf", 1, digit="1")
    say(b, "agent", "also in the batch")

    # Keep the database thread busy, so that the tick's write waits in the queue behind it.
    release = threading.Event()
    blocker = asyncio.ensure_future(database_sync_to_async(release.wait)(10))
    try:
        await eventually(lambda: a._busy is not None, what="the batch to be in flight")
        say(a, "caller", "after the batch was taken", settled=False)
        a.event("dtmf", 2, digit="2")
        closing = asyncio.ensure_future(a.close())
        await asyncio.sleep(0.1)
        assert not closing.done()  # it waits for the batch holding its rows
    finally:
        release.set()
    await blocker
    await asyncio.wait_for(closing, 5)

    assert await entries(first) == [
        (0, "agent", "in the batch"),
        (1, "caller", "after the batch was taken"),
    ]
    digits = [e.data["digit"] async for e in CallEvent.objects.filter(call=first).order_by("pk")]
    assert digits == ["1", "2"]
    assert a.rows_written == 4
    await eventually(lambda: entry_count(second), what="the other call's rows")
    await b.close()
    assert await entries(second) == [(0, "agent", "also in the batch")]
    assert_writer_task_gone()


async def test_a_call_deleted_mid_call_does_not_stop_the_others(write_log, caplog):
    caplog.set_level(logging.INFO, logger=WRITER_LOGGER)
    calls, writers = await started_writers(3)
    good1, gone, good2 = calls
    w1, w_gone, w2 = writers
    for writer in writers:
        say(writer, "agent", "hello")
    await eventually(lambda: all(w.rows_written for w in writers), what="the first rows")

    await Call.objects.filter(pk=gone.pk).adelete()  # an operator deletes a live call
    for writer in writers:
        say(writer, "caller", "second")
        writer.event("dtmf", 10, digit="5")
    await eventually(lambda: w1.rows_written == 3 and w2.rows_written == 3, what="the others")
    assert await entry_count(good1, good2) == 4
    assert await event_count(good1, good2) == 2
    assert not w_gone.turns["item-1"].written
    assert w_gone.events  # kept in memory for a retry

    # From now on the failing call is written on its own; the others still share one transaction.
    write_log.clear()
    for writer in writers:
        say(writer, "agent", "third")
    await eventually(lambda: w1.rows_written == 4 and w2.rows_written == 4, what="third rows")
    shared = {block for table, block in write_log.inserts if block is not None}
    assert len(shared) >= 2  # the two good calls' batch and the deleted call's own attempt
    good_batches = [
        block
        for block in shared
        if [t for t, b in write_log.inserts if b is block] == ["transcript"]
    ]
    assert good_batches  # the two good calls: one INSERT in one transaction
    await asyncio.sleep(INTERVAL * 4)  # a few more failing ticks

    failures = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == WRITER_LOGGER]
    assert len(failures) == 1  # once, not at every retry
    assert str(gone.pk) in failures[0].getMessage()
    assert str(good1.pk) not in failures[0].getMessage()
    assert failures[0].exc_info[0] is IntegrityError

    with pytest.raises(IntegrityError):
        await w_gone.close()  # the final write fails loudly, as before
    await w1.close()
    await w2.close()
    for call in (good1, good2):
        assert await entries(call) == [
            (0, "agent", "hello"),
            (1, "caller", "second"),
            (2, "agent", "third"),
        ]
    assert await event_count(good1, good2) == 2
    assert_writer_task_gone()


class HeldLock:
    """A real lock held by another connection, then a real failure of the writer's write.

    SQLite: a write transaction in another thread (the in-memory test database's shared cache
    refuses a second writer at once). PostgreSQL: a table lock the writer's INSERT waits on,
    and then its backend is terminated, as a database restart or an idle-killer would.
    """

    def __init__(self):
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold)
        self.error: BaseException | None = None

    def _hold(self):
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute("LOCK TABLE voiceagents_transcriptentry IN EXCLUSIVE MODE")
                else:
                    Call.objects.create(carrier="twilio", direction="inbound")  # rolled back
                self.locked.set()
                self.release.wait(10)
                transaction.set_rollback(True)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err
            self.locked.set()
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        self.locked.wait(10)
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(10)

    @staticmethod
    def terminate_waiting_writer() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND pid <> pg_backend_pid()"
            )
            killed = any(row[0] for row in cursor.fetchall())
        connection.close()
        return killed


async def test_a_transient_database_failure_is_retried_without_loss_or_duplicates(caplog):
    caplog.set_level(logging.INFO, logger=WRITER_LOGGER)
    (first, second), (a, b) = await started_writers(2)
    say(a, "agent", "before")
    await eventually(lambda: a.rows_written, what="the first row")

    with HeldLock():
        for writer in (a, b):
            say(writer, "agent", "during")
            say(writer, "caller", "the outage")
            writer.event("dtmf", 7, digit="7")
        if connection.vendor == "postgresql":
            # Another thread: the database thread is stuck in the writer's INSERT.
            await eventually(
                sync_to_async(HeldLock.terminate_waiting_writer, thread_sensitive=False),
                what="the writer to wait on the lock",
            )

        def failed():
            return any(r.levelno >= logging.ERROR for r in caplog.records)

        await eventually(failed, what="the failure")
        assert not b.turns["item-0"].written  # both calls' rows are kept
        await asyncio.sleep(INTERVAL * 3)  # and retried while the lock is held
    await eventually(lambda: b.rows_written == 3 and a.rows_written == 4, what="the retry")

    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert str(first.pk) in failures[0].getMessage() and str(second.pk) in failures[0].getMessage()
    assert any("written again" in r.getMessage() for r in caplog.records)
    await a.close()
    await b.close()
    assert await entries(first) == [
        (0, "agent", "before"),
        (1, "agent", "during"),
        (2, "caller", "the outage"),
    ]
    assert await entries(second) == [(0, "agent", "during"), (1, "caller", "the outage")]
    assert await event_count(first) == 1 and await event_count(second) == 1
    assert_writer_task_gone()


async def test_idle_calls_cost_no_settling_and_no_write(write_log):
    (call,) = await new_calls(1)
    settled = []
    writer = writer_for(call, settle=lambda: settled.append(1))
    writer.start()
    await asyncio.sleep(INTERVAL * 5)
    assert settled == []  # nothing unwritten: the tick does not even ask the session
    assert write_log.inserts == []
    turn = say(writer, "agent", "playing", settled=False)
    await eventually(lambda: len(settled) >= 2, what="settling while a turn is open")
    turn.settled = True
    await eventually(lambda: turn.written, what="the turn")
    count = len(settled)
    await asyncio.sleep(INTERVAL * 5)
    assert len(settled) == count  # written: no more work for this call
    await writer.close()
    assert_writer_task_gone()


async def test_flush_writes_now_and_close_without_start_still_writes():
    (call,) = await new_calls(1)
    writer = writer_for(call, interval=30)
    say(writer, "agent", "settled")
    say(writer, "caller", "open", settled=False)
    await writer.flush(final=False)
    assert await entries(call) == [(0, "agent", "settled")]
    await writer.flush(final=True)
    assert await entries(call) == [(0, "agent", "settled"), (1, "caller", "open")]
    await writer.close()  # never started: nothing left, nothing to stop
    assert writer.rows_written == 2
    assert_writer_task_gone()


def test_each_event_loop_gets_its_own_shared_writer():
    """Loops come and go (tests, async_to_sync): the writer task belongs to the loop it runs in."""
    calls = [make_call(status=CallStatus.IN_PROGRESS) for _ in range(3)]

    async def one_call(call, other_loop_ready: threading.Event, go: threading.Event):
        writer = writer_for(call)
        writer.start()
        (batcher,) = _BatchWriter.active()
        assert batcher.loop is asyncio.get_running_loop()
        other_loop_ready.set()
        while not go.is_set():
            await asyncio.sleep(0.01)
        say(writer, "agent", f"loop {id(asyncio.get_running_loop())}")
        await eventually(lambda: writer.rows_written, what="the row")
        await writer.close()
        assert_writer_task_gone()
        assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left pending

    # Two loops at the same time, in two threads, then a third one after both have closed.
    ready = [threading.Event(), threading.Event()]
    go = threading.Event()
    errors = []

    def run(call, event):
        try:
            asyncio.run(one_call(call, event, go))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(c, e)) for c, e in zip(calls[:2], ready, strict=True)
    ]
    for thread in threads:
        thread.start()
    for event in ready:
        assert event.wait(5)
    go.set()
    for thread in threads:
        thread.join(10)
    asyncio.run(one_call(calls[2], threading.Event(), go))
    assert errors == []
    assert TranscriptEntry.objects.filter(call__in=calls).count() == 3


# -- the call's end: its last rows in the end's own transaction ----------------------------------


def end_of(call, **changes):
    from functools import partial

    from voiceagents.call.callsetup import finish_call_with_transcript

    end = dict(
        call_id=call.pk,
        failed=False,
        end_reason="caller_hangup",
        error="",
        metrics={},
        recording_path=None,
        recording_ms=None,
    )
    return partial(finish_call_with_transcript, **{**end, **changes})


async def test_the_last_rows_and_the_end_are_one_transaction(write_log):
    (call,), (writer,) = await started_writers(1, interval=30)
    say(writer, "agent", "Hello!")
    say(writer, "caller", "Bye", settled=False)
    writer.event("dtmf", 40, digit="1")

    status, reason = await asyncio.wait_for(writer.close_with(end_of(call)), 5)

    assert (status, reason) == (CallStatus.COMPLETED, "caller_hangup")
    assert await entries(call) == [(0, "agent", "Hello!"), (1, "caller", "Bye")]
    kinds = [e.kind async for e in CallEvent.objects.filter(call=call).order_by("pk")]
    assert kinds == ["dtmf", "status"]  # the end's status event joins the timeline's INSERT
    assert [table for table, _ in write_log.inserts] == ["transcript", "event"]
    assert write_log.transactions() == 1
    assert writer.rows_written == 3
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert_writer_task_gone()


async def test_an_end_with_nothing_left_to_write_still_ends_the_call(write_log):
    (call,), (writer,) = await started_writers(1, interval=30)
    assert await writer.close_with(end_of(call, failed=True, end_reason="provider_error")) == (
        CallStatus.FAILED,
        "provider_error",
    )
    assert await entries(call) == []
    assert [e.data["to"] async for e in CallEvent.objects.filter(call=call)] == ["failed"]
    assert_writer_task_gone()


async def test_rows_the_database_refuses_do_not_keep_the_call_from_ending(write_log, caplog):
    (call,), (writer,) = await started_writers(1, interval=30)
    bad = say(writer, "agent", "Hello!")
    bad.text = None  # NOT NULL: the database refuses this row
    with caplog.at_level(logging.ERROR, logger="tests.transcripts"):
        status, _ = await asyncio.wait_for(writer.close_with(end_of(call)), 5)

    assert status == CallStatus.COMPLETED
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED and call.end_reason == "caller_hangup"
    assert [e.data["to"] async for e in CallEvent.objects.filter(call=call)] == ["completed"]
    assert await entries(call) == []
    # The refused row is kept (not counted as written) and the failure is logged.
    assert writer.rows_written == 0 and not bad.written
    assert any("writing the transcript failed" in r.getMessage() for r in caplog.records)
    assert_writer_task_gone()


async def test_a_fault_while_collecting_the_last_rows_still_ends_the_call(write_log, caplog):
    (call,) = await new_calls(1)

    def settle():
        raise RuntimeError("settle failed")

    writer = writer_for(call, interval=30, settle=settle)
    writer.start()
    say(writer, "agent", "Hello!")
    with caplog.at_level(logging.ERROR, logger="tests.transcripts"):
        status, _ = await asyncio.wait_for(writer.close_with(end_of(call)), 5)
    assert status == CallStatus.COMPLETED
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert any("last rows failed" in r.getMessage() for r in caplog.records)
    assert_writer_task_gone()


async def test_refused_rows_leave_the_recording_to_the_end_written_without_them(
    write_log, tmp_path, settings
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    wav = tmp_path / "call.wav"
    wav.write_bytes(b"RIFF....WAVE")
    (call,), (writer,) = await started_writers(1, interval=30)
    say(writer, "agent", "Hello!").text = None  # NOT NULL: refused
    end = end_of(call, recording_path=str(wav), recording_ms=1000)
    status, _ = await asyncio.wait_for(writer.close_with(end), 5)
    assert status == CallStatus.COMPLETED
    await call.arefresh_from_db()
    # The first try's rollback left the recording in place; the second stored it.
    assert call.recording.name.endswith(f"{call.pk}.wav")
    assert (tmp_path / "media" / call.recording.name).read_bytes() == b"RIFF....WAVE"
