"""What a live call tells the admin's live monitor: its start, its transcript lines, its end.

Every call publishes to one channel-layer group, ``MONITOR_GROUP``; each open monitor socket
(``voiceagents.monitor.consumer``) is a member and forwards what it gets to its browser. A call
publishes ``started`` when its session starts, one ``line`` per transcript turn when the turn is
ready to be written (never per audio frame; again only if its text or interrupted flag changed;
with the call's quality figures so far) and ``ended`` with its final status. No audio, and no
phone numbers: the page reads those from the database.

The channel layer is not part of the call, so publishing is fire-and-forget: a call's events go
to a small queue of its own, and the process's one sender (``MonitorOutbox``) gathers what all
its calls queued during ``BATCH_WINDOW_S`` into one ``group_send`` (``monitor.events``, in order
per call), each send bounded by ``SEND_TIMEOUT_S``. One send per window instead of one per event:
with channels-redis each send costs two Redis commands even when no monitor is open, which was
~0.3 ms of CPU per event, three or more per call. When the layer is down or slow a call's queue
keeps its newest ``MAX_QUEUED`` events and drops the rest; the first failure is logged once per
call, the others are counted and reported once at the end. The call never waits for any of it,
except at its very end (``close``, at most ``CLOSE_GRACE_S``, after the call's row is written),
so that its ``ended`` has a chance to leave.

There is no "is anyone watching" gate: with no monitor open, a ``group_send`` to the empty group
stores nothing and costs the layer's membership lookup (channels-redis: two Redis commands), once
per window per process. A gate (a presence key in a cache) would cost a round trip of its own,
or go stale. docs/admin/monitor.md has the measurement.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from channels.layers import get_channel_layer

from .layerscope import PerLoopAndLayer
from .metrics import CallMetrics
from .transcripts import Turn

logger = logging.getLogger(__name__)

#: The channel-layer group every monitor socket joins.
MONITOR_GROUP = "voiceagents.monitor"
#: The channel-layer message types: one event (``monitor_event``), and the outbox's batches
#: (``monitor_events``, ``{"events": [...]}``), which is what this version sends.
MESSAGE_TYPE = "monitor.event"
BATCH_TYPE = "monitor.events"
#: How long the process's outbox gathers events before sending them as one message.
BATCH_WINDOW_S = 0.05
#: Most events in one message.
MAX_BATCH = 200
#: Longest wait for one ``group_send``; a layer slower than this loses the event.
SEND_TIMEOUT_S = 0.5
#: Events waiting to be sent, per call; older ones are dropped first.
MAX_QUEUED = 32
#: How long the end of a call waits for its last events to leave.
CLOSE_GRACE_S = 0.5


class MonitorPublisher:
    """One call's events for the live monitor (owned by its ``CallSession``)."""

    def __init__(
        self,
        call_id,
        log: logging.LoggerAdapter | logging.Logger = logger,
        layer=None,
        metrics: CallMetrics | None = None,
    ):
        self.call_id = str(call_id)
        self.log = log
        #: The call's counters, read (never written) for the quality figures each line carries.
        self.metrics = metrics
        self.layer = layer if layer is not None else get_channel_layer()
        #: Events published and events given up (dropped from a full queue, or failed to send).
        self.published = 0
        self.lost = 0
        self._failures = 0
        self._queue: deque[dict] = deque()
        #: Events taken by the outbox whose send has not settled yet.
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._closed = False
        # What each turn looked like when it was last published, by seq.
        self._lines: dict[int, tuple[str, bool]] = {}

    # -- what the session reports --------------------------------------------------------------

    def started(self, *, carrier: str, provider: str) -> None:
        self._publish({"type": "started", "carrier": carrier, "provider": provider})

    def lines(self, turns: Iterable[Turn]) -> None:
        """Turns about to be written: publish those with text that changed since last time.

        Each line carries the call's quality figures so far (``figures``): they change at the
        events that make turns (a reply, a barge-in), and riding on the lines they need no
        messages of their own.
        """
        figures = None
        for turn in turns:
            seen = (turn.text, turn.interrupted)
            if not turn.text or self._lines.get(turn.seq) == seen:
                continue
            self._lines[turn.seq] = seen
            if figures is None and self.metrics is not None:
                figures = self.metrics.live_figures()
            event = {
                "type": "line",
                "seq": turn.seq,
                "role": turn.role,
                "text": turn.text,
                "offset_ms": turn.start_ms,
                "interrupted": turn.interrupted,
            }
            if figures is not None:
                event["figures"] = figures
            self._publish(event)

    def ended(self, *, status: str, end_reason: str) -> None:
        self._publish({"type": "ended", "status": status, "end_reason": end_reason})

    async def close(self) -> None:
        """Give the last events ``CLOSE_GRACE_S`` to leave, then stop; never raises."""
        if self._queue or self._in_flight:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), CLOSE_GRACE_S)
            except TimeoutError:
                # The layer is stuck: what is still here, or on its way, is given up.
                self.lost += len(self._queue) + self._in_flight
                self._queue.clear()
                self._in_flight = 0
                MonitorOutbox.of(self.layer).give_up(self)
        self._closed = True
        if self.lost:
            self.log.info("%d live-monitor event(s) were not published", self.lost)

    # -- sending (by the process's outbox) -------------------------------------------------------

    def _publish(self, event: dict) -> None:
        if self.layer is None:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.lost += 1
        self._queue.append({**event, "call_id": self.call_id})
        MonitorOutbox.of(self.layer).ready(self)

    def _take(self, limit: int) -> list[dict]:
        """Up to ``limit`` queued events, now on their way."""
        events = []
        while self._queue and len(events) < limit:
            events.append(self._queue.popleft())
        self._in_flight += len(events)
        return events

    def _settled(self, count: int, error: BaseException | None = None) -> None:
        """``count`` taken events were sent, or failed with ``error``."""
        if self._closed:
            return  # already counted as lost by ``close``
        self._in_flight -= count
        if error is None:
            self.published += count
        else:
            self.lost += count
            self._failures += 1
            if self._failures == 1:
                self.log.warning(
                    "live monitor unavailable (%s); the call goes on, its events are dropped",
                    repr(error) or type(error).__name__,
                )
        if not self._queue and not self._in_flight:
            self._idle.set()


