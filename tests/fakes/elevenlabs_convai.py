"""A loopback fake of the ElevenLabs Conversational AI socket (docs/providers/elevenlabs_convai.md).

A real WebSocket server on 127.0.0.1, port 0. Pointed at by ``FakeElevenLabsAPI``'s signed URLs
(pass the API fake in and its ``conversation_url`` is set), it checks the signature, then plays
an ElevenLabs agent: it waits for ``conversation_initiation_client_data``, closes with 1008 if an
override is not allowed, answers ``conversation_initiation_metadata`` with the formats of the
agent stored in the API fake (``pcm_16000`` both ways when none are set, as ElevenLabs does), and
speaks scripted replies as ``agent_response`` + ``audio`` chunks (one ``event_id`` per utterance)
+ ``agent_response_complete``. The test drives the rest: the caller speaking (``interruption``
while audio is still "playing", ``user_transcript``, the next reply), corrections, tool calls,
pings, closes. Everything received is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

#: The overrides an agent synced by django-voiceagents allows (docs: "what we set").
ALLOWED_OVERRIDES = frozenset(
    {
        "agent.prompt.prompt",
        "agent.first_message",
        "agent.language",
        "tts.voice_id",
        "tts.model_id",
    }
)
#: Bytes per second of the formats the fake speaks (to know how long a reply "plays").
_BYTES_PER_SECOND = {"ulaw_8000": 8000, "pcm_8000": 16000, "pcm_16000": 32000, "pcm_24000": 48000}


@dataclass
class ScriptedReply:
    """One agent utterance: audio bytes in the agent's output format, and its text."""

    audio: bytes
    text: str = ""
    #: Bytes per ``audio`` message.
    chunk: int = 1600
    #: Pause between audio messages (0: all at once, faster than real time, as ElevenLabs does).
    interval: float = 0.0


@dataclass
class Conversation:
    connection: ServerConnection
    path: str
    agent_id: str
    conversation_id: str
    received: list[dict] = field(default_factory=list)
    audio_in: bytearray = field(default_factory=bytearray)
    init: dict = field(default_factory=dict)
    input_format: str = ""
    output_format: str = ""
    #: The utterance being sent and when its audio would have finished playing (monotonic s).
    speaking: int | None = None
    playing_until: float = 0.0
    task: asyncio.Task | None = None
    #: ping event_id → (sent at, pong received at or None).
    pings: dict[int, list] = field(default_factory=dict)
    #: The agent's ``conversation.client_events``: only these are sent (None: all of them).
    client_events: frozenset[str] | None = None


def _overrides(tree: dict, prefix: str = "") -> set[str]:
    """Dotted paths of the leaves of a conversation_config_override."""
    paths = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths |= _overrides(value, path + ".")
        else:
            paths.add(path)
    return paths


