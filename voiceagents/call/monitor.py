"""What a live call tells the admin's live monitor: its start, its transcript lines, its end.

Every call publishes to one channel-layer group, ``MONITOR_GROUP``; each open monitor socket
(``voiceagents.monitor.consumer``) is a member and forwards what it gets to its browser. A call
publishes ``started`` when its session starts, one ``line`` per transcript turn when the turn is
ready to be written (never per audio frame; again only if its text or interrupted flag changed;
with the call's quality figures so far) and ``ended`` with its final status. No audio, and no
phone numbers: the page reads those from the database.

The channel layer is not part of the call, so publishing is fire-and-forget: events go to a small
queue that one task per call drains in order, each send bounded by ``SEND_TIMEOUT_S``. When the
layer is down or slow the queue keeps its newest ``MAX_QUEUED`` events and drops the rest; the
first failure is logged, the others are counted and reported once at the end. The call never
waits for any of it, except at its very end (``close``, at most ``CLOSE_GRACE_S``, after the
call's row is written), so that its ``ended`` has a chance to leave.

There is no "is anyone watching" gate: with no monitor open, a ``group_send`` to the empty group
stores nothing and costs the layer's membership lookup (channels-redis: two Redis commands), once
per turn, from this background task. A gate (a presence key in a cache) would cost a round trip
of its own per turn, or go stale. docs/admin/monitor.md has the measurement.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from channels.layers import get_channel_layer

from .metrics import CallMetrics
from .transcripts import Turn

logger = logging.getLogger(__name__)

#: The channel-layer group every monitor socket joins.
MONITOR_GROUP = "voiceagents.monitor"
#: The channel-layer message type (Channels calls the consumer's ``monitor_event``).
MESSAGE_TYPE = "monitor.event"
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
        self._sender: asyncio.Task | None = None
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
        sender = self._sender
        if sender is not None and not sender.done():
            done, _ = await asyncio.wait({sender}, timeout=CLOSE_GRACE_S)
            if not done:
                sender.cancel()
                self.lost += len(self._queue)
                self._queue.clear()
                await asyncio.gather(sender, return_exceptions=True)
        if self.lost:
            self.log.info("%d live-monitor event(s) were not published", self.lost)

    # -- sending ---------------------------------------------------------------------------------

    def _publish(self, event: dict) -> None:
        if self.layer is None:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.lost += 1
        self._queue.append({**event, "call_id": self.call_id})
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_queued())

    async def _send_queued(self) -> None:
        while self._queue:
            event = self._queue.popleft()
            try:
                await asyncio.wait_for(
                    self.layer.group_send(MONITOR_GROUP, {"type": MESSAGE_TYPE, "event": event}),
                    SEND_TIMEOUT_S,
                )
            except asyncio.CancelledError:
                self.lost += 1  # given up by ``close``
                raise
            except Exception as err:  # noqa: BLE001 - the monitor is never worth a call
                self.lost += 1
                self._failures += 1
                if self._failures == 1:
                    self.log.warning(
                        "live monitor unavailable (%s); the call goes on, its events are dropped",
                        repr(err) or type(err).__name__,
                    )
                continue
            self.published += 1
