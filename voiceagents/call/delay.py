"""Per-call network delay and carrier jitter buffer, estimated from mark echoes.

Two figures, each the median of its last few samples (robust to an echo read late by a busy event
loop, and following a delay that drifts during the call):

* **Round trip** (``rtt_s``): a mark sent while the carrier has nothing queued comes back one round
  trip later (a *probe*), and so do the marks still outstanding when a ``clear`` reaches the
  carrier. The one-way delay (``delay_ms``) is half of it: the two legs are assumed equal.
* **Playout start offset** (``jitter_s``): how long the carrier holds the first audio of a run
  before playing it (its jitter buffer), from the first echo of each run of continuous audio:
  the echo time, less one round trip, less the audio sent before the mark, less the time the
  run's first frame left here.

Pure logic, no clock: the caller passes the times. Samples are rare (a few per second of call at
most); the hot path only reads the cached figures.
"""

from __future__ import annotations

from collections import deque
from statistics import median

#: Samples kept per figure: enough to outvote one late echo, few enough to follow a drifting
#: delay within a couple of barge-ins or probes.
WINDOW = 5
#: Round-trip samples kept: fewer, so that a drifting delay is followed within a second of probes.
RTT_WINDOW = 3
#: A round trip beyond this is not a network delay but a stall or a lost echo; not a sample.
MAX_RTT_S = 2.0
#: Same for the jitter buffer: carriers hold tens to a few hundred ms.
MAX_JITTER_S = 1.0


class DelayEstimator:
    """Round trip and jitter buffer of one call's carrier leg, from timed samples (seconds)."""

    def __init__(self, window: int = WINDOW, rtt_window: int = RTT_WINDOW) -> None:
        self._rtt: deque[float] = deque(maxlen=rtt_window)
        self._jitter: deque[float] = deque(maxlen=window)
        #: Cached medians (``None`` until a first sample): read at every barge-in and by the
        #: playout bookkeeping, so never recomputed there.
        self.rtt_s: float | None = None
        self.jitter_s: float | None = None

    def rtt_sample(self, seconds: float) -> None:
        """A measured round trip: the echo of a mark that cannot have waited behind audio."""
        if 0.0 <= seconds <= MAX_RTT_S:
            self._rtt.append(seconds)
            self.rtt_s = median(self._rtt)

    def jitter_sample(self, seconds: float) -> None:
        """A measured playout start offset (negative values are noise around zero: kept as 0)."""
        if seconds <= MAX_JITTER_S:
            self._jitter.append(max(0.0, seconds))
            self.jitter_s = median(self._jitter)

    @property
    def delay_ms(self) -> float | None:
        """Estimated one-way network delay, ms (half the round trip)."""
        return None if self.rtt_s is None else round(self.rtt_s * 500.0, 1)

    @property
    def jitter_ms(self) -> float | None:
        """Estimated playout start offset at the carrier, ms."""
        return None if self.jitter_s is None else round(self.jitter_s * 1000.0, 1)
