"""Outbound pacing: provider audio in bursts, carrier frames out on a real-time grid.

Providers deliver speech faster than real time. Sending it all at once fills the carrier's buffer
with seconds of audio that a barge-in then has to throw away (and that the bridge cannot account
for); sending it exactly in real time starves the carrier at the first hiccup of the event loop.
The pacer keeps a small lead (80 ms by default) of audio at the carrier and sends one frame each
time the carrier's estimated play position advances by a frame.

:class:`Pacer` is pure logic driven by an injected clock (``pull(now)`` returns the frames due), so
tests need no real time; :class:`PacerRunner` is the thin asyncio loop around it.

Stall recovery: the carrier plays in real time, so when the event loop (or the network) stalls
for longer than the lead, the caller hears a gap and everything still queued here plays that much
later than it would have. Sending faster cannot win that time back (the carrier would only buffer
it); the pacer instead plays the backlog slightly faster until the gap is repaid: while it owes
time, each three queued frames go out as two (:mod:`.catchup`), dropping a quiet frame whole when
there is one and otherwise splicing 20 ms out of speech at its most self-similar point. That is a
1.5x playout speed (2x for the last frame owed, when only two frames are queued), so a 420 ms gap
is repaid in about 840 ms of playout. Meanwhile the carrier gets only two frames ahead (one for
the last frame owed) so that the backlog stays here, where it can be shortened; it never holds
more than the lead. Only a gap of at least :data:`MIN_GAP_MS` with audio waiting (here, or unread
in the socket during a loop stall) is owed: a provider that is slow to deliver adds no debt and
clears what is owed (its audio is not late because of us, and what was late has played).

Accounting is exact, in positions of the stream the provider delivered: ``sent_ms`` counts the
audio handed to the carrier (a frame that carries a splice counts the 40 ms it stands for),
``queued_ms`` the audio waiting here, and ``played_ms(now)`` what the caller can have heard,
which is what the bridge reports on barge-in (the provider's ``interrupt(heard_ms)``) for
carriers that do not echo marks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import catchup
from .formats import AudioFormat
from .stallwatch import StallWatch

__all__ = ["ClearResult", "PacedFrame", "Pacer", "PacerRunner"]

logger = logging.getLogger(__name__)

#: The shortest gap that is won back. A busy server's ordinary jitter leaves shorter ones (the
#: loop late by up to 160 ms with the default lead); they cost at most that much latency and are
#: left alone, so that audio reaches the caller byte for byte unless the server really stalled.
MIN_GAP_MS = 100.0

#: Frames ahead at the carrier while the pacer owes time: the rest stays here, where it can still be
#: played faster. Two: a loop late by up to 20 ms meanwhile costs no new gap.
CATCHUP_LEAD_FRAMES = 2

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class PacedFrame:
    """One carrier frame (or, with empty ``data``, only marks) due to be sent."""

    #: Exactly one frame of audio in the carrier format; ``b""`` for a mark-only item.
    data: bytes
    #: Position of the frame's first sample in the outbound stream, in ms since the pacer began.
    start_ms: float
    #: Clock time (the pacer's clock, seconds) at which the carrier should start playing it.
    play_at: float
    #: Marks to send right after this frame: the end of segments that :meth:`Pacer.end_segment`
    #: labelled.
    marks: tuple[str, ...] = ()
    #: Position just after the frame; ``start_ms`` + one frame, or more for a frame that stands
    #: for more of the stream (stall recovery played it faster). ``None``: one frame.
    end_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ClearResult:
    """What :meth:`Pacer.clear` dropped, in ms."""

    #: Audio that was still queued in the pacer and never sent.
    dropped_queued_ms: float
    #: Audio already sent that the carrier had not played yet (it drops it on its own ``clear``).
    dropped_at_carrier_ms: float
    #: Audio the caller can have heard in total, after the clear.
    played_ms: float


class Pacer:
    """Re-chunks provider audio into fixed carrier frames and releases them on time.

    Audio must already be in the carrier's ``fmt``. Frames are never partial: a trailing
    fragment waits for more audio, and :meth:`end_segment` pads it with the format's silence.
    """

    def __init__(
        self, fmt: AudioFormat, *, frame_ms: int = 20, lead_ms: int = 80, catch_up: bool = True
    ) -> None:
        if lead_ms < frame_ms:
            raise ValueError("lead_ms must be at least one frame")
        self.format = fmt
        self.frame_ms = frame_ms
        self.lead_ms = lead_ms
        #: Bytes per carrier frame (160 for 20 ms of µ-law 8k, 640 for PCM16 16k).
        self.frame_bytes = fmt.bytes_for_ms(frame_ms)
        self._frame_s = frame_ms / 1000.0
        self._lead_s = lead_ms / 1000.0
        # While catching up the carrier gets a shorter lead: audio already there cannot be
        # played faster, so the backlog is kept here where it can (and once the debt is paid,
        # a provider speaking in real time leaves the carrier as little ahead as before).
        self._catchup_lead_s = min(self._lead_s, CATCHUP_LEAD_FRAMES * self._frame_s)
        self._half_frame_ms = frame_ms / 2
        # Queued frames: (data, marks, extra) where ``extra`` is stream ms the frame stands for
        # beyond its own duration (0 except for frames that stall recovery compressed).
        self._frames: deque[tuple[bytes, tuple[str, ...], float]] = deque()
        self._partial = bytearray()
        self._loose_marks: list[str] = []
        self._sent = 0.0
        self._queued_extra_ms = 0.0
        self._dropped_at_carrier_ms = 0.0
        # The carrier's play-out schedule: frames sent since ``_anchor`` play back to back from it.
        self._anchor = 0.0
        self._since_anchor = 0
        #: Gap time (ms) the caller heard while audio waited here, not yet won back.
        self.debt_ms = 0.0
        #: Totals for metrics and tests: gap time owed, and stream ms won back by compression.
        self.stalled_ms = 0.0
        self.recovered_ms = 0.0
        # Frames remained queued after the last pull: a dry carrier then means we were late.
        self._backlogged = False
        # Compressed frames still at the carrier: (play start, extra ms), oldest first.
        self._extras: deque[tuple[float, float]] = deque()
        # Frames at the head of the queue that are a splice's output (never spliced twice).
        self._spliced_ahead = 0
        #: Win back stall gaps (off only to measure what a stall costs without it).
        self.catch_up = catch_up
        #: ``probe(now)``: the loop's blocked interval that just ended, or ``None``
        #: (:meth:`.stallwatch.StallWatch.stall_before`; PacerRunner sets it on a real loop).
        self.stall_probe: Callable[[float], tuple[float, float] | None] | None = None
        self._splicer = catchup.Splicer(fmt, frame_ms)

    @property
    def sent_ms(self) -> float:
        """Milliseconds of the stream handed to the carrier so far (whole frames only)."""
        return self._sent

    @property
    def queued_ms(self) -> float:
        """Milliseconds of audio waiting in the pacer, including a partial frame."""
        total = len(self._frames) * self.frame_bytes + len(self._partial)
        return self.format.duration_ms(total) + self._queued_extra_ms

    def _play_end(self) -> float:
        return self._anchor + self._since_anchor * self._frame_s

    def buffered_ms(self, now: float) -> float:
        """Milliseconds of the stream sent but (by the real-time estimate) not yet played by the
        carrier. Equal to the play time left there, except while compressed frames play."""
        left = max(0.0, self._play_end() - now)
        if not self._extras:
            return left * 1000.0
        extra = 0.0
        for start, ms in self._extras:
            unplayed = min(1.0, max(0.0, (start + self._frame_s - now) / self._frame_s))
            extra += ms * unplayed
        return left * 1000.0 + extra

    def played_ms(self, now: float) -> float:
        """Milliseconds the caller can have heard: sent, minus dropped, minus still buffered."""
        heard = self._sent - self._dropped_at_carrier_ms
        return max(0.0, heard - self.buffered_ms(now))

    def push(self, data: Buffer) -> None:
        """Queue provider audio (any length, in the carrier format)."""
        if not data:
            return
        self._partial += data
        size = self.frame_bytes
        whole = len(self._partial) - len(self._partial) % size
        if whole:
            view = memoryview(self._partial)
            for i in range(0, whole, size):
                self._frames.append((bytes(view[i : i + size]), (), 0.0))
            view.release()
            del self._partial[:whole]

    def end_segment(self, mark: str | None = None) -> None:
        """Close a segment: pad its last partial frame with silence and attach ``mark``."""
        if self._partial:
            pad = self.frame_bytes - len(self._partial)
            self._partial += bytes([self.format.silence_byte]) * pad
            self._frames.append((bytes(self._partial), (), 0.0))
            self._partial.clear()
        if mark is None:
            return
        if self._frames:
            data, marks, extra = self._frames[-1]
            self._frames[-1] = (data, (*marks, mark), extra)
        else:
            self._loose_marks.append(mark)

    def next_due(self, now: float) -> float | None:
        """Clock time at which :meth:`pull` will next return something, or ``None`` if idle."""
        if self._loose_marks:
            return now
        if not self._frames:
            return None
        lead = self._catchup_lead() if self.debt_ms >= self._half_frame_ms else self._lead_s
        return max(now, self._play_end() - lead + self._frame_s)

    def pull(self, now: float) -> list[PacedFrame]:
        """Frames due at clock time ``now``, in order; at most enough to restore the lead."""
        out: list[PacedFrame] = []
        if self._loose_marks:
            out.append(
                PacedFrame(b"", self.sent_ms, max(now, self._play_end()), tuple(self._loose_marks))
            )
            self._loose_marks.clear()
        play_end = self._play_end()
        if play_end < now and self._frames:
            # The carrier ran dry (nothing to send, or the loop stalled): playback restarts now.
            # (With nothing to send the schedule stays put, so that audio read a moment later
            # still knows when the carrier went quiet.)
            if self.catch_up:
                self._owe(play_end, now)
            self._anchor = now
            self._since_anchor = 0
        lead = self._catchup_lead() if self.debt_ms >= self._half_frame_ms else self._lead_s
        limit = now + lead + 1e-9
        frames = self._frames
        extras = self._extras
        while extras and extras[0][0] + self._frame_s <= now:
            extras.popleft()
        while frames and self._play_end() + self._frame_s <= limit:
            if self._spliced_ahead:
                self._spliced_ahead -= 1
            elif self.debt_ms >= self._half_frame_ms and len(frames) >= 2:
                self._compress_head()
            data, marks, extra = frames.popleft()
            start = self._sent
            play_at = self._play_end()
            if extra:
                self._queued_extra_ms -= extra
                extras.append((play_at, extra))
            self._sent = start + self.frame_ms + extra
            self._since_anchor += 1
            out.append(PacedFrame(data, start, play_at, marks, self._sent))
        # (The debt outlives an empty queue: a provider streaming in real time refills it frame
        # by frame, as late as the stall left it, until the carrier next plays out.)
        self._backlogged = bool(frames)
        return out

    def _catchup_lead(self) -> float:
        """The carrier's lead while time is owed: :data:`CATCHUP_LEAD_FRAMES`, and one frame for
        the last frame owed (a provider speaking in real time has no more queued here than
        that, so it can only come out of what the carrier would otherwise hold)."""
        if self.debt_ms < self.frame_ms + self._half_frame_ms:
            return self._frame_s
        return self._catchup_lead_s

    def _owe(self, dry_since: float, now: float) -> None:
        """The carrier has been dry since ``dry_since`` with audio here now: how much of that
        gap did the caller hear only because we were late?"""
        if self._backlogged:
            # Audio was waiting here all along: all of it. The rest of the backlog would keep
            # the gap as added delay.
            gap = now - dry_since
        elif (
            self.stall_probe is not None
            and (blocked := self.stall_probe(now)) is not None
            # (The watch last ticked a frame before the blocked interval: the stall began later.)
            and dry_since >= (ran_until := blocked[0] - self._frame_s) - MIN_GAP_MS / 1000.0
        ):
            # The carrier ran dry during a loop stall and the audio arrived just as the loop
            # came back: it was waiting in the socket, held back for the part of the gap the
            # stall covers. (A carrier already quiet before the stall was between answers: the
            # stall delayed the start of this one, which playing it faster cannot undo. Quiet
            # for less than MIN_GAP_MS is no pause but a provider speaking in real time a few ms
            # late, as it often is: its lateness is not owed, the stall after it is.)
            gap = max(0.0, min(now, blocked[1]) - max(dry_since, ran_until))
        else:
            gap = 0.0
        gap_ms = gap * 1000.0
        if gap_ms < MIN_GAP_MS:
            if gap_ms <= 0:
                # The provider was slow and the carrier played out everything before this
                # audio: nothing before it is late any more, and this audio is not late
                # because of us.
                self.debt_ms = 0.0
            return
        self.debt_ms += gap_ms
        self.stalled_ms += gap_ms
        logger.debug("pacer: carrier dry %.0f ms while audio waited; catching up", gap_ms)

    def _compress_head(self) -> None:
        """Replace the first three queued frames by two that stand for the same stream; with
        only two queued and a whole frame owed, those two by one.

        Frames that carry marks are not spliced across (a mark must follow the audio it closes):
        marks may only sit on the last frame of a group.
        """
        frames = self._frames
        if len(frames) >= 3:
            group = (frames[0], frames[1], frames[2])
        elif self.debt_ms >= self.frame_ms:
            group = (frames[0], frames[1])
        else:
            return
        if any(marks for _, marks, _ in group[:-1]):
            return
        shorter = self._splicer.shorten(tuple(data for data, _, _ in group))
        for _ in group:
            frames.popleft()
        # The won-back frame counts on the last output frame: the cut is in its audio or before
        # it, so positions never run ahead of what has played.
        extra = sum(e for _, _, e in group) + self.frame_ms
        last = group[-1]
        frames.appendleft((shorter[-1], last[1], extra - group[0][2] * (len(shorter) > 1)))
        if len(shorter) > 1:
            frames.appendleft((shorter[0], (), group[0][2]))
        self._spliced_ahead = len(shorter) - 1  # output frames are not compressed again
        self._queued_extra_ms += self.frame_ms
        self.debt_ms = max(0.0, self.debt_ms - self.frame_ms)
        self.recovered_ms += self.frame_ms

    def clear(self, now: float) -> ClearResult:
        """Barge-in: drop everything queued and assume the carrier drops what it buffered.

        Send the carrier its ``clear`` message together with this call. Marks on dropped frames
        are discarded with them.
        """
        dropped_queued = self.queued_ms
        self._frames.clear()
        self._partial.clear()
        self._loose_marks.clear()
        self._queued_extra_ms = 0.0
        self.debt_ms = 0.0
        self._backlogged = False
        self._spliced_ahead = 0
        unplayed = self.buffered_ms(now)
        self._dropped_at_carrier_ms += unplayed
        self._extras.clear()
        self._anchor = now
        self._since_anchor = 0
        result = ClearResult(dropped_queued, unplayed, self.played_ms(now))
        logger.debug("pacer cleared: %s", result)
        return result


SendFrame = Callable[[bytes], Awaitable[None]]
SendMark = Callable[[str], Awaitable[None]]


class PacerRunner:
    """Drives a :class:`Pacer` from an asyncio task.

    ``run()`` sleeps until the next frame is due (or until new audio is pushed), then awaits
    ``send_frame`` for each frame and ``send_mark`` for each mark, in order. ``clock`` and
    ``sleep`` are injectable so tests can use a virtual clock.

    Audio that is due the moment it arrives (a provider speaking in real time, once the lead is
    built up) need not wait for this task: ``push(data, wake=False)`` then :meth:`send_due` sends
    it from the pushing task, one scheduling round earlier and without waking this one. Sends
    never overlap: whoever sends holds ``_sending``, and the other side defers to it.
    """

    def __init__(
        self,
        pacer: Pacer,
        send_frame: SendFrame,
        send_mark: SendMark | None = None,
        *,
        on_frame: Callable[[PacedFrame], None] | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.pacer = pacer
        self._send_frame = send_frame
        self._send_mark = send_mark
        self._on_frame = on_frame
        self._clock = clock
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._closed = False
        #: True while run() or send_due() is sending (a send may suspend): frames stay in order.
        self._sending = False
        #: The frame being sent, while ``send_frame`` runs: its ``end_ms`` is the stream position
        #: the carrier will have once it plays it (what a mark sent after it stands for).
        self.sending: PacedFrame | None = None

    def now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def push(self, data: Buffer, *, wake: bool = True) -> None:
        """Queue audio; ``wake=False`` when :meth:`send_due` follows at once."""
        self.pacer.push(data)
        if wake:
            self._wake.set()

    async def send_due(self) -> None:
        """Send what is due now from the calling task, unless a send is under way (that sender,
        or ``run()`` after it, sends it in order). ``run()`` is woken only if audio is left for
        later, so that it times it."""
        if self._sending or self._closed:
            self._wake.set()
            return
        now = self.now()
        await self._send_due(now)
        if self.pacer.next_due(now) is not None:  # None or not depends on the queue, not on now
            self._wake.set()

    def end_segment(self, mark: str | None = None) -> None:
        self.pacer.end_segment(mark)
        self._wake.set()

    def clear(self) -> ClearResult:
        result = self.pacer.clear(self.now())
        self._wake.set()
        return result

    def close(self) -> None:
        """Stop ``run()`` after the frame being sent, if any."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        watch = None
        if self._clock is None:
            watch = StallWatch.of(asyncio.get_running_loop())
            watch.acquire()
            self.pacer.stall_probe = watch.stall_before
        try:
            await self._run()
        finally:
            if watch is not None:
                watch.release()

    async def _run(self) -> None:
        while not self._closed:
            if not self._sending:
                await self._send_due(self.now())
            due = self.pacer.next_due(self.now())
            self._wake.clear()
            if due is None or self._sending:
                # Idle, or send_due() is sending: it wakes us when it leaves audio for later.
                await self._wake.wait()
                continue
            delay = due - self.now()
            if delay > 0:
                await self._wait(delay)

    async def _send_due(self, now: float) -> None:
        self._sending = True
        try:
            for frame in self.pacer.pull(now):
                if frame.data:
                    self.sending = frame
                    await self._send_frame(frame.data)
                    if self._on_frame is not None:
                        self._on_frame(frame)
                if self._send_mark is not None:
                    for mark in frame.marks:
                        await self._send_mark(mark)
        finally:
            self._sending = False

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds or until woken, whichever comes first."""
        if self._sleep is None:
            # A timer that sets the event is much cheaper per frame than two racing tasks.
            handle = asyncio.get_running_loop().call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                handle.cancel()
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
