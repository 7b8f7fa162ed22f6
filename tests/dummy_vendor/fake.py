"""Dummy Tel's side of a media stream: the caller's audio in, the agent's played in real time.

Like Twilio's fake caller, it plays what it receives on a real-time clock (32 bytes of 16 kHz
PCM16 per ms) and answers each ``checkpoint`` with ``played`` once the audio before it has
played; ``flush`` drops what is queued and answers the pending checkpoints at once.
"""

from __future__ import annotations

import asyncio
import base64
import json

from tests.fakes.playout import Playout

BYTES_PER_MS = 32
FRAME_BYTES = 20 * BYTES_PER_MS


class FakeDummyTelCaller:
    def __init__(self, send_text, receive_text):
        self._send_text = send_text
        self._receive_text = receive_text
        self.media_in = bytearray()
        self.flushes = 0
        self.closed = asyncio.Event()
        self.playout = Playout(self._played, BYTES_PER_MS)
        self._tasks: list[asyncio.Task] = []

    @property
    def checkpoints_played(self) -> list[str]:
        return self.playout.marks_played

    async def _played(self, checkpoint: str) -> None:
        await self.send({"event": "played", "id": checkpoint})

    async def send(self, frame: dict) -> None:
        await self._send_text(json.dumps(frame))

    async def hello(self, call_id: str, token: str, leg: str) -> None:
        await self.send(
            {"event": "hello", "call": call_id, "token": token, "stream": "s1", "leg": leg}
        )
        self._tasks = [
            asyncio.ensure_future(self._read()),
            asyncio.ensure_future(self.playout.run()),
        ]

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
        while True:
            text = await self._receive_text(3600)
            if text is None:
                self.closed.set()
                return
            frame = json.loads(text)
            if frame["event"] == "play":
                audio = base64.b64decode(frame["pcm"])
                self.media_in += audio
                self.playout.audio(len(audio))
            elif frame["event"] == "checkpoint":
                self.playout.mark(frame["id"])
            elif frame["event"] == "flush":
                self.flushes += 1
                await self.playout.clear()
