"""A carrier behind a real network: one-way delay, a jitter buffer, playout in real time.

Twilio's and Telnyx's fake callers (tests/fakes/twilio_stream.py, tests/fakes/telnyx.py) with their
playback replaced by a model of a carrier on the far side of a network:

* every frame the server sends arrives ``delay(t)`` seconds later (in order, as over TCP);
* audio arriving while the carrier has nothing playing waits ``jitter_ms`` in its jitter buffer,
  then plays back to back in real time; after running dry it buffers again;
* a mark is echoed when the audio before it has finished playing (at once if nothing is queued),
  and the echo takes ``delay(t)`` back;
* a ``clear`` drops what has not played when it arrives and echoes the queued marks at once.

Times in the model are the nominal ones (when a frame *should* arrive), so the truth does not
depend on how late this fake's own tasks run: :attr:`DelayedLine.at_clear` holds what the caller
had heard (ms of agent audio since the stream began) when each ``clear`` reached the carrier.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import json
import random
from collections.abc import Callable

from tests.fakes import telnyx as telnyx_frames
from tests.fakes import twilio as twilio_frames
from tests.fakes.telnyx import FakeTelnyxCaller
from tests.fakes.twilio_stream import FakeTwilioCaller


def fixed(ms: float) -> Callable[[float], float]:
    """A constant one-way delay."""
    return lambda _t: ms / 1000.0


class RandomWalk:
    """A one-way delay that drifts: every ``every_s`` it moves by up to ``step_ms`` either way,
    kept within ``[low_ms, high_ms]``; seeded, so a run can be repeated."""

    def __init__(
        self,
        low_ms: float = 20.0,
        high_ms: float = 80.0,
        *,
        step_ms: float = 3.0,
        every_s: float = 0.1,
        seed: int = 18,
    ):
        self.low, self.high, self.step, self.every = low_ms, high_ms, step_ms, every_s
        self._rng = random.Random(seed)
        self._values = [(low_ms + high_ms) / 2]
        self._t0: float | None = None

    def __call__(self, t: float) -> float:
        if self._t0 is None:
            self._t0 = t
        index = max(0, int((t - self._t0) / self.every))
        while len(self._values) <= index:
            value = self._values[-1] + self._rng.uniform(-self.step, self.step)
            self._values.append(min(self.high, max(self.low, value)))
        return self._values[index] / 1000.0


class DelayedLine:
    """The carrier model, mixed into a fake caller (whose ``_read`` and ``_play`` it replaces)."""

    bytes_per_ms = 8  # µ-law 8 kHz

    def setup_line(self, delay: Callable[[float], float], jitter_ms: float) -> None:
        self.delay = delay
        self.jitter_s = jitter_ms / 1000.0
        #: What the caller had heard (ms since the stream began) when each clear arrived.
        self.at_clear: list[float] = []
        #: (nominal arrival time, clock time the server sent it) of each clear.
        self.clear_times: list[float] = []
        self._events: list = []  # heap of (time, seq, kind, value)
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._down_last = 0.0  # arrival time of the last frame from the server (FIFO)
        self._up_last = 0.0  # ... and of the last frame to it
        self._segments: list[tuple[float, float]] = []  # (start, duration) since the last clear
        self._played_before_s = 0.0  # audio played before the last clear
        self._play_end = 0.0
        self._marks: dict[str, float] = {}  # queued marks -> when they are reached

    # -- the truth --------------------------------------------------------------------------------

    def played_ms(self, at: float | None = None) -> float:
        """Agent audio the caller has heard by clock time ``at`` (default: now), ms."""
        if at is None:
            at = asyncio.get_running_loop().time()
        played = self._played_before_s
        for start, duration in self._segments:
            played += min(duration, max(0.0, at - start))
        return played * 1000.0

    def idle(self) -> bool:
        """Nothing in flight either way and nothing left to play."""
        now = asyncio.get_running_loop().time()
        return not self._events and self._play_end <= now and self._down_last <= now

    # -- the network --------------------------------------------------------------------------------

    def _at(self, when: float, kind: str, value) -> None:
        heapq.heappush(self._events, (when, next(self._seq), kind, value))
        self._wake.set()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            text = await self._receive_text(3600)
            if text is None:
                self.closed.set()
                return
            now = loop.time()
            arrive = max(self._down_last, now + self.delay(now))
            self._down_last = arrive
            self._at(arrive, "down", text)

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if not self._events:
                await self._wake.wait()
                continue
            when = self._events[0][0]
            wait = when - loop.time()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                continue
            _, _, kind, value = heapq.heappop(self._events)
            if kind == "down":
                self._arrived(json.loads(value), when)
            elif kind == "reached":
                if self._marks.pop(value, None) is not None:
                    self._echo_later(value, when)
            elif kind == "up":
                await self.send(value)

    def _echo_later(self, name: str, sent_at: float) -> None:
        arrive = max(self._up_last, sent_at + self.delay(sent_at))
        self._up_last = arrive
        self._at(arrive, "up", self._echo_frame(name))

    # -- the carrier --------------------------------------------------------------------------------

    def _arrived(self, frame: dict, at: float) -> None:
        self.received.append(frame)
        event = frame.get("event")
        if event == "media":
            data = base64.b64decode(frame["media"]["payload"])
            self.media_in += data
            duration = len(data) / self.bytes_per_ms / 1000.0
            # Idle (or run dry): the jitter buffer fills before playout starts.
            start = self._play_end if self._play_end >= at else at + self.jitter_s
            self._segments.append((start, duration))
            self._play_end = start + duration
        elif event == "mark":
            name = frame["mark"]["name"]
            reached = max(self._play_end, at)
            self._marks[name] = reached
            self._at(reached, "reached", name)
        elif event == "clear":
            self.clears += 1
            heard = self.played_ms(at)
            self.at_clear.append(heard)
            self.clear_times.append(at)
            self._played_before_s = heard / 1000.0
            self._segments.clear()
            self._play_end = at
            for name, reached in sorted(self._marks.items(), key=lambda item: item[1]):
                self._echo_later(name, at if reached > at else reached)
            self._marks.clear()

    def _echo_frame(self, name: str) -> str:
        raise NotImplementedError


class DelayedTwilioCaller(DelayedLine, FakeTwilioCaller):
    """Twilio's framing (``streamSid``, string sequence numbers)."""

    def __init__(self, *args, delay: Callable[[float], float], jitter_ms: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_line(delay, jitter_ms)

    def _echo_frame(self, name: str) -> str:
        return json.dumps(
            twilio_frames.mark(self.stream_sid, name, sequence_number=int(self._next_seq()))
        )

    async def send(self, frame) -> None:
        await self._send_text(frame if isinstance(frame, str) else json.dumps(frame))


class DelayedTelnyxCaller(DelayedLine, FakeTelnyxCaller):
    """Telnyx's framing (``stream_id``, snake_case), PCMU."""

    def __init__(self, *args, delay: Callable[[float], float], jitter_ms: float, **kwargs):
        kwargs.setdefault("bytes_per_ms", 8)
        super().__init__(*args, **kwargs)
        self.setup_line(delay, jitter_ms)

    def _echo_frame(self, name: str) -> str:
        return json.dumps(telnyx_frames.mark(self.stream_id, name, sequence_number=self.next_seq()))

    async def send(self, frame) -> None:
        await self._send_text(frame if isinstance(frame, str) else json.dumps(frame))
