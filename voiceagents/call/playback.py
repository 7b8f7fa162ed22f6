"""Agent audio out to the carrier: paced frames, marks, and what the caller has heard.

Positions are ms in the outbound stream (the agent audio sent since the call began, silence not
counted). The pacer sends one frame per 20 ms with a small lead; a mark goes out every
``mark_interval_ms`` of audio and at the end of each segment, named by its own position, so that
an echoed mark says "the carrier played up to here, one network delay ago". A barge-in asks
:meth:`Playback.heard_ms` how far the caller got, then :meth:`Playback.clear` drops everything
not yet played.

What "heard" means: the carrier plays until our ``clear`` reaches it, so at our time ``t`` the
caller will have heard what the carrier plays up to ``t`` plus the forward network delay. The
playout is kept as a line ``T(x) = x / 1000 + offset``: the time at which a ``clear`` sent by us
reaches the carrier just as it starts playing position ``x`` (so ``heard(t)`` solves ``T(x) = t``).
Evidence sets ``offset``:

* a mark ``p`` echoed at our time ``r`` played at the carrier one return delay earlier, so a clear
  sent at ``r - rtt`` would have caught it: ``T(p) = r - rtt`` (the lowest of the run's last few
  echoes: an echo read late by a busy event loop only ever makes ``r`` later; a run's first echo
  alone can only move the line earlier than the run-start line below);
* before the first echo of a run of continuous audio, its first frame (position ``p0``, sent at
  ``s0``) starts playing once it has crossed the network and waited in the carrier's jitter buffer:
  ``T(p0) = s0 + jitter`` (the forward delay cancels out: the clear crosses it too).

``rtt`` and ``jitter`` come from :class:`~.delay.DelayEstimator`: probe marks sent while the
carrier is idle, marks returned by a ``clear``, and the first echo of each run. The estimate is
bounded by what was sent, by the last echoed mark (heard for sure), and by the first mark not yet
echoed plus one round trip (a carrier that stalls cannot make us over-count). Carriers without
marks keep the run-start line, which is the pacer's real-time estimate shifted by the jitter
estimate (none is measured without marks, so none is assumed).
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from collections.abc import Callable

from ..audio.convert import Converter
from ..audio.formats import AudioFormat
from ..audio.pacer import PacedFrame, Pacer, PacerRunner
from .carrier_link import CarrierLink
from .delay import MAX_RTT_S, DelayEstimator
from .metrics import CallMetrics

#: The carrier frame: 20 ms, what both carriers stream.
FRAME_MS = 20
#: While the carrier has nothing to play, a probe mark every so often measures the round trip
#: (its echo cannot wait behind audio; none is sent while audio plays). Every 200 ms for the
#: first second of quiet, so that the round trip is fresh when the next reply starts soon; then
#: once a second, so that a long quiet (the caller talking) costs one small message each way a
#: second, not five (a mark follows every 100 ms of agent audio anyway).
PROBE_INTERVAL_S = 0.2
PROBE_BURST = 5
PROBE_QUIET_INTERVAL_S = 1.0
#: Echoes of one run of audio whose timing sets the playout line (the lowest wins).
RUN_ECHOES = 5
#: The playout line's offset while no audio has been sent since the start or a clear: so low that
#: the next frame starts a run.
NO_RUN = -1e18
#: Prefix of probe mark names (audio marks are bare numbers).
PROBE_PREFIX = "probe-"


def _loop_clock() -> Callable[[], float] | None:
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # built outside a running loop (the runner's clock then)
        return None


class Playback:
    def __init__(
        self,
        carrier: CarrierLink,
        metrics: CallMetrics,
        *,
        lead_ms: int,
        mark_interval_ms: int,
        on_frame: Callable[[PacedFrame], None] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.carrier = carrier
        self.metrics = metrics
        self.mark_interval_ms = mark_interval_ms
        self.frame_ms = FRAME_MS
        self.pacer = Pacer(carrier.carrier_format, frame_ms=FRAME_MS, lead_ms=lead_ms)
        self.runner = PacerRunner(
            self.pacer, self._send_frame, self._send_segment_mark, on_frame=on_frame, clock=clock
        )
        #: Sends the audio due now from the calling task (awaited right after :meth:`push`);
        #: the runner's own method, so the hot path has no wrapper around it.
        self.send_due = self.runner.send_due
        #: Converts the provider's agent audio to the carrier's format; ``None``: same format.
        self.convert: Converter | None = None
        self._out_pos = 0.0
        self._last_mark_pos = 0.0
        self._heard_pos = 0.0
        self._outstanding_marks: set[str] = set()
        self._ignored_marks: set[str] = set()
        #: Round trip and jitter buffer of this call's carrier leg.
        self.delay = DelayEstimator()
        # The loop's own clock, bound once: read per frame (uvloop's is cached per loop
        # iteration; asyncio's is a vDSO clock read, no system call).
        self._clock = clock or _loop_clock() or self.runner.now
        # The playout line T(x) = x / 1000 + _offset (see the module docstring). A very low offset
        # makes the next frame sent start a new run (at start, and after a clear).
        self._offset = NO_RUN
        self._running = False  # audio sent since the start or the last clear
        self._run_pos = 0.0  # position of the current run's first frame
        self._run_sent_at = 0.0  # ... and when it left here
        self._run_echoes: deque[float] = deque(maxlen=RUN_ECHOES)  # r - p/1000 of its echoes
        #: Position heard when the last clear was sent: the estimate until audio flows again.
        self._cap = float("inf")
        self._clear_sent_at: float | None = None
        self._clear_probe: str | None = None  # an unplayed mark the clear returns: one round trip
        self._probes: dict[str, float] = {}
        self._probe_count = 0
        self._quiet_probes = 0  # probes since audio last started
        self._closed = False

    def source_format(self, fmt: AudioFormat) -> None:
        """The provider's output format, known once it is open."""
        if fmt != self.carrier.carrier_format:
            self.convert = Converter(fmt, self.carrier.carrier_format)

    async def run(self) -> None:
        """The playout task: sends frames as they fall due, and probes the round trip when idle."""
        probing = asyncio.ensure_future(self._probe_loop())
        try:
            await self.runner.run()
        finally:
            probing.cancel()

    def close(self) -> None:
        self._closed = True
        self.runner.close()

    # -- network delay ----------------------------------------------------------------------------

    @property
    def delay_ms(self) -> float | None:
        """Estimated one-way network delay to the carrier, ms (``None`` until measured)."""
        return self.delay.delay_ms

    @property
    def jitter_ms(self) -> float | None:
        """Estimated playout start offset (the carrier's jitter buffer), ms (``None`` until
        measured; never measured on a carrier without marks)."""
        return self.delay.jitter_ms

    async def _probe_loop(self) -> None:
        while not self._closed:
            if await self.probe():
                self._quiet_probes += 1
            quiet = self._quiet_probes >= PROBE_BURST
            await asyncio.sleep(PROBE_QUIET_INTERVAL_S if quiet else PROBE_INTERVAL_S)

    async def probe(self) -> bool:
        """Send a probe mark if the carrier has nothing queued; returns whether one went out."""
        probes = self._probes
        if probes and self._clock() - min(probes.values()) > MAX_RTT_S:
            probes.clear()  # never echoed: lost, or the carrier stopped echoing; probe afresh
        if not self._carrier_idle():
            return False
        self._probe_count += 1
        name = f"{PROBE_PREFIX}{self._probe_count}"
        self._probes[name] = self._clock()
        await self.carrier.send_mark(name)
        return True

    def _carrier_idle(self) -> bool:
        """Nothing can be queued at the carrier: every frame sent is behind an echoed mark."""
        pacer = self.pacer
        return (
            self.carrier.has_marks
            and not self._outstanding_marks
            and not self._probes
            and self._out_pos == self._last_mark_pos
            and pacer.queued_ms == 0
            and pacer.buffered_ms(self._clock()) == 0
        )

    def _refresh_offset(self) -> None:
        """Re-derive the playout line of the current run from its evidence."""
        if not self._running:
            return  # the next frame starts a run (a round trip measured meanwhile changes nothing)
        start = self._run_sent_at + (self.delay.jitter_s or 0.0) - self._run_pos / 1000
        echoes = self._run_echoes
        if not echoes:
            self._offset = start
            return
        echoed = min(echoes) - (self.delay.rtt_s or 0.0)
        # One echo read late (a busy event loop) would set the line late: until a second echo
        # confirms it, the run-start line stays unless the echo shows playout began earlier.
        self._offset = echoed if len(echoes) > 1 else min(echoed, start)

    def _new_run(self, pos: float, now: float) -> None:
        """The carrier had nothing left to play when this frame left: its playout restarts."""
        self._running = True
        self._run_pos = pos
        self._run_sent_at = now
        self._run_echoes.clear()
        self._cap = float("inf")
        self._quiet_probes = 0
        self._refresh_offset()

    # -- what is queued ------------------------------------------------------------------------

    def push(self, data: bytes) -> float:
        """Queue agent audio (carrier format); returns the stream position after it.

        Await :attr:`send_due` next: audio due now leaves from the calling task.
        """
        self.runner.push(data, wake=False)
        pacer = self.pacer
        return pacer.sent_ms + pacer.queued_ms

    def end_segment(self) -> float:
        """Pad the last partial frame, mark the end of a turn's audio; returns the position."""
        self.runner.end_segment("end")
        return self.pushed_ms()

    def pushed_ms(self) -> float:
        """Stream position after everything queued so far."""
        return self.pacer.sent_ms + self.pacer.queued_ms

    # -- what the caller has heard ---------------------------------------------------------------

    def buffered_ms(self, now: float) -> float:
        """Audio sent to the carrier that it has not played yet, by real-time estimate."""
        return self.pacer.buffered_ms(now)

    def is_playing(self, now: float) -> bool:
        """Agent audio is queued here, or (by estimate or by unechoed marks) at the carrier."""
        pacer = self.pacer
        return (
            pacer.queued_ms > 0
            or pacer.buffered_ms(now) > 0
            or (self.carrier.has_marks and bool(self._outstanding_marks))
        )

    def heard_ms(self, now: float) -> float:
        """Stream position the caller will have heard when a ``clear`` sent at ``now`` arrives.

        The playout line of the module docstring, bounded by what was sent and, with marks, by
        the last echoed mark (at least) and the first outstanding one plus a round trip (at most).
        So marks can be sparse (every ``mark_interval_ms``): between echoes the line follows the
        real-time playout.
        """
        heard = min((now - self._offset) * 1000.0, self.pacer.sent_ms, self._cap)
        if not self.carrier.has_marks:
            return max(0.0, heard)
        if self._outstanding_marks:
            # Mark names are our own outbound positions (see _mark_here). An unechoed mark had not
            # played one return delay ago; the clear arrives one forward delay from now.
            first = min(map(float, self._outstanding_marks))
            heard = min(heard, first + (self.delay.rtt_s or 0.0) * 1000.0)
        return max(self._heard_pos, heard, 0.0)

    def mark_echoed(self, name: str) -> None:
        """The carrier played everything sent before mark ``name``."""
        now = self._clock()
        if name in self._probes:
            # Sent with nothing queued: its echo took one round trip.
            self.delay.rtt_sample(now - self._probes.pop(name))
            self._refresh_offset()
            return
        if name in self._ignored_marks:
            self._ignored_marks.discard(name)
            if name == self._clear_probe and self._clear_sent_at is not None:
                # Returned by the clear, unplayed: one round trip after the clear left.
                self.delay.rtt_sample(now - self._clear_sent_at)
                self._clear_probe = None
                self._refresh_offset()
            return
        if name not in self._outstanding_marks:
            return
        self._outstanding_marks.discard(name)
        self.metrics.marks_acked += 1
        try:
            pos = float(name)
        except ValueError:
            return
        self._heard_pos = max(self._heard_pos, pos)
        if pos <= self._run_pos:
            return  # the end of an earlier run, echoed after the next one began
        raw = now - pos / 1000.0
        rtt = self.delay.rtt_s
        if not self._run_echoes and rtt is not None:
            # The run's first echo: how long its first frame waited at the carrier.
            self.delay.jitter_sample(raw - rtt - self._run_sent_at + self._run_pos / 1000.0)
        self._run_echoes.append(raw)
        self._refresh_offset()

    async def clear(self) -> None:
        """Barge-in: drop what is queued here and have the carrier drop what it buffered.

        Measure :meth:`heard_ms` first: the clear forgets what the carrier still had.
        """
        now = self._clock()
        heard = self.heard_ms(now)
        self.runner.clear()
        # Marks still outstanding come back at once after a clear without having played. The
        # last of them, if it lies beyond what the caller can have heard (by a frame: it surely
        # had not played), times the clear's round trip.
        last = max(self._outstanding_marks, key=float, default=None)
        self._clear_probe = last if last is not None and float(last) > heard + FRAME_MS else None
        self._ignored_marks |= self._outstanding_marks
        self._outstanding_marks.clear()
        # The carrier drops what it had: the caller hears nothing more until new audio flows.
        self._cap = heard
        self._running = False
        self._offset = NO_RUN
        self._clear_sent_at = now
        await self.carrier.send_clear()

    # -- to the carrier (hot path) ----------------------------------------------------------------

    async def _send_frame(self, data: bytes) -> None:
        pos = self._out_pos
        now = self._clock()
        if pos * 0.001 + self._offset < now:
            # By the playout line the carrier has played everything before this frame.
            self._new_run(pos, now)
        # A frame stands for more than 20 ms of the stream while the pacer catches up on a stall.
        self._out_pos = self.runner.sending.end_ms
        self.metrics.frames_out += 1
        await self.carrier.send_media(base64.b64encode(data).decode("ascii"))
        if self.carrier.has_marks and self._out_pos - self._last_mark_pos >= self.mark_interval_ms:
            await self._mark_here()

    async def _send_segment_mark(self, _label: str) -> None:
        if self.carrier.has_marks and self._out_pos > self._last_mark_pos:
            await self._mark_here()

    async def _mark_here(self) -> None:
        name = str(int(self._out_pos))
        self._last_mark_pos = self._out_pos
        self._outstanding_marks.add(name)
        self.metrics.marks_sent += 1
        await self.carrier.send_mark(name)
