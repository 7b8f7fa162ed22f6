"""A fake Twilio Media Streams client, transport-agnostic (docs/carriers/twilio.md#wire-protocol).

It plays Twilio's side of a bidirectional stream: ``connected``, ``start`` with the TwiML
parameters, 20 ms μ-law ``media`` frames paced in real time, ``dtmf``, ``stop``. It records what
the server sends and echoes each ``mark`` once its simulated playback clock (8 bytes of μ-law per
ms, starting when audio arrives) passes it; ``clear`` empties the playback queue and echoes the
outstanding marks at once, as Twilio does (docs/carriers/twilio.md#marks-and-clear).

Use it over Channels' ``WebsocketCommunicator`` or a real ``websockets`` client by passing the two
coroutines that send and receive text frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

FRAME_BYTES = 160  # 20 ms of μ-law 8 kHz


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class Playback:
    """Twilio's outbound queue: audio plays in real time, marks echo when reached."""

    queue: deque = field(default_factory=deque)  # ("audio", n_bytes) | ("mark", name)
    played_bytes: int = 0
    acked_bytes: int = 0  # audio played before the last echoed (not cleared) mark
    clock_start: float | None = None
    consumed_s: float = 0.0


class FakeTwilioCaller:
    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        receive_text: Callable[[float], Awaitable[str | None]],
        *,
        call_sid: str | None = None,
    ):
        self._send_text = send_text
        self._receive_text = receive_text
        self.call_sid = call_sid or sid("CA")
        self.stream_sid = sid("MZ")
        self.account_sid = "AC" + "0" * 32
        self.seq = 0
        self.chunk = 0
        self.timestamp = 0
        self.received: list[dict] = []
        self.media_in = bytearray()
        #: (monotonic arrival time, cumulative bytes received) per outbound media frame.
        self.media_times: list[tuple[float, int]] = []
        self.marks_echoed: list[str] = []
        self.clears = 0
        self.cleared_marks: list[str] = []
        self.playback = Playback()
        self.closed = asyncio.Event()
        self._reader: asyncio.Task | None = None
        self._player: asyncio.Task | None = None
        self.ack_marks = True

    # -- sending -------------------------------------------------------------------------------

    async def send(self, frame: dict) -> None:
        await self._send_text(json.dumps(frame))

    def _next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def connected(self):
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    async def start(self, parameters: dict[str, str], call_sid: str | None = None):
        if call_sid is not None:
            self.call_sid = call_sid
        await self.send(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        self._reader = asyncio.ensure_future(self._read())
        self._player = asyncio.ensure_future(self._play())

    async def media(self, payload: bytes):
        self.chunk += 1
        await self.send(
            {
                "event": "media",
                "sequenceNumber": self._next_seq(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self.chunk),
                    "timestamp": str(self.timestamp),
                    "payload": base64.b64encode(payload).decode(),
                },
                "streamSid": self.stream_sid,
            }
        )
        self.timestamp += len(payload) // 8

    async def stream_audio(self, audio: bytes, *, realtime: bool = True):
        """Send ``audio`` as 20 ms frames, paced on a real-time grid when ``realtime``."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        for index, start in enumerate(range(0, len(audio), FRAME_BYTES)):
            await self.media(audio[start : start + FRAME_BYTES])
            if realtime:
                delay = began + (index + 1) * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def dtmf(self, digit: str):
        await self.send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def stop(self):
        await self.send(
            {
                "event": "stop",
                "sequenceNumber": self._next_seq(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )

    async def aclose(self):
        for task in (self._reader, self._player):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._reader, self._player) if t), return_exceptions=True
        )

    # -- receiving and playback ------------------------------------------------------------------

    async def _read(self):
        while True:
            text = await self._receive_text(3600)
            if text is None:
                self.closed.set()
                return
            frame = json.loads(text)
            self.received.append(frame)
            event = frame.get("event")
            if event == "media":
                data = base64.b64decode(frame["media"]["payload"])
                self.media_in += data
                self.media_times.append((asyncio.get_running_loop().time(), len(self.media_in)))
                self._enqueue(("audio", len(data)))
            elif event == "mark":
                self._enqueue(("mark", frame["mark"]["name"]))
            elif event == "clear":
                await self._clear()

    def _enqueue(self, item):
        loop = asyncio.get_running_loop()
        if self.playback.clock_start is None or not self.playback.queue:
            # Playback (re)starts now when the queue was empty.
            self.playback.clock_start = loop.time()
            self.playback.consumed_s = 0.0
        self.playback.queue.append(item)

    async def _play(self):
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.005)
            pb = self.playback
            while pb.queue:
                kind, value = pb.queue[0]
                if kind == "mark":
                    pb.queue.popleft()
                    pb.acked_bytes = pb.played_bytes
                    self.marks_echoed.append(value)
                    if self.ack_marks:
                        await self._echo_mark(value)
                    continue
                duration = value / 8000
                if loop.time() - pb.clock_start < pb.consumed_s + duration:
                    break
                pb.consumed_s += duration
                pb.played_bytes += value
                pb.queue.popleft()

    async def _clear(self):
        self.clears += 1
        pending = [value for kind, value in self.playback.queue if kind == "mark"]
        self.playback.queue.clear()
        self.cleared_marks.extend(pending)
        for name in pending:
            await self._echo_mark(name)

    async def _echo_mark(self, name: str):
        await self.send(
            {
                "event": "mark",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def events(self, kind: str) -> list[dict]:
        return [f for f in self.received if f.get("event") == kind]
