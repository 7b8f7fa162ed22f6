"""A loopback fake of the OpenAI Realtime API (GA protocol, docs/providers/openai_realtime.md), scripted per test.

It is a real WebSocket server on 127.0.0.1, port 0: the provider under test connects to it through
its ``OPENAI_REALTIME_URL`` setting exactly as it would to OpenAI. The fake records what it receives
(events, appended audio, headers) and answers like the real service: ``session.created`` first,
``session.updated`` merging updates, responses streamed faster than real time as
``response.output_audio.delta`` events, ``conversation.item.truncated`` for truncations and
``response.done`` with ``cancelled`` for ``response.cancel``.

With ``vad=ServerVAD(...)`` it also detects speech in the audio it receives, as server VAD does:
``speech_started`` (cancelling the active response when ``interrupt_response``), ``speech_stopped``
after a pause, ``committed``, the caller's transcript (empty for a sound too short to hold words,
the way a transcription model returns nothing for a cough) and, with ``create_response``, a reply.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

#: Model names the service no longer serves (the seed's default among them): refused at connect.
RETIRED_MODELS = frozenset(
    {
        "gpt-4o-mini-realtime-preview",
        "gpt-4o-realtime-preview",
        "gpt-4o-realtime-preview-2024-10-01",
    }
)
#: The GA Realtime voices; ``fable``, ``onyx`` and ``nova`` are TTS-endpoint voices and refused.
REALTIME_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)


@dataclass
class ScriptedResponse:
    """What the fake says for one ``response.create``: audio bytes (in the session's output format)."""

    audio: bytes
    transcript: str
    #: Bytes per ``response.output_audio.delta`` (OpenAI sends variable sizes; 100 ms of μ-law here).
    chunk: int = 800
    #: Pause between deltas; 0 streams the whole response at once, as OpenAI does (faster than real time).
    interval: float = 0.0
    #: ``response.done``'s token counts: (input text, input audio, cached input audio, output text,
    #: output audio), as OpenAI splits them.
    tokens: tuple[int, int, int, int, int] = (120, 60, 20, 15, 50)
    #: Seconds from ``response.created`` to the first delta (the model's latency).
    delay: float = 0.0


def _usage(tokens: tuple[int, int, int, int, int]) -> dict:
    text_in, audio_in, cached_audio, text_out, audio_out = tokens
    return {
        "total_tokens": text_in + audio_in + text_out + audio_out,
        "input_tokens": text_in + audio_in,
        "output_tokens": text_out + audio_out,
        "input_token_details": {
            "text_tokens": text_in,
            "audio_tokens": audio_in,
            "image_tokens": 0,
            "cached_tokens": cached_audio,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": cached_audio},
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


@dataclass
class ServerVAD:
    """The fake's energy voice detector (``FakeOpenAIRealtime(vad=...)``): a 20 ms frame is
    speech when its RMS reaches ``threshold`` (int16 scale)."""

    threshold: float = 600.0
    #: Silence that ends the speech (OpenAI's ``silence_duration_ms``).
    silence_ms: int = 200
    #: Speech shorter than this transcribes to nothing (a noise); longer speech to ``words``.
    min_words_ms: int = 300
    words: str = "Excuse me, I have a question."


@dataclass
class FakeSession:
    connection: ServerConnection
    headers: Headers
    path: str
    #: (loop time just after sending, response id, bytes of its audio sent so far) per delta:
    #: when each part of an answer left the provider, for latency measurements.
    audio_sent: list[tuple[float, str, int]] = field(default_factory=list)
    received: list[dict] = field(default_factory=list)
    #: Every event the fake sent to the client, in order.
    sent: list[dict] = field(default_factory=list)
    audio_in: bytearray = field(default_factory=bytearray)
    config: dict = field(default_factory=dict)
    active_response: str | None = None
    response_tasks: list[asyncio.Task] = field(default_factory=list)
    # Server VAD state: samples analysed, the frame being filled, speech start and silence.
    vad_samples: int = 0
    vad_pending: bytearray = field(default_factory=bytearray)
    vad_speech_at: int | None = None
    vad_silence: int = 0
    vad_item: str = ""
    #: (start ms, end ms, transcript) of each speech the VAD found.
    vad_turns: list[tuple[int, int, str]] = field(default_factory=list)


class FakeOpenAIRealtime:
    """Use as ``async with FakeOpenAIRealtime() as fake:`` and point ``OPENAI_REALTIME_URL`` at ``fake.url``."""

    def __init__(
        self,
        api_key: str = "sk-test-openai",
        responses: list[ScriptedResponse] | None = None,
        created_delay: float = 0.0,
        vad: ServerVAD | None = None,
    ):
        self.api_key = api_key
        #: Seconds before ``session.created``: simulates a slow provider handshake.
        self.created_delay = created_delay
        #: Detect speech in the received audio (off: tests drive speech events themselves).
        self.vad = vad
        self.responses: list[ScriptedResponse] = list(responses or [])
        self.sessions: list[FakeSession] = []
        self.connection_attempts = 0
        self._ids = itertools.count(1)
        self._server = None
        self.session_ready = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self):
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._authorize)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"
        return self

    async def __aexit__(self, *exc):
        for session in self.sessions:
            for task in session.response_tasks:
                task.cancel()
        self._server.close()
        await self._server.wait_closed()

    @property
    def session(self) -> FakeSession:
        return self.sessions[-1]

    def events_of(self, event_type: str) -> list[dict]:
        return [e for s in self.sessions for e in s.received if e.get("type") == event_type]

    async def wait_for(self, predicate, timeout: float = 5.0):
        """Wait until ``predicate()`` is truthy (polling the recorded state); return its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"fake OpenAI: condition not met within {timeout}s")
            await asyncio.sleep(0.005)

    # -- server side -------------------------------------------------------------------------

    def _authorize(self, connection, request):
        self.connection_attempts += 1
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return Response(
                401, "Unauthorized", Headers(), b'{"error": {"message": "Incorrect API key"}}'
            )
        return None

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    async def _handle(self, connection: ServerConnection):
        session = FakeSession(connection, connection.request.headers, connection.request.path)
        self.sessions.append(session)
        if connection.request.headers.get("OpenAI-Beta"):
            await self.send(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "beta_api_shape_disabled",
                        "message": "The beta API shape is disabled.",
                    },
                },
                session,
            )
            await connection.close(4000, "invalid_request_error.beta_api_shape_disabled")
            return
        model = parse_qs(urlsplit(connection.request.path).query).get("model", [""])[0]
        if model in RETIRED_MODELS:
            await self.send(
                _invalid_request("model_not_found", f"The model `{model}` does not exist."), session
            )
            await connection.close(4000, "invalid_request_error.model_not_found")
            return
        if self.created_delay:
            await asyncio.sleep(self.created_delay)
        await self.send(
            {
                "type": "session.created",
                "session": {"type": "realtime", "id": self._next_id("sess")},
            },
            session,
        )
        try:
            async for message in connection:
                event = json.loads(message)
                session.received.append(event)
                await self._on_event(session, event)
        except Exception:  # noqa: BLE001 - a fake stops quietly when the client goes away
            pass

    async def send(self, event: dict, session: FakeSession | None = None):
        session = session or self.session
        event.setdefault("event_id", self._next_id("event"))
        await session.connection.send(json.dumps(event))
        session.sent.append(event)

    async def _on_event(self, session: FakeSession, event: dict):
        kind = event.get("type")
        if kind == "session.update":
            voice = ((event.get("session") or {}).get("audio") or {}).get("output", {}).get("voice")
            if isinstance(voice, str) and voice not in REALTIME_VOICES:
                await self.send(
                    _invalid_request(
                        "invalid_value",
                        f"Invalid value: '{voice}'.",
                        param="session.audio.output.voice",
                    ),
                    session,
                )
                return
            _merge(session.config, event.get("session", {}))
            await self.send({"type": "session.updated", "session": session.config}, session)
            self.session_ready.set()
        elif kind == "input_audio_buffer.append":
            audio = base64.b64decode(event["audio"])
            session.audio_in += audio
            if self.vad is not None:
                await self._detect(session, audio)
        elif kind == "response.create":
            task = asyncio.ensure_future(self._respond(session, event))
            session.response_tasks.append(task)
        elif kind == "response.cancel":
            await self._cancel(session, "client_cancelled")
        elif kind == "conversation.item.truncate":
            await self.send(
                {
                    "type": "conversation.item.truncated",
                    "item_id": event["item_id"],
                    "content_index": 0,
                    "audio_end_ms": event["audio_end_ms"],
                },
                session,
            )

    # -- server VAD ----------------------------------------------------------------------------

    def _input(self, session: FakeSession) -> tuple[str, int]:
        """The session's input audio: ("pcmu", 8000) or ("pcm", 24000)."""
        fmt = ((session.config.get("audio") or {}).get("input") or {}).get("format") or {}
        if fmt.get("type") == "audio/pcmu":
            return "pcmu", 8000
        return "pcm", int(fmt.get("rate") or 24000)

    async def _detect(self, session: FakeSession, audio: bytes):
        encoding, rate = self._input(session)
        width = 1 if encoding == "pcmu" else 2
        frame = rate // 50 * width
        session.vad_pending += audio
        while len(session.vad_pending) >= frame:
            chunk = bytes(session.vad_pending[:frame])
            del session.vad_pending[:frame]
            if encoding == "pcmu":
                samples = [_ulaw(b) for b in chunk]
            else:
                samples = [
                    int.from_bytes(chunk[i : i + 2], "little", signed=True)
                    for i in range(0, len(chunk), 2)
                ]
            rms = math.sqrt(sum(v * v for v in samples) / len(samples))
            at_ms = session.vad_samples * 1000 // rate
            session.vad_samples += len(samples)
            await self._vad_frame(session, rms >= self.vad.threshold, at_ms)

    async def _vad_frame(self, session: FakeSession, speech: bool, at_ms: int):
        detection = ((session.config.get("audio") or {}).get("input") or {}).get(
            "turn_detection"
        ) or {}
        if session.vad_speech_at is None:
            if not speech:
                return
            session.vad_speech_at, session.vad_silence = at_ms, 0
            session.vad_item = self._next_id("item")
            await self.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": at_ms,
                    "item_id": session.vad_item,
                },
                session,
            )
            if detection.get("interrupt_response", True) and session.active_response:
                await self._cancel(session, "turn_detected")
            return
        if speech:
            session.vad_silence = 0
            return
        session.vad_silence += 20
        if session.vad_silence < self.vad.silence_ms:
            return
        start, end = session.vad_speech_at, at_ms + 20 - session.vad_silence
        session.vad_speech_at = None
        item = session.vad_item
        text = self.vad.words if end - start >= self.vad.min_words_ms else ""
        session.vad_turns.append((start, end, text))
        await self.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end, "item_id": item},
            session,
        )
        await self.send(
            {"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None},
            session,
        )
        if detection.get("create_response", True):
            # The server answers the committed turn at once; its transcript comes after.
            started = asyncio.Event()
            session.response_tasks.append(
                asyncio.ensure_future(self._respond(session, {}, started))
            )
            await started.wait()
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "content_index": 0,
                "transcript": text,
            },
            session,
        )

    async def _respond(
        self, session: FakeSession, request: dict, started: asyncio.Event | None = None
    ):
        if self.responses:
            script = self.responses.pop(0)
        else:
            text = (request.get("response") or {}).get("instructions", "") or "OK."
            script = ScriptedResponse(audio=b"\x7f" * 1600, transcript=text)
        response_id, item_id = self._next_id("resp"), self._next_id("item")
        session.active_response = response_id
        ids = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
        }
        await self.send(
            {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}},
            session,
        )
        await self.send(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": 0,
                "item": {
                    "id": item_id,
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                },
            },
            session,
        )
        if started is not None:
            started.set()
        if script.delay:
            await asyncio.sleep(script.delay)
        for start in range(0, len(script.audio), script.chunk):
            if session.active_response != response_id:
                return
            chunk = script.audio[start : start + script.chunk]
            await self.send(
                {
                    "type": "response.output_audio.delta",
                    **ids,
                    "delta": base64.b64encode(chunk).decode(),
                },
                session,
            )
            loop = asyncio.get_running_loop()
            session.audio_sent.append((loop.time(), response_id, start + len(chunk)))
            if script.interval:
                await asyncio.sleep(script.interval)
        if session.active_response != response_id:
            return
        await self.send(
            {"type": "response.output_audio_transcript.delta", **ids, "delta": script.transcript},
            session,
        )
        await self.send({"type": "response.output_audio.done", **ids}, session)
        await self.send(
            {
                "type": "response.output_audio_transcript.done",
                **ids,
                "transcript": script.transcript,
            },
            session,
        )
        await self.send(
            {
                "type": "response.output_item.done",
                "response_id": response_id,
                "output_index": 0,
                "item": {
                    "id": item_id,
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                },
            },
            session,
        )
        session.active_response = None
        await self.send(
            {
                "type": "response.done",
                "response": {
                    "id": response_id,
                    "status": "completed",
                    "status_details": None,
                    "output": [
                        {
                            "type": "message",
                            "id": item_id,
                            "role": "assistant",
                            "content": [{"type": "output_audio", "transcript": script.transcript}],
                        }
                    ],
                    "usage": _usage(script.tokens),
                },
            },
            session,
        )

    async def _cancel(self, session: FakeSession, reason: str):
        response_id = session.active_response
        if response_id is None:
            await self.send(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "response_cancel_not_active",
                        "message": "Cancellation failed: no active response found.",
                    },
                },
                session,
            )
            return
        session.active_response = None
        await self.send(
            {
                "type": "response.done",
                "response": {
                    "id": response_id,
                    "status": "cancelled",
                    "status_details": {"reason": reason},
                },
            },
            session,
        )

    # -- test controls -----------------------------------------------------------------------

    async def speech_started(self, audio_start_ms: int = 0, interrupt_response: bool = True) -> str:
        """The caller starts talking. Like server VAD with interrupt_response, cancel the active response."""
        item_id = self._next_id("item")
        await self.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": item_id,
            }
        )
        if interrupt_response and self.session.active_response:
            await self._cancel(self.session, "turn_detected")
        return item_id

    async def speech_stopped(self, item_id: str, audio_end_ms: int = 0):
        await self.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": audio_end_ms,
                "item_id": item_id,
            }
        )
        await self.send(
            {"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None}
        )

    async def caller_transcript(self, item_id: str, text: str, *, usage: dict | None = None):
        event = {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": text,
        }
        if usage is not None:
            event["usage"] = usage
        await self.send(event)

    async def respond(self, script: ScriptedResponse, session: FakeSession | None = None):
        """Start a response on the server's own initiative (as server VAD does after a turn)."""
        session = session or self.session
        session.response_tasks.append(asyncio.ensure_future(self._respond_with(session, script)))

    async def _respond_with(self, session, script):
        self.responses.insert(0, script)
        await self._respond(session, {})

    async def function_call(
        self, name: str, arguments: dict | str, call_id: str | None = None
    ) -> str:
        """The model calls a function (docs/providers/openai_realtime.md#events-we-read): a
        response whose one output item is a ``function_call``, its arguments streamed, then
        ``response.done`` with that item. Returns the ``call_id``; the client answers with a
        ``function_call_output`` item (see ``function_outputs``) and ``response.create``."""
        session = self.session
        call_id = call_id or self._next_id("call")
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        response_id, item_id = self._next_id("resp"), self._next_id("item")
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "name": name,
            "call_id": call_id,
            "arguments": "",
        }
        ids = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        await self.send(
            {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}},
            session,
        )
        await self.send(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": 0,
                "item": item,
            },
            session,
        )
        await self.send(
            {
                "type": "response.function_call_arguments.delta",
                **ids,
                "call_id": call_id,
                "delta": text,
            },
            session,
        )
        await self.send(
            {
                "type": "response.function_call_arguments.done",
                **ids,
                "call_id": call_id,
                "name": name,
                "arguments": text,
            },
            session,
        )
        done_item = {**item, "status": "completed", "arguments": text}
        await self.send(
            {
                "type": "response.output_item.done",
                "response_id": response_id,
                "output_index": 0,
                "item": done_item,
            },
            session,
        )
        await self.send(
            {
                "type": "response.done",
                "response": {
                    "id": response_id,
                    "status": "completed",
                    "status_details": None,
                    "output": [done_item],
                    "usage": {"total_tokens": 10, "input_tokens": 5, "output_tokens": 5},
                },
            },
            session,
        )
        return call_id

    def function_outputs(self) -> list[dict]:
        """The ``function_call_output`` items the client created, in every session."""
        return [
            e["item"]
            for e in self.events_of("conversation.item.create")
            if (e.get("item") or {}).get("type") == "function_call_output"
        ]

    async def error(
        self, message: str, code: str = "server_error", error_type: str = "server_error"
    ):
        await self.send(
            {"type": "error", "error": {"type": error_type, "code": code, "message": message}}
        )

    async def drop(self, code: int = 1011, reason: str = "internal error"):
        await self.session.connection.close(code, reason)

    async def drop_and_wait_reconnect(self, timeout: float = 5.0) -> FakeSession:
        """Drop the current session abnormally; return the one the client opens instead."""
        count = len(self.sessions)
        await self.drop(1011, "internal error")
        await self.wait_for(lambda: len(self.sessions) > count and self.session.config, timeout)
        return self.session

    def conversation_items(self, session: FakeSession) -> list[tuple[str, str]]:
        """(role, text) of the messages the client put into ``session``'s conversation."""
        items = []
        for event in session.received:
            item = event.get("item") or {}
            if event.get("type") == "conversation.item.create" and item.get("type") == "message":
                items.append((item["role"], " ".join(c.get("text", "") for c in item["content"])))
        return items


def _ulaw(code: int) -> int:
    """One G.711 μ-law byte to its linear value (ITU-T G.711)."""
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return (0x84 - magnitude) if code & 0x80 else (magnitude - 0x84)


def _invalid_request(code: str, message: str, param: str | None = None) -> dict:
    return {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
        },
    }


def _merge(target: dict, update: dict):
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
