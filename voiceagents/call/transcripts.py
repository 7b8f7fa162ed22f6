"""Transcript turns and the batching writer that persists them, off the audio path.

The call world never writes to the database per frame. A call notes turns in memory (``Turn``)
and timeline events in its ``BackgroundWriter``. Turns get their ``seq`` when they are first
seen, so rows land in conversation order even when a caller's transcription arrives after the
agent has already answered (OpenAI transcribes asynchronously).

The writing itself is shared: one task per event loop (``_BatchWriter``) wakes every
``interval``, collects what is ready in every registered call and writes it all in ONE
transaction, through one hop to the database thread. With many concurrent calls that is a few
commits a second instead of dozens, and far less ORM work competing with the audio for the GIL.
If a batch fails because of one call's rows (its Call row was deleted, a value the database
refuses), each call is written separately, so that one bad call cannot hold up the others; that
call then keeps being written on its own until a write of it succeeds. Rows that failed stay in
memory and are retried at the next tick and when the call closes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from django.db import InterfaceError, OperationalError, transaction

from .. import dbthread
from . import rowsql

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors that say the database or the connection is unwell, not that some call's rows are bad:
#: writing calls one by one would not help, everything is retried at the next tick.
CONNECTION_ERRORS = (OperationalError, InterfaceError)


@dataclass
class Turn:
    seq: int
    role: str
    turn_id: str
    text: str = ""
    start_ms: int | None = None
    end_ms: int | None = None
    interrupted: bool = False
    #: Set when nothing about the turn can change any more.
    settled: bool = False
    written: bool = False
    # Agent turns: position of the turn's audio in the outbound stream (ms), for barge-in maths.
    start_pos: float | None = None
    end_pos: float | None = None
    has_text: bool = False


@dataclass
class TimelineEvent:
    kind: str
    at_ms: int | None
    data: dict = field(default_factory=dict)


# -- the database side (runs in the database thread) --------------------------------------------

#: A turn's row is (call, seq); a turn written again replaces these columns.
TURN_UPSERT = (("call", "seq"), ("text", "start_ms", "end_ms", "interrupted"))

#: One call's rows, snapshotted on the event loop: (call_id, turn rows, event rows).
Rows = tuple[object, list[tuple], list[tuple]]


def insert(rows: list[Rows]) -> None:
    """The turns (upserted) and events of ``rows``: one INSERT of each kind, in the caller's
    transaction."""
    from ..models import CallEvent, TranscriptEntry

    entries = [
        TranscriptEntry(
            call_id=call_id,
            seq=seq,
            role=role,
            text=text,
            start_ms=start_ms,
            end_ms=end_ms,
            interrupted=interrupted,
        )
        for call_id, turns, _ in rows
        for seq, role, text, start_ms, end_ms, interrupted in turns
    ]
    events = [
        CallEvent(call_id=call_id, kind=kind, at_ms=at_ms, data=data)
        for call_id, _, call_events in rows
        for kind, at_ms, data in call_events
    ]
    if entries:
        # An upsert: a batch retried after its commit went unacknowledged must not fail on rows
        # already written, and a turn written again after a change (a corrected agent text)
        # replaces its row. Statements built once (``rowsql``): the ORM's ``bulk_create`` built
        # its SQL anew for every call's end.
        rowsql.insert_many(entries, upsert=TURN_UPSERT)
    if events:
        rowsql.insert_many(events)


def _write_one(rows: Rows) -> Exception | None:
    try:
        with transaction.atomic():
            insert([rows])
    except Exception as err:  # noqa: BLE001 - reported per call to the event loop
        return err
    return None


def write_rows(batch: list[Rows], alone: list[Rows] = ()) -> list[Exception | None]:
    """Write ``batch`` in one transaction and each of ``alone`` in its own; one result per call.

    If the batch fails for a reason that may be one call's rows (anything but a connection or
    lock error), its calls are written one by one so that the others still get through.
    """
    results: list[Exception | None] = [None] * len(batch)
    if len(batch) == 1:
        results[0] = _write_one(batch[0])
    elif batch:
        one_by_one = False
        try:
            with transaction.atomic():
                insert(batch)
        except CONNECTION_ERRORS as err:
            results = [err] * len(batch)
        except Exception:  # noqa: BLE001 - find the call(s) at fault
            one_by_one = True
        if one_by_one:
            results = [_write_one(rows) for rows in batch]
    if alone and any(isinstance(err, CONNECTION_ERRORS) for err in results):
        # The database is unwell; these are retried with everything else at the next tick.
        error = next(err for err in results if isinstance(err, CONNECTION_ERRORS))
        return results + [error] * len(alone)
    return results + [_write_one(rows) for rows in alone]


# -- one call's writer ---------------------------------------------------------------------------


class BackgroundWriter:
    """Collects the transcript turns and timeline events of one call until they are written.

    ``start()`` registers the call with its event loop's shared writer, which writes settled turns
    and events every ``interval`` seconds together with the other calls'; ``close()`` (the call's
    end) writes whatever is left, settled or not, before it returns. ``settle`` is called before
    each write, so the session can settle turns whose audio has played since the last one;
    ``on_ready`` is handed the turns of each write as it begins (the live monitor's lines).
    """

    def __init__(
        self,
        call_id,
        log,
        *,
        interval: float = 0.25,
        settle: Callable[[], None] | None = None,
        on_ready: Callable[[list[Turn]], None] | None = None,
    ):
        self.call_id = call_id
        self.log = log
        self.interval = interval
        self.turns: dict[str, Turn] = {}
        self.events: list[TimelineEvent] = []
        self.rows_written = 0
        self._settle = settle
        self._on_ready = on_ready
        self._next_seq = 0
        # Turns not written yet, by seq (so in conversation order).
        self._unwritten: dict[int, Turn] = {}
        self._batcher: _BatchWriter | None = None
        # Resolved when the write that holds this call's rows is over (one write at a time).
        self._busy: asyncio.Future | None = None
        # Written outside the shared batch after a write of this call's rows alone failed.
        self._alone = False
        # Consecutive failed writes (the first one of a run is logged).
        self._failures = 0

    def new_turn(self, role: str, turn_id: str, **fields) -> Turn:
        turn = Turn(seq=self._next_seq, role=role, turn_id=turn_id, **fields)
        self._next_seq += 1
        self.turns[turn_id] = turn
        self._unwritten[turn.seq] = turn
        return turn

    def rewrite(self, turn: Turn) -> None:
        """``turn`` changed after it may have been written: (re)write it with the next batch."""
        self._unwritten[turn.seq] = turn

    def event(self, kind: str, at_ms: int | None, **data) -> None:
        self.events.append(TimelineEvent(kind, at_ms, data))

    def start(self) -> None:
        """Have the shared writer of the running event loop write this call's rows from now on."""
        if self._batcher is None:
            self._batcher = _BatchWriter.register(self)

    async def flush(self, final: bool) -> None:
        """Write what is ready now (everything if ``final``); raises if the write fails."""
        while self._busy is not None:
            # A shared batch with rows of this call is in flight: let it finish first.
            await asyncio.shield(self._busy)
        if self._settle is not None:
            self._settle()
        taken = self._take(final)
        if taken is None:
            return
        # Shielded: if our caller is cancelled, the write still completes and is accounted for.
        (error,) = await asyncio.shield(asyncio.ensure_future(_commit([taken], 1)))
        if error is not None:
            raise error

    async def close(self) -> None:
        """Leave the shared writer and write everything that is left, settled or not."""
        batcher = self._leave()
        try:
            await self.flush(final=True)
        finally:
            await self._let_go(batcher)

    async def close_with(
        self, last_write: Callable[[Rows | None], tuple[T, Exception | None]]
    ) -> T:
        """Leave the shared writer and hand everything that is left to ``last_write``, the
        call's last database write, which stores it in the same transaction: one hop to the
        database thread and one commit at a call's end instead of two of each.

        ``last_write(rows)`` runs in the database thread (``rows`` None when nothing is left)
        and returns its result and what became of the rows (None: written). Rows it could not
        write are kept and the failure logged; an exception of ``last_write`` propagates.
        """
        batcher = self._leave()
        try:
            while self._busy is not None:
                await asyncio.shield(self._busy)
            taken = None
            try:
                if self._settle is not None:
                    self._settle()
                taken = self._take(final=True)
            except Exception:
                # The call's end is still written: a fault here must not keep the call open.
                self.log.exception("collecting the transcript's last rows failed")
            if taken is None:
                result, _ = await dbthread.run(last_write, None)
                return result
            _, turns, events = taken
            error: BaseException | None = None
            try:
                result, error = await dbthread.run(last_write, self._rows(turns, events))
            except BaseException as err:
                error = err
                raise
            finally:
                self._done(turns, events, error)
            if error is not None:
                self.log.error("writing the transcript failed: %r", error)
            return result
        finally:
            await self._let_go(batcher)

    def _leave(self) -> _BatchWriter | None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.unregister(self)
        return batcher

    @staticmethod
    async def _let_go(batcher: _BatchWriter | None) -> None:
        if batcher is not None and not batcher.writers:
            # The last call of the loop: don't return while the shared task is still around.
            await asyncio.wait([batcher.task])

    # -- used by the shared writer --

    def _has_rows(self) -> bool:
        return bool(self._unwritten or self.events)

    def _take(self, final: bool) -> tuple[BackgroundWriter, list[Turn], list[TimelineEvent]] | None:
        ready = [t for t in self._unwritten.values() if final or t.settled]
        events = self.events
        if not ready and not events:
            return None
        self.events = []
        # In flight: a turn that changes meanwhile is put back by ``rewrite`` and written again.
        for turn in ready:
            del self._unwritten[turn.seq]
        if ready and self._on_ready is not None:
            try:
                self._on_ready(ready)
            except Exception:
                self.log.exception("reporting transcript turns failed")
        return self, ready, events

    def _rows(self, turns: list[Turn], events: list[TimelineEvent]) -> Rows:
        return (
            self.call_id,
            [(t.seq, t.role, t.text, t.start_ms, t.end_ms, t.interrupted) for t in turns],
            [(e.kind, e.at_ms, e.data) for e in events],
        )

    def _done(self, turns: list[Turn], events: list[TimelineEvent], error) -> None:
        self._busy = None
        if error is None:
            for turn in turns:
                turn.written = True
            self.rows_written += len(turns) + len(events)
        else:
            # Keep them, in order, for the next try.
            self.events[:0] = events
            unwritten = {turn.seq: turn for turn in turns}
            unwritten.update(self._unwritten)
            self._unwritten = dict(sorted(unwritten.items()))


async def _commit(
    items: list[tuple[BackgroundWriter, list[Turn], list[TimelineEvent]]], in_batch: int
) -> list[Exception | None]:
    """Write the rows of ``items`` (the first ``in_batch`` in one transaction, the rest alone).

    Each writer is busy until the write is over; its rows are marked written or given back.
    """
    done = asyncio.get_running_loop().create_future()
    for writer, _, _ in items:
        writer._busy = done
    rows = [writer._rows(turns, events) for writer, turns, events in items]
    results: list = [None] * len(items)
    try:
        results = await dbthread.run(write_rows, rows[:in_batch], rows[in_batch:])
        return results
    except BaseException as err:
        # Could not even ask (or cancelled at loop shutdown): nothing is known to be written.
        results = [err] * len(items)
        raise
    finally:
        for (writer, turns, events), error in zip(items, results, strict=True):
            writer._done(turns, events, error)
        done.set_result(None)


# -- the shared writer of one event loop --------------------------------------------------------


class _BatchWriter:
    """Writes the ready rows of all calls of one event loop, every ``interval``, in one go.

    Created when the first call of a loop starts, gone (and its task finished) when the last one
    has closed; the next call creates a new one.
    """

    _registry: dict[tuple[asyncio.AbstractEventLoop, float], _BatchWriter] = {}
    _registry_lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float):
        self.loop = loop
        self.interval = interval
        #: Registered call writers (a dict as an ordered set).
        self.writers: dict[BackgroundWriter, None] = {}
        self._writing = False
        self.task = loop.create_task(self._run(), name="voiceagents-transcript-writer")

    @classmethod
    def register(cls, writer: BackgroundWriter) -> _BatchWriter:
        loop = asyncio.get_running_loop()
        key = (loop, writer.interval)
        with cls._registry_lock:
            batcher = cls._registry.get(key)
            if batcher is None:
                # Forget loops closed while calls were registered (a test that gave up).
                for stale in [k for k in cls._registry if k[0].is_closed()]:
                    del cls._registry[stale]
                batcher = cls._registry[key] = cls(loop, writer.interval)
            batcher.writers[writer] = None
        return batcher

    def unregister(self, writer: BackgroundWriter) -> None:
        self.writers.pop(writer, None)
        if self.writers:
            return
        with self._registry_lock:
            key = (self.loop, self.interval)
            if self._registry.get(key) is self:
                del self._registry[key]
        if not self._writing:
            self.task.cancel()  # asleep: stop now; writing: it stops once the write is over

    @classmethod
    def active(cls) -> list[_BatchWriter]:
        """The shared writers of the running event loop (for tests and diagnostics)."""
        loop = asyncio.get_running_loop()
        with cls._registry_lock:
            return [b for (b_loop, _), b in cls._registry.items() if b_loop is loop]

    async def _run(self) -> None:
        while self.writers:
            await asyncio.sleep(self.interval)
            self._writing = True
            try:
                await self.tick()
            except Exception:
                logger.exception("the transcript writer failed; it carries on")
            finally:
                self._writing = False

    async def tick(self) -> None:
        batch: list = []
        alone: list = []
        for writer in self.writers:
            # Cheap checks first: most calls have nothing to write most of the time.
            if writer._busy is not None or not writer._has_rows():
                continue
            try:
                if writer._settle is not None and writer._unwritten:
                    writer._settle()
                taken = writer._take(final=False)
            except Exception:
                writer.log.exception("collecting transcript rows failed")
                continue
            if taken is not None:
                (alone if writer._alone else batch).append(taken)
        if not batch and not alone:
            return
        items = batch + alone
        results = await _commit(items, len(batch))
        self._report(items, results)

    def _report(self, items, results: list[Exception | None]) -> None:
        failed: list[tuple[BackgroundWriter, Exception]] = []
        recovered: list[BackgroundWriter] = []
        for (writer, _, _), error in zip(items, results, strict=True):
            if error is None:
                if writer._failures:
                    recovered.append(writer)
                writer._failures = 0
                writer._alone = False
                continue
            if not writer._failures:
                failed.append((writer, error))
            else:
                logger.debug(
                    "call %s: transcript rows still not written: %r", writer.call_id, error
                )
            writer._failures += 1
            # Its own rows failed (not the connection): keep it out of the others' batch.
            writer._alone = not isinstance(error, CONNECTION_ERRORS)
        if failed:
            logger.error(
                "writing the transcript rows of %d call(s) failed; they stay in memory and are "
                "retried: %s",
                len(failed),
                "; ".join(f"call {w.call_id}: {type(e).__name__}: {e}" for w, e in failed),
                exc_info=failed[0][1],
            )
        if recovered:
            logger.info(
                "transcript rows written again for call(s) %s",
                ", ".join(str(w.call_id) for w in recovered),
            )