class MonitorOutbox(PerLoopAndLayer):
    """The process's one sender of live-monitor events on ``layer`` (``MonitorOutbox.of(layer)``:
    one per event loop)."""

    def __init__(self, layer) -> None:
        super().__init__(layer)
        #: Publishers with queued events, in the order they became ready (a dict: ordered, unique).
        self._ready: dict[MonitorPublisher, None] = {}
        self._sender: asyncio.Task | None = None

    def ready(self, publisher: MonitorPublisher) -> None:
        self._ready[publisher] = None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_ready())

    def give_up(self, publisher: MonitorPublisher) -> None:
        """``publisher``'s call ends with the layer stuck: stop the send it waits for. The other
        calls' events queued meanwhile get a new sender (they would otherwise wait for the next
        event of some call, and a call that is ending sends none)."""
        self._ready.pop(publisher, None)
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            self._sender = None
            if self._ready:
                self._sender = asyncio.ensure_future(self._send_ready())

    async def _send_ready(self) -> None:
        while self._ready:
            await asyncio.sleep(BATCH_WINDOW_S)
            taken: list[tuple[MonitorPublisher, int]] = []
            events: list[dict] = []
            while self._ready and len(events) < MAX_BATCH:
                publisher = next(iter(self._ready))
                mine = publisher._take(MAX_BATCH - len(events))
                if not publisher._queue:
                    del self._ready[publisher]
                if mine:
                    taken.append((publisher, len(mine)))
                    events.extend(mine)
            if not events:
                continue
            error: BaseException | None = None
            try:
                await asyncio.wait_for(
                    self.layer.group_send(MONITOR_GROUP, {"type": BATCH_TYPE, "events": events}),
                    SEND_TIMEOUT_S,
                )
            except asyncio.CancelledError as err:
                for publisher, count in taken:
                    publisher._settled(count, err)
                raise
            except Exception as err:  # noqa: BLE001 - the monitor is never worth a call
                error = err
            for publisher, count in taken:
                publisher._settled(count, error)
