"""The browser test call's page, as the tests play it: the microphone in, the agent's voice out.

Like the page's worklet, it plays what it receives on a real-time clock (32 bytes of 16 kHz
PCM16 per ms) and echoes each ``mark`` once the audio before it has played; ``clear`` drops what
is queued and echoes the pending marks at once.
"""

from __future__ import annotations

import asyncio
import base64
import json

from tests.fakes.playout import Playout

BYTES_PER_MS = 32
FRAME_BYTES = 20 * BYTES_PER_MS


class FakeBrowserPage:
    def __init__(self, send_text, receive_text):
        self._send_text = send_text
        self._receive_text = receive_text
        self.media_in = bytearray()
        self.clears = 0
        self.closed = asyncio.Event()
        self.playout = Playout(self._played, BYTES_PER_MS)
        self._tasks: list[asyncio.Task] = []

    @property
    def marks_played(self) -> list[str]:
        return self.playout.marks_played

    async def _played(self, name: str) -> None:
        await self.send({"event": "mark", "name": name})

    async def send(self, frame: dict) -> None:
        await self._send_text(json.dumps(frame))

    async def start(self, call_id: str, token: str, carrier_call_id: str, stream_id: str) -> None:
        await self.send(
            {
                "event": "start",
                "call_id": call_id,
                "token": token,
                "stream_id": stream_id,
                "carrier_call_id": carrier_call_id,
            }
        )
        self._tasks = [
            asyncio.ensure_future(self._read()),
            asyncio.ensure_future(self.playout.run()),
        ]

    async def media(self, audio: bytes) -> None:
        await self.send({"event": "media", "payload": base64.b64encode(audio).decode()})

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "digit": digit})

    async def stop(self) -> None:
        await self.send({"event": "stop"})

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
            if frame["event"] == "media":
                audio = base64.b64decode(frame["payload"])
                self.media_in += audio
                self.playout.audio(len(audio))
            elif frame["event"] == "mark":
                self.playout.mark(frame["name"])
            elif frame["event"] == "clear":
                self.clears += 1
                await self.playout.clear()
