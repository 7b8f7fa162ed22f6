"""Telnyx caller audio put back in order and placed on the call clock.

Telnyx does not promise in-order media (docs/carriers/telnyx.md): frames are released in
``media.chunk`` order within a small window (``reorder.Reorder``), or by ``sequence_number``
when a frame has no chunk. Two guards keep one corrupt number from muting a call: a number far
ahead of the expected one is refused (the caller counts it malformed), and a run of "late" frames
means the numbering moved, so ordering starts over from the frames arriving.

Each released frame is placed on the call clock by its position in the stream, a frame given up
as lost leaving a gap of one frame (Telnyx's ``media.timestamp`` units are undocumented).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ...frames import Media
from .reorder import Reorder

logger = logging.getLogger(__name__)

#: Early frames held while waiting for a missing one (each costs at most 20 ms of delay).
REORDER_WINDOW = 2
#: A frame number this far past the expected one is a corrupt frame, not a gap (10 s of audio).
MAX_NUMBER_JUMP = 500
#: Late frames in a row after which the numbering is taken to have moved.
RESYNC_AFTER_LATE = 3


class InboundAudio:
    """``deliver`` a media frame: the frames now due go to the session with their positions."""

    def __init__(self, stats: dict) -> None:
        #: The consumer's counters (late, missing, reordered frames), updated in place.
        self.stats = stats
        self._by_chunk: Reorder[tuple[str, bytes]] = Reorder(REORDER_WINDOW)
        self._by_seq: Reorder[tuple[str, bytes]] = Reorder(0)
        self._late_run = 0
        self._counted = (0, 0, 0)  # late, missing, held, of the reorderers before a resync
        self._pos: float | None = None
        self._last_chunk: int | None = None
        self._last_frame_ms = 20.0

    def attach(
        self,
        caller_audio: Callable[[str, bytes, int], Awaitable[None]],
        call_ms: Callable[[], int],
        frame_ms: Callable[[int], float],
    ) -> None:
        """Where released audio goes (the session's ``caller_audio``), the call clock, and the
        duration of a frame of ``n`` bytes in the stream's inbound format."""
        self._caller_audio = caller_audio
        self._call_ms = call_ms
        self._frame_ms = frame_ms

    async def deliver(self, media: Media) -> bool:
        """Hand the frames now due to the session, in order and placed; False if ``media`` is
        corrupt (its number far ahead). The audio is taken out of ``media`` (which the codec
        reuses) before it may be held."""
        chunk = media.number
        item = (media.payload, media.audio)
        if chunk is not None:
            expected = self._by_chunk.expected
            if expected is not None and chunk > expected + MAX_NUMBER_JUMP:
                return False
            ready = self._by_chunk.push(chunk, item)
        elif media.sequence is None:
            ready = [(None, item)]
        elif self._jumped(self._by_seq, media.sequence):
            return False
        else:
            ready = [(None, held) for _, held in self._by_seq.push(media.sequence, item)]
        if len(ready) != 1:
            self._unusual(ready)
        elif self._late_run:
            self._late_run = 0
        for number, (payload, audio) in ready:
            await self._caller_audio(payload, audio, self._place(number, len(audio)))
        return True

    def _place(self, chunk: int | None, size: int) -> int:
        """The call-clock ms of a released frame of ``size`` bytes."""
        if self._pos is None:
            self._pos = float(self._call_ms())
        elif chunk is not None and self._last_chunk is not None and chunk > self._last_chunk + 1:
            self._pos += (chunk - self._last_chunk - 1) * self._last_frame_ms
        if chunk is not None:
            self._last_chunk = chunk
        at_ms = self._pos
        self._last_frame_ms = frame_ms = self._frame_ms(size)
        self._pos += frame_ms
        return int(at_ms)

    @staticmethod
    def _jumped(reorder: Reorder, number: int) -> bool:
        expected = reorder.expected
        return expected is not None and number > expected + MAX_NUMBER_JUMP

    def _unusual(self, ready: list) -> None:
        # Only when something unusual happened (a frame held, dropped or released late).
        chunks, seqs, stats = self._by_chunk, self._by_seq, self.stats
        late = self._counted[0] + chunks.late + seqs.late
        if ready:
            self._late_run = 0
        elif late > stats["late_frames"]:
            self._late_run += 1
        stats["late_frames"] = late
        stats["missing_frames"] = self._counted[1] + chunks.missing
        stats["reordered_frames"] = self._counted[2] + chunks.held
        if self._late_run >= RESYNC_AFTER_LATE:
            logger.warning("Telnyx frame numbers moved; ordering starts over")
            self._counted = (late, stats["missing_frames"], stats["reordered_frames"])
            self._by_chunk, self._by_seq = Reorder(REORDER_WINDOW), Reorder(0)
            self._late_run = 0
