"""Transcript turns and the background writer that persists them in batches.

The call world never writes to the database per frame. It notes turns in memory (``Turn``) and
timeline events, and a ``BackgroundWriter`` task drains what is ready every few hundred
milliseconds with one ``bulk_create`` per batch. Turns get their ``seq`` when they are first seen,
so rows land in conversation order even when a caller's transcription arrives after the agent has
already answered (OpenAI transcribes asynchronously).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from channels.db import database_sync_to_async

logger = logging.getLogger(__name__)


@dataclass
class Turn:
    seq: int
    role: str
    item_id: str
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


def _write_rows(call_id, turns: list[Turn], events: list[TimelineEvent]) -> None:
    from .models import CallEvent, TranscriptEntry

    if turns:
        TranscriptEntry.objects.bulk_create(
            [
                TranscriptEntry(
                    call_id=call_id,
                    seq=t.seq,
                    role=t.role,
                    text=t.text,
                    start_ms=t.start_ms,
                    end_ms=t.end_ms,
                    interrupted=t.interrupted,
                )
                for t in turns
            ],
            # A retried batch after a partial failure must not fail on rows already written.
            ignore_conflicts=True,
        )
    if events:
        CallEvent.objects.bulk_create(
            [CallEvent(call_id=call_id, kind=e.kind, at_ms=e.at_ms, data=e.data) for e in events]
        )


class BackgroundWriter:
    """Writes settled turns and timeline events of one call, in batches, off the audio path."""

    def __init__(
        self, call_id, log, *, interval: float = 0.25, settle: Callable[[], None] | None = None
    ):
        self.call_id = call_id
        self.log = log
        self.interval = interval
        self.turns: dict[str, Turn] = {}
        self.events: list[TimelineEvent] = []
        self._settle = settle
        self._next_seq = 0
        self._task: asyncio.Task | None = None
        self.rows_written = 0

    def new_turn(self, role: str, item_id: str, **fields) -> Turn:
        turn = Turn(seq=self._next_seq, role=role, item_id=item_id, **fields)
        self._next_seq += 1
        self.turns[item_id] = turn
        return turn

    def event(self, kind: str, at_ms: int | None, **data) -> None:
        self.events.append(TimelineEvent(kind, at_ms, data))

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush(final=False)
            except Exception:
                # Keep going: the rows stay in memory and are retried at the next tick and at close.
                self.log.exception("writing transcript rows failed; will retry")

    async def flush(self, final: bool) -> None:
        if self._settle is not None:
            self._settle()
        ready = [t for t in self.turns.values() if not t.written and (t.settled or final)]
        events, self.events = self.events, []
        if not ready and not events:
            return
        try:
            await database_sync_to_async(_write_rows)(self.call_id, ready, events)
        except Exception:
            self.events = events + self.events
            raise
        for turn in ready:
            turn.written = True
        self.rows_written += len(ready) + len(events)

    async def close(self) -> None:
        """Stop the periodic task and write everything that is left, settled or not."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush(final=True)
