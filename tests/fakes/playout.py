"""A phone's loudspeaker, for fake callers: received audio plays on a real-time clock, and each
mark is answered once the audio before it has played; a clear drops what is queued and answers
the pending marks at once."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable


class Playout:
    """``echo(name)`` answers a mark; ``bytes_per_ms`` is the played format's rate."""

    def __init__(self, echo: Callable[[str], Awaitable[None]], bytes_per_ms: float):
        self._echo = echo
        self.bytes_per_ms = bytes_per_ms
        #: Names of the marks played so far, in order.
        self.marks_played: list[str] = []
        self._queue: deque = deque()  # ("audio", n_bytes) | ("mark", name)
        self._clock = 0.0
        self._consumed = 0.0

    def audio(self, nbytes: int) -> None:
        self._enqueue(("audio", nbytes))

    def mark(self, name: str) -> None:
        self._enqueue(("mark", name))

    async def clear(self) -> None:
        pending = [value for kind, value in self._queue if kind == "mark"]
        self._queue.clear()
        for name in pending:
            await self._echo(name)

    def _enqueue(self, item) -> None:
        if not self._queue:
            self._clock, self._consumed = asyncio.get_running_loop().time(), 0.0
        self._queue.append(item)

    async def run(self) -> None:
        """Play forever (a task of the fake caller)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.005)
            while self._queue:
                kind, value = self._queue[0]
                if kind == "mark":
                    self._queue.popleft()
                    self.marks_played.append(value)
                    await self._echo(value)
                    continue
                duration = value / self.bytes_per_ms / 1000
                if loop.time() - self._clock < self._consumed + duration:
                    break
                self._consumed += duration
                self._queue.popleft()
