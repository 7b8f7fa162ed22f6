"""What one monitor socket sends, at a bounded rate: a token bucket that skips lines, not calls.

Events go out at once while the socket is within ``rate`` messages a second (bursts of a second's
worth). Over that, a transcript line is skipped and counted per call, and a call's start or end
is held (its latest one) until there is room; then the held events go first and each call with
skipped lines gets one ``skipped`` notice with the count. So however fast calls publish, the
browser gets at most ``rate`` messages a second and knows what it missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Outbox:
    def __init__(self, send: Callable[[dict], Awaitable[None]], rate: float):
        if not rate > 0:
            raise ValueError(f"the monitor's message rate must be positive, not {rate!r}")
        self._send = send
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate)
        self._loop = asyncio.get_running_loop()
        self._tokens = self.capacity
        self._stamp = self._loop.time()
        #: Latest held start/end per call id, and lines skipped per call id (insertion-ordered).
        self._held: dict[str, dict] = {}
        self._skipped: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task | None = None
        #: Messages sent, and lines skipped, over the socket's life.
        self.sent = 0
        self.skipped = 0

    async def offer(self, event: dict) -> None:
        """Send ``event`` now if the rate allows and nothing waits before it; else skip or hold it."""
        if not self._held and not self._skipped and self._take():
            await self._deliver(event)
            return
        call_id = str(event.get("call_id", ""))
        if event.get("type") == "line":
            self._skipped[call_id] = self._skipped.get(call_id, 0) + 1
            self.skipped += 1
        else:
            self._held.pop(call_id, None)
            self._held[call_id] = event
        self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._flushing is not None:
            self._flushing.cancel()

    async def flush(self) -> None:
        """Send what waits, held events first, as far as the rate allows; come back for the rest."""
        self._timer = None
        while (self._held or self._skipped) and self._take():
            if self._held:
                call_id = next(iter(self._held))
                event = self._held.pop(call_id)
            else:
                call_id = next(iter(self._skipped))
                event = {"type": "skipped", "call_id": call_id, "count": self._skipped.pop(call_id)}
            await self._deliver(event)
        if self._held or self._skipped:
            self._schedule()

    def _take(self) -> bool:
        now = self._loop.time()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        wait = max(0.0, (1 - self._tokens) / self.rate)
        self._timer = self._loop.call_later(wait, self._start_flush)

    def _start_flush(self) -> None:
        self._flushing = asyncio.ensure_future(self.flush())

    async def _deliver(self, event: dict) -> None:
        self.sent += 1
        await self._send(event)
