"""Dummy Tel's side of a media stream: the caller's audio in, the agent's played in real time.

Like Twilio's fake caller, it plays what it receives on a real-time clock (32 bytes of 16 kHz
PCM16 per ms) and answers each ``checkpoint`` with ``played`` once the audio before it has
played; ``flush`` drops what is queued and answers the pending checkpoints at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque

BYTES_PER_MS = 32
FRAME_BYTES = 20 * BYTES_PER_MS


class FakeDummyTelCaller:
    def __init__(self, send_text, receive_text):
        self._send_text = send_text
        self._receive_text = receive_text
        self.media_in = bytearray()
        self.checkpoints_played: list[str] = []
        self.flushes = 0
        self.closed = asyncio.Event()
        self._queue: deque = deque()  # ("audio", n_bytes) | ("checkpoint", id)
        self._clock: float | None = None
        self._consumed = 0.0
        self._tasks: list[asyncio.Task] = []

    async def send(self, frame: dict) -> None:
        await self._send_text(json.dumps(frame))

    async def hello(self, call_id: str, token: str, leg: str) -> None:
        await self.send(
            {"event": "hello", "call": call_id, "token": token, "stream": "s1", "leg": leg}
        )
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._play())]

    async def media(self, audio: bytes) -> None:
        await self.send({"event": "audio", "pcm": base64.b64encode(audio).decode()})

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "key", "key": digit})

    async def stop(self) -> None:
        await self.send({"event": "bye"})

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            text = await self._receive_text(3600)
            if text is None:
                self.closed.set()
                return
            frame = json.loads(text)
            if frame["event"] == "play":
                audio = base64.b64decode(frame["pcm"])
                self.media_in += audio
                self._enqueue(loop, ("audio", len(audio)))
            elif frame["event"] == "checkpoint":
                self._enqueue(loop, ("checkpoint", frame["id"]))
            elif frame["event"] == "flush":
                self.flushes += 1
                pending = [value for kind, value in self._queue if kind == "checkpoint"]
                self._queue.clear()
                for name in pending:
                    await self.send({"event": "played", "id": name})

    def _enqueue(self, loop, item) -> None:
        if not self._queue:
            self._clock, self._consumed = loop.time(), 0.0
        self._queue.append(item)

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.005)
            while self._queue:
                kind, value = self._queue[0]
                if kind == "checkpoint":
                    self._queue.popleft()
                    self.checkpoints_played.append(value)
                    await self.send({"event": "played", "id": value})
                    continue
                duration = value / BYTES_PER_MS / 1000
                if loop.time() - self._clock < self._consumed + duration:
                    break
                self._consumed += duration
                self._queue.popleft()
