"""When was this event loop blocked? A light ticker the pacer asks after the carrier ran dry.

A stall of the loop holds back two kinds of audio: what waits in the pacer's queue (the pacer sees
that itself) and what the provider sent meanwhile, still unread in the socket. The second looks,
once read, exactly like a provider that was slow to speak, which is owed nothing. The difference
is whether the loop was blocked; :class:`StallWatch` tells, with one timer per loop (every
:data:`TICK_S`, shared by all calls on it, and only while some pacer runs) and no per-frame work.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

__all__ = ["AFTERMATH_S", "STALL_MIN_S", "TICK_S", "StallWatch"]

#: Tick period.
TICK_S = 0.02
#: A tick this much later than its predecessor means the loop was blocked (a stall). Shorter
#: delays are a busy server's ordinary jitter: they cost at most the carrier's lead of latency,
#: which the lead then absorbs, and owing them would speed up speech on every busy server
#: (measured: `make bench`'s duty mode at 100 calls on a loaded machine spliced 0.25 % of its
#: frames with a 40 ms threshold).
STALL_MIN_S = 0.1
#: How long after a stall audio read from a socket still counts as held back by it: the loop
#: first works off what piled up meanwhile (every call's inbound frames), which takes a while
#: on a busy server. Longer would start to blame stalls for a provider's own pauses.
AFTERMATH_S = 0.1

_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StallWatch] = (
    weakref.WeakKeyDictionary()
)


class StallWatch:
    """Records the intervals (loop time) in which the loop ran none of its callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._users = 0
        self._handle: asyncio.TimerHandle | None = None
        self._last = 0.0
        #: Recent blocked intervals, oldest first.
        self.blocked: deque[tuple[float, float]] = deque(maxlen=8)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> StallWatch:
        watch = _watches.get(loop)
        if watch is None:
            watch = _watches[loop] = cls(loop)
        return watch

    def acquire(self) -> None:
        self._users += 1
        if self._handle is None:
            self._last = self._loop.time()
            self._handle = self._loop.call_later(TICK_S, self._tick)

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._loop.time()
        if now - self._last > STALL_MIN_S:
            self.blocked.append((self._last + TICK_S, now))
        self._last = now
        self._handle = self._loop.call_later(TICK_S, self._tick)

    def stall_before(self, now: float) -> tuple[float, float] | None:
        """The blocked interval that ended just now (or is only now ending), if any.

        "Just now": at most :data:`AFTERMATH_S` ago, so the audio being read now is what it held
        back.
        """
        if self._handle is not None and now - self._last > STALL_MIN_S:
            return (self._last + TICK_S, now)  # the first callbacks after it run before our tick
        if self.blocked:
            start, end = self.blocked[-1]
            if now - end <= AFTERMATH_S:
                return (start, end)
        return None