class FakeElevenLabsConvAI:
    """``async with FakeElevenLabsConvAI(api) as fake:``; ``fake.url`` is the socket URL."""

    def __init__(
        self,
        api=None,
        *,
        allowed_overrides: frozenset[str] = ALLOWED_OVERRIDES,
        formats: tuple[str, str] | None = None,
    ):
        #: The REST fake whose signed URLs lead here (signatures checked, agents' formats read).
        self.api = api
        self.allowed_overrides = allowed_overrides
        #: (input, output) formats to announce regardless of the agent's configuration.
        self.formats = formats
        self.replies: list[ScriptedReply] = []
        self.conversations: list[Conversation] = []
        self._event_ids = 0
        self._server = None
        self.url = ""
        self.connected = asyncio.Event()

    async def __aenter__(self) -> FakeElevenLabsConvAI:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_request
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/convai/conversation"
        if self.api is not None:
            self.api.conversation_url = self.url
        return self

    async def __aexit__(self, *exc) -> None:
        for conversation in self.conversations:
            if conversation.task is not None:
                conversation.task.cancel()
        self._server.close()
        await self._server.wait_closed()

    # -- the test's view ----------------------------------------------------------------------

    @property
    def conversation(self) -> Conversation:
        return self.conversations[-1]

    def of_type(self, kind: str) -> list[dict]:
        return [m for c in self.conversations for m in c.received if m.get("type") == kind]

    async def wait_for(self, predicate, timeout: float = 5.0):
        async with asyncio.timeout(timeout):
            while not (result := predicate()):
                await asyncio.sleep(0.005)
        return result

    async def send(self, message: dict) -> None:
        await _emit(self.conversation, message)

    async def user_speaks(self, text: str, *, reply: bool = True) -> None:
        """The caller says ``text``: an ``interruption`` if the agent is still audible, the
        transcript, then the next scripted reply."""
        conversation = self.conversation
        await self._interrupt(conversation)
        await self.send(
            {"type": "user_transcript", "user_transcription_event": {"user_transcript": text}}
        )
        if reply:
            self._speak_next(conversation)

    async def correct(self, original: str, corrected: str) -> None:
        await self.send(
            {
                "type": "agent_response_correction",
                "agent_response_correction_event": {
                    "original_agent_response": original,
                    "corrected_agent_response": corrected,
                },
            }
        )

    async def tool_call(self, name: str, parameters: dict, tool_call_id: str = "toolu_01") -> None:
        await self.send(
            {
                "type": "client_tool_call",
                "client_tool_call": {
                    "tool_name": name,
                    "tool_call_id": tool_call_id,
                    "parameters": parameters,
                },
            }
        )

    def tool_results(self) -> list[dict]:
        return self.of_type("client_tool_result")

    async def ping(self, event_id: int, ping_ms: int | None = None) -> None:
        self.conversation.pings[event_id] = [time.monotonic(), None]
        await self.send({"type": "ping", "ping_event": {"event_id": event_id, "ping_ms": ping_ms}})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.conversation.connection.close(code, reason)

    async def drop(self) -> None:
        """Abort the TCP connection with no close frame."""
        self.conversation.connection.transport.abort()

    def caller_audio(self) -> bytes:
        return bytes(self.conversation.audio_in) if self.conversations else b""

    # -- the server ----------------------------------------------------------------------------

    def _check_request(self, connection, request):
        query = parse_qs(urlsplit(request.path).query)
        agent_id = (query.get("agent_id") or [""])[0]
        if not agent_id:
            return Response(400, "Bad Request", _headers(), b'{"detail": "agent_id is required"}')
        if self.api is not None:
            signature = (query.get("conversation_signature") or [""])[0]
            if signature not in self.api.signatures:
                return Response(403, "Forbidden", _headers(), b'{"detail": "bad signature"}')
        return None

    def _config_of(self, agent_id: str) -> dict:
        if self.api is not None and agent_id in self.api.agents:
            return self.api.agent(agent_id).get("conversation_config") or {}
        return {}

    def _formats_of(self, agent_id: str) -> tuple[str, str]:
        if self.formats is not None:
            return self.formats
        config = self._config_of(agent_id)
        return (
            (config.get("asr") or {}).get("user_input_audio_format") or "pcm_16000",
            (config.get("tts") or {}).get("agent_output_audio_format") or "pcm_16000",
        )

    async def _handle(self, connection: ServerConnection) -> None:
        path = connection.request.path
        agent_id = parse_qs(urlsplit(path).query)["agent_id"][0]
        conversation = Conversation(
            connection, path, agent_id, f"conv_{len(self.conversations) + 1:04d}"
        )
        events = (self._config_of(agent_id).get("conversation") or {}).get("client_events")
        if events is not None:
            conversation.client_events = frozenset(events)
        self.conversations.append(conversation)
        self.connected.set()
        try:
            async for raw in connection:
                message = json.loads(raw)
                conversation.received.append(message)
                await self._on_message(conversation, message)
        except ConnectionClosed:
            pass

    async def _on_message(self, conversation: Conversation, message: dict) -> None:
        if "user_audio_chunk" in message:
            conversation.audio_in += base64.b64decode(message["user_audio_chunk"])
            return
        kind = message.get("type")
        if kind == "conversation_initiation_client_data":
            await self._start(conversation, message)
        elif kind == "pong":
            ping = conversation.pings.get(message.get("event_id"))
            if ping is not None and ping[1] is None:
                ping[1] = time.monotonic()
        elif kind == "user_message":
            await self._interrupt(conversation)
            self._speak_next(conversation)

    async def _start(self, conversation: Conversation, message: dict) -> None:
        conversation.init = message
        refused = _overrides(message.get("conversation_config_override") or {}) - set(
            self.allowed_overrides
        )
        if refused:
            await conversation.connection.close(
                1008, f"Override for field '{sorted(refused)[0]}' is not allowed by config."
            )
            return
        conversation.input_format, conversation.output_format = self._formats_of(
            conversation.agent_id
        )
        await conversation.connection.send(
            json.dumps(
                {
                    "type": "conversation_initiation_metadata",
                    "conversation_initiation_metadata_event": {
                        "conversation_id": conversation.conversation_id,
                        "agent_output_audio_format": conversation.output_format,
                        "user_input_audio_format": conversation.input_format,
                    },
                }
            )
        )
        agent = (message.get("conversation_config_override") or {}).get("agent") or {}
        if agent.get("first_message"):
            self._speak_next(conversation)

    def _speak_next(self, conversation: Conversation) -> None:
        if not self.replies:
            return
        reply = self.replies.pop(0)
        self._event_ids += 1
        conversation.task = asyncio.ensure_future(self._speak(conversation, reply, self._event_ids))

    async def _speak(self, conversation: Conversation, reply: ScriptedReply, event_id: int):
        async def send(text: str) -> None:
            await _emit(conversation, json.loads(text))

        conversation.speaking = event_id
        rate = _BYTES_PER_SECOND.get(conversation.output_format, 8000)
        conversation.playing_until = time.monotonic() + len(reply.audio) / rate
        try:
            await send(
                json.dumps(
                    {
                        "type": "agent_response",
                        "agent_response_event": {"agent_response": reply.text},
                    }
                )
            )
            for start in range(0, len(reply.audio), reply.chunk):
                piece = reply.audio[start : start + reply.chunk]
                await send(
                    json.dumps(
                        {
                            "type": "audio",
                            "audio_event": {
                                "audio_base_64": base64.b64encode(piece).decode("ascii"),
                                "event_id": event_id,
                            },
                        }
                    )
                )
                if reply.interval:
                    await asyncio.sleep(reply.interval)
            await send(json.dumps({"type": "agent_response_complete"}))
        except ConnectionClosed:
            pass

    async def _interrupt(self, conversation: Conversation) -> None:
        """Stop the utterance in progress, and say so if the caller could still hear it."""
        task, conversation.task = conversation.task, None
        if task is not None and not task.done():
            task.cancel()
        if conversation.speaking is not None and time.monotonic() < conversation.playing_until:
            await _emit(
                conversation,
                {"type": "interruption", "interruption_event": {"event_id": conversation.speaking}},
            )
        conversation.speaking = None


async def _emit(conversation: Conversation, message: dict) -> None:
    """Send a server event, unless the agent's ``client_events`` leave it out (as ElevenLabs
    does: an event missing from that list never reaches the client)."""
    allowed = conversation.client_events
    if allowed is not None and message.get("type") not in allowed:
        return
    await conversation.connection.send(json.dumps(message))


def _headers():
    from websockets.datastructures import Headers

    return Headers([("Content-Type", "application/json")])
