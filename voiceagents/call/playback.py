"""Agent audio out to the carrier: paced frames, marks, and what the caller has heard.

Positions are ms in the outbound stream (the agent audio sent since the call began, silence not
counted). The pacer sends one frame per 20 ms with a small lead; a mark goes out every
``mark_interval_ms`` of audio and at the end of each segment, named by its own position, so that
an echoed mark says "the caller heard up to here". A barge-in asks :meth:`Playback.heard_ms` how
far the caller got, then :meth:`Playback.clear` drops everything not yet played.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from ..audio.convert import Converter
from ..audio.formats import AudioFormat
from ..audio.pacer import PacedFrame, Pacer, PacerRunner
from .carrier_link import CarrierLink
from .metrics import CallMetrics

#: The carrier frame: 20 ms, what both carriers stream.
FRAME_MS = 20


class Playback:
    def __init__(
        self,
        carrier: CarrierLink,
        metrics: CallMetrics,
        *,
        lead_ms: int,
        mark_interval_ms: int,
        on_frame: Callable[[PacedFrame], None] | None = None,
    ):
        self.carrier = carrier
        self.metrics = metrics
        self.mark_interval_ms = mark_interval_ms
        self.frame_ms = FRAME_MS
        self.pacer = Pacer(carrier.carrier_format, frame_ms=FRAME_MS, lead_ms=lead_ms)
        self.runner = PacerRunner(
            self.pacer, self._send_frame, self._send_segment_mark, on_frame=on_frame
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

    def source_format(self, fmt: AudioFormat) -> None:
        """The provider's output format, known once it is open."""
        if fmt != self.carrier.carrier_format:
            self.convert = Converter(fmt, self.carrier.carrier_format)

    async def run(self) -> None:
        """The playout task: sends frames as they fall due."""
        await self.runner.run()

    def close(self) -> None:
        self.runner.close()

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
        """Stream position the caller has heard: the pacer's estimate, bounded by marks.

        The estimate assumes the carrier plays what it gets in real time. Marks bound it: the
        caller has heard at least up to the last acknowledged mark and less than the earliest
        mark still outstanding. So marks can be sparse (every ``mark_interval_ms``) without
        coarsening barge-in accounting, and a carrier that stalls cannot make us over-count.
        """
        estimate = self.pacer.sent_ms - self.pacer.buffered_ms(now)
        if not self.carrier.has_marks:
            return estimate
        # Mark names are our own outbound positions (see _mark_here).
        upper = min(map(float, self._outstanding_marks), default=estimate)
        return max(self._heard_pos, min(estimate, upper))

    def mark_echoed(self, name: str) -> None:
        """The carrier played everything sent before mark ``name``."""
        if name in self._ignored_marks:
            self._ignored_marks.discard(name)
            return
        if name not in self._outstanding_marks:
            return
        self._outstanding_marks.discard(name)
        self.metrics.marks_acked += 1
        try:
            self._heard_pos = max(self._heard_pos, float(name))
        except ValueError:
            pass

    async def clear(self) -> None:
        """Barge-in: drop what is queued here and have the carrier drop what it buffered.

        Measure :meth:`heard_ms` first: the clear forgets what the carrier still had.
        """
        self.runner.clear()
        # Marks still outstanding come back at once after a clear without having played.
        self._ignored_marks |= self._outstanding_marks
        self._outstanding_marks.clear()
        await self.carrier.send_clear()

    # -- to the carrier (hot path) ----------------------------------------------------------------

    async def _send_frame(self, data: bytes) -> None:
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
