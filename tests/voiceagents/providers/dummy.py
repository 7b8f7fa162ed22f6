"""A voice provider defined in test code only, with its loopback fake.

``DummyVoiceProvider`` speaks a made-up vendor protocol (JSON over a WebSocket, its own turn ids,
no truncation) to ``FakeDummyVendor``. It runs the provider contract (``test_dummy_contract``)
and drives a ``CallSession`` where a provider with other capabilities than OpenAI's is needed.
"""

from __future__ import annotations

import asyncio
import base64
import json

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.http11 import Response

from voiceagents.audio.formats import PCM16_16K
from voiceagents.exceptions import ProviderConnectionError
from voiceagents.providers.base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    CallerSpeechStarted,
    CallerTranscript,
    ProviderCapabilities,
    ProviderConfig,
    VoiceProvider,
)
from voiceagents.transport.websocket import connect


class DummyVoiceProvider(VoiceProvider):
    id = "dummy_voice"
    name = "Dummy Voice"
    capabilities = ProviderCapabilities(server_turn_detection=True, truncation=False)

    def __init__(self, config: ProviderConfig):
        super().__init__(config)
        self._ws = None

    async def open(self) -> None:
        self.input_format = self.output_format = PCM16_16K
        try:
            self._ws = await connect(
                self.config.base_url, headers={"X-Key": self.config.api_key}, open_timeout=5
            )
        except (OSError, InvalidHandshake, TimeoutError) as err:
            raise ProviderConnectionError("Dummy Voice refused", vendor=self.id) from err

    async def _send(self, **message) -> None:
        await self._ws.send(json.dumps(message))

    async def send_audio(self, payload_b64: str) -> None:
        await self._send(type="audio", audio=payload_b64)

    async def say(self, text: str) -> None:
        await self._send(type="say", text=text)

    async def interrupt(self, heard_ms: int) -> None:
        await self._send(type="stop", heard_ms=heard_ms)

    async def send_dtmf(self, digit: str) -> None:
        await self._send(type="say", text=f"key {digit}")

    async def events(self):
        try:
            async for text in self._ws:
                message = json.loads(text)
                if message["type"] == "audio":
                    yield AgentAudio(message["turn"], message["audio"], raw=message)
                elif message["type"] == "done":
                    yield AgentTurnFinished(message["turn"], message["stopped"], raw=message)
                elif message["type"] == "text":
                    yield AgentTranscript(message["turn"], message["text"], raw=message)
                elif message["type"] == "caller_started":
                    yield CallerSpeechStarted(message["turn"], raw=message)
                elif message["type"] == "caller_text":
                    yield CallerTranscript(message["turn"], message["text"], raw=message)
        except ConnectionClosed as err:
            if self._ws is not None:
                raise ProviderConnectionError("Dummy Voice dropped", vendor=self.id) from err

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()


class FakeDummyVendor:
    """The dummy vendor: speaks the scripted replies on ``say``, stops a turn on ``stop``."""

    KEY = "dummy-key"

    def __init__(self):
        self.replies: list[list[bytes]] = []
        self.audio_in = bytearray()
        self.said: list[str] = []
        #: ``heard_ms`` of every ``stop`` received.
        self.stops: list[int] = []
        self.connections: list = []
        self._turns = 0
        self._speaking: str | None = None

    async def __aenter__(self):
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._authorize)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        await self._server.wait_closed()

    def _authorize(self, connection, request):
        if request.headers.get("X-Key") != self.KEY:
            return Response(401, "Unauthorized", Headers(), b"bad key")
        return None

    async def _handle(self, connection):
        self.connections.append(connection)
        try:
            async for text in connection:
                self._receive(connection, json.loads(text))
        except ConnectionClosed:
            pass  # a test dropped it, or the client went away

    def _receive(self, connection, message: dict) -> None:
        if message["type"] == "audio":
            self.audio_in += base64.b64decode(message["audio"])
        elif message["type"] == "say":
            self.said.append(message["text"])
            asyncio.ensure_future(self._speak(connection, message["text"]))
        elif message["type"] == "stop":
            self.stops.append(message["heard_ms"])
            self._speaking = None

    def speak(self, text: str = "") -> None:
        """The agent starts a turn on the newest connection (the next scripted reply), in real
        time: this returns at once."""
        asyncio.ensure_future(self._speak(self.connections[-1], text))

    async def caller_says(self, text: str) -> None:
        """The vendor heard the caller start talking, then what they said (its own turn id)."""
        self._turns += 1
        turn = f"c{self._turns}"
        connection = self.connections[-1]
        await connection.send(json.dumps({"type": "caller_started", "turn": turn}))
        await connection.send(json.dumps({"type": "caller_text", "turn": turn, "text": text}))

    async def _speak(self, connection, text: str = ""):
        self._turns += 1
        turn = self._speaking = f"t{self._turns}"
        try:
            for chunk in self.replies.pop(0) if self.replies else [b"\0\0" * 320]:
                if self._speaking != turn:
                    break
                audio = base64.b64encode(chunk).decode()
                await connection.send(json.dumps({"type": "audio", "turn": turn, "audio": audio}))
                await asyncio.sleep(0.02)
            stopped = self._speaking != turn
            if text:
                await connection.send(json.dumps({"type": "text", "turn": turn, "text": text}))
            await connection.send(json.dumps({"type": "done", "turn": turn, "stopped": stopped}))
        except ConnectionClosed:
            pass  # the call ended while the agent spoke


class DummyHarness:
    def __init__(self, fake: FakeDummyVendor):
        self.fake = fake

    def make(self, *, valid_key: bool = True) -> DummyVoiceProvider:
        return DummyVoiceProvider(dummy_config(self.fake.url, valid_key=valid_key))

    def script_reply(self, audio: bytes, *, chunks: int) -> None:
        size = -(-len(audio) // chunks)
        self.fake.replies.append([audio[i : i + size] for i in range(0, len(audio), size)])

    def caller_audio(self) -> bytes:
        return bytes(self.fake.audio_in)

    def heard(self) -> list[int]:
        return self.fake.stops

    def said(self) -> list[str]:
        return self.fake.said

    async def drop(self) -> None:
        await self.fake.connections[-1].close(1011, "gone")


def dummy_config(url: str, *, valid_key: bool = True, call_id: str = "call-1") -> ProviderConfig:
    return ProviderConfig(
        call_id=call_id,
        api_key=FakeDummyVendor.KEY if valid_key else "wrong",
        base_url=url,
        model="",
        voice="",
        instructions="",
        language="en",
        options={},
        carrier_format=PCM16_16K,
    )
