"""A fake ElevenLabs REST API for tests: the Agents (Conversational AI) endpoints and the voices list.

``FakeElevenLabsAPI`` is a real HTTP server on 127.0.0.1, port 0, in a thread (so sync Django code
and async call sessions can both reach it). It answers like ElevenLabs does
(docs/providers/elevenlabs_convai.md):

* every request needs ``xi-api-key``; a wrong or missing key is
  ``401 {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}``;
* ``POST /v1/convai/agents/create`` stores the agent and answers ``{"agent_id": "agent_<hex>"}``;
  an unknown ``tts.voice_id`` or an audio format that is not one of ElevenLabs' literals is
  refused with a FastAPI-style ``422 {"detail": [{"type", "loc", "msg", "input"}]}``;
* ``GET``/``PATCH``/``DELETE /v1/convai/agents/{id}``: ``PATCH`` deep-merges its body into the
  stored agent (and is validated like a create); unknown ids are
  ``404 {"detail": {"status": "agent_not_found", ...}}``;
* ``GET /v1/convai/conversation/get-signed-url?agent_id=`` answers
  ``{"signed_url": "<conversation_url>?agent_id=...&conversation_signature=..."}``, where
  ``conversation_url`` is set by the test (a fake conversation socket's URL); issued signatures
  are kept in ``signatures`` so that socket can check them;
* ``GET /v1/convai/conversations/{id}`` answers what the test put in ``conversations[id]``;
* ``GET /v1/voices`` lists the premade voices;
* ``GET /v1/user`` answers the account and its subscription (``user`` holds it), the request a
  key check makes;
* ``POST /v1/text-to-speech/{voice_id}/stream?output_format=`` streams speech: a chunked ``200``
  whose body is raw audio in the requested format (by default a 1 kHz tone whose length follows
  the text's, see ``tts_audio``), sent ``tts_chunk_size`` bytes at a time with ``tts_chunk_delay``
  seconds between chunks. An unknown voice id is
  ``404 {"detail": {"status": "voice_not_found", ...}}``; an ``output_format`` that is not one
  of ElevenLabs' literals, or a body without ``text``, is a FastAPI-style ``422``. ElevenLabs'
  compressed formats (``mp3_*``, the default, and ``opus_*``) are valid but the fake does not
  encode them: it refuses them with ``400 {"detail": {"status": "fake_format_not_supported"}}``.
  Each request is recorded in ``tts_requests`` with the bytes sent and whether the client went
  away before the end; ``tts_gate`` holds the stream after its first chunk until the test sets
  it, and ``tts_drop_after`` cuts the connection in the middle of the body.

The voice table below is written out here on purpose, not imported from
``voiceagents.providers.elevenlabs_voices``: a shared mistake would otherwise make both sides agree.
Every request is recorded in ``requests``; ``fail_next`` scripts a vendor error.
"""

from __future__ import annotations

import copy
import json
import math
import secrets
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.http_fake import ThreadedHTTPFake

API_KEY = "sk_test_elevenlabs_0123456789abcdef"

#: The premade voices ElevenLabs lists (name → voice_id), including the newer defaults.
VOICES = {
    "Rachel": "21m00Tcm4TlvDq8ikWAM",
    "Adam": "pNInz6obpgDQGcFmaJgB",
    "Antoni": "ErXwobaYiN019PkySvjV",
    "Bella": "EXAVITQu4vr4xnSDxMaL",
    "Domi": "AZnzlk1XvdvUeBnXmlld",
    "Elli": "MF3mGyEYCl7XYWbV9V6O",
    "Josh": "TxGEqnHWrfWFTfGW9XjX",
    "Arnold": "VR6AewLTigWG4xSOukaG",
    "Sam": "yoZ06aMxZJJ28mfd3POQ",
    "Clyde": "2EiwWnXFnvU5JabPnv8n",
    "Drew": "29vD33N1CtxCmqQRPOHJ",
    "Paul": "5Q0t7uMcjvnagumLfvZi",
    "Dave": "CYw3kZ02Hs0563khs1Fj",
    "Fin": "D38z5RcWu1voky8WS1ja",
    "Aria": "9BWtsMINqrJLrRacOk9x",
    "George": "JBFqnCBsd6RMkjVDRZzb",
    "Charlotte": "XB0fDUnXU5powFXDhCwa",
    "Laura": "FGY2WhTYpPnrIDTdsKH5",
    "Liam": "TX3LPaxmHKxFdv7VOQHJ",
    "Brian": "nPczCjzI2devNBz1zQrb",
    "Daniel": "onwK4e9ZLuTAKqWW03F9",
    "Lily": "pFZP5JQG7iQjIQuC4Bku",
}

#: The audio format literals of ``user_input_audio_format`` and ``agent_output_audio_format``.
AUDIO_FORMATS = (
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
)

#: Every ``output_format`` literal of the text-to-speech endpoints (the SDK's list).
TTS_OUTPUT_FORMATS = (
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
    "alaw_8000",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
)
#: ElevenLabs' default when ``output_format`` is not given.
TTS_DEFAULT_FORMAT = "mp3_44100_128"
#: The formats the fake can produce: raw µ-law at 8 kHz and 16-bit little-endian PCM.
TTS_RAW_FORMATS = ("ulaw_8000",) + tuple(f for f in TTS_OUTPUT_FORMATS if f.startswith("pcm_"))

DEFAULT_CONVERSATION_URL = "ws://127.0.0.1:9/v1/convai/conversation"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: object = None


@dataclass
class TtsRequest:
    """One ``POST /v1/text-to-speech/{voice_id}/stream`` as the fake saw and answered it."""

    voice_id: str
    query: dict[str, str]
    headers: dict[str, str]
    json: object
    #: The client's (host, port): equal ports mean a reused connection.
    client: tuple[str, int]
    status: int = 0
    #: The audio bytes written to the client so far, and the number of chunks (a chunk counts
    #: from just before it is written).
    sent: bytearray = field(default_factory=bytearray)
    chunks: int = 0
    #: The whole body went out (terminating chunk included).
    completed: bool = False
    #: The client closed the connection before the end of the body.
    disconnected: bool = False
    #: The fake cut the connection on purpose (``tts_drop_after``).
    dropped: bool = False
    #: Set when the fake stops answering this request, whatever the reason.
    done: threading.Event = field(default_factory=threading.Event, repr=False)


@dataclass
class _Script:
    status: int
    body: object = None  # None with status 0: drop the connection without answering


@dataclass
class _Agent:
    agent_id: str
    body: dict
    created: int = field(default_factory=lambda: int(time.time()))
    updated: int = field(default_factory=lambda: int(time.time()))

    def as_json(self) -> dict:
        return {
            "agent_id": self.agent_id,
            "name": self.body.get("name", ""),
            "conversation_config": self.body.get("conversation_config", {}),
            "platform_settings": self.body.get("platform_settings", {}),
            "metadata": {
                "created_at_unix_secs": self.created,
                "updated_at_unix_secs": self.updated,
            },
            "tags": self.body.get("tags", []),
        }


def deep_merge(base: dict, patch: dict) -> dict:
    """``patch`` merged into a copy of ``base``: objects merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validation_errors(body: dict) -> list[dict]:
    """FastAPI-style validation errors of an agent body (the parts the fake checks)."""
    errors = []
    config = body.get("conversation_config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        return [
            _error(
                ["conversation_config"], "dict_type", "Input should be a valid dictionary", config
            )
        ]
    checks = (
        (("asr", "user_input_audio_format"), AUDIO_FORMATS),
        (("tts", "agent_output_audio_format"), AUDIO_FORMATS),
    )
    for (section, key), allowed in checks:
        part = config.get(section) or {}
        if key in part and part[key] not in allowed:
            choices = ", ".join(f"'{value}'" for value in allowed)
            errors.append(
                _error(
                    ["conversation_config", section, key],
                    "literal_error",
                    f"Input should be {choices}",
                    part[key],
                )
            )
    voice_id = (config.get("tts") or {}).get("voice_id")
    if voice_id is not None and voice_id not in VOICES.values():
        errors.append(
            _error(
                ["conversation_config", "tts", "voice_id"],
                "value_error",
                f"Value error, A voice with the voice_id {voice_id} was not found.",
                voice_id,
            )
        )
    tools = ((config.get("agent") or {}).get("prompt") or {}).get("tools") or []
    for index, tool in enumerate(tools):
        if (
            not isinstance(tool, dict)
            or not tool.get("name")
            or tool.get("type")
            not in (
                "client",
                "webhook",
                "system",
            )
        ):
            errors.append(
                _error(
                    ["conversation_config", "agent", "prompt", "tools", index],
                    "union_tag_invalid",
                    "Input tag does not match any of the expected tags: 'client', 'webhook', "
                    "'system'",
                    tool,
                )
            )
    return errors


def _error(loc: list, kind: str, msg: str, value) -> dict:
    return {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}


class FakeElevenLabsAPI(ThreadedHTTPFake):
    """``with FakeElevenLabsAPI() as api:`` then point a credential's API base URL at ``api.url``."""

    methods = ("GET", "POST", "PATCH", "DELETE")
    # Keep-alive connections (a client reuses them across requests) and chunked streaming
    # bodies, like the real API. Every other answer carries a Content-Length.
    protocol_version = "HTTP/1.1"

    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.requests: list[Request] = []
        self.agents: dict[str, _Agent] = {}
        #: What ``GET /v1/user`` answers (the shape of ElevenLabs' user object, trimmed).
        self.user = {
            "user_id": "user_" + secrets.token_hex(8),
            "first_name": "Test",
            "is_new_user": False,
            "subscription": {
                "tier": "creator",
                "status": "active",
                "character_count": 1200,
                "character_limit": 100000,
            },
        }
        #: Conversation id → the JSON ``GET /v1/convai/conversations/{id}`` answers.
        self.conversations: dict[str, dict] = {}
        #: Signatures handed out in signed URLs, oldest first.
        self.signatures: list[str] = []
        #: Where signed URLs point: set it to the fake conversation socket's URL.
        self.conversation_url = DEFAULT_CONVERSATION_URL
        #: Sign URLs for any agent id, not only the ones created here (operator-supplied agents).
        self.accept_any_agent = False
        #: Text-to-speech requests, oldest first.
        self.tts_requests: list[TtsRequest] = []
        #: Audio to speak instead of the tone: bytes, or a callable (text, output_format) → bytes.
        self.tts_audio = None
        #: Tone length per character of text, and its cap, in milliseconds.
        self.tts_ms_per_char = 60
        self.tts_max_ms = 10_000
        #: Bytes per HTTP chunk of the audio body, and seconds between chunks.
        self.tts_chunk_size = 1600
        self.tts_chunk_delay = 0.0
        #: When set to a ``threading.Event``, each stream waits for it after its first chunk.
        self.tts_gate: threading.Event | None = None
        #: Cut the connection after this many chunks (a vendor dropping mid-stream).
        self.tts_drop_after: int | None = None
        self._scripts: deque[_Script] = deque()
        self._lock = threading.Lock()

    # -- scripting and inspection -----------------------------------------------------------------

    def fail_next(self, status: int, body: object, *, times: int = 1) -> None:
        """The next ``times`` requests (after the key check) are answered ``status`` with ``body``."""
        with self._lock:
            self._scripts.extend(_Script(status, body) for _ in range(times))

    def drop_next(self, *, times: int = 1) -> None:
        """The next ``times`` requests get no answer: the connection is closed."""
        with self._lock:
            self._scripts.extend(_Script(0) for _ in range(times))

    def add_agent(self, body: dict | None = None, agent_id: str | None = None) -> str:
        """An agent that already exists on the account (e.g. one an operator made by hand)."""
        agent_id = agent_id or f"agent_{secrets.token_hex(12)}"
        with self._lock:
            self.agents[agent_id] = _Agent(agent_id, copy.deepcopy(body or {}))
        return agent_id

    def agent(self, agent_id: str) -> dict:
        """The stored agent as ``GET`` would return it."""
        with self._lock:
            return copy.deepcopy(self.agents[agent_id].as_json())

    def of(self, method: str, path_prefix: str = "") -> list[Request]:
        with self._lock:
            return [
                r for r in self.requests if r.method == method and r.path.startswith(path_prefix)
            ]

    # -- server side --------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        split = urlsplit(request.path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = Request(request.command, split.path, query, dict(request.headers), body)
        with self._lock:
            self.requests.append(record)
        if request.headers.get("xi-api-key") != self.api_key:
            self.answer_json(
                request,
                401,
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
            )
            return
        with self._lock:
            script = self._scripts.popleft() if self._scripts else None
        if script is not None:
            if script.status == 0:
                request.close_connection = True
                request.connection.close()
            else:
                self.answer_json(request, script.status, script.body)
            return
        parts = [part for part in split.path.split("/") if part]
        if record.method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "text-to-speech"]:
            if parts[3] == "stream":
                self._tts(request, record, parts[2])
                return
        status, answer = self._route(record)
        self.answer_json(request, status, answer)

    def _route(self, req: Request) -> tuple[int, object]:
        parts = [part for part in req.path.split("/") if part]
        if parts[:2] == ["v1", "voices"] and len(parts) == 2 and req.method == "GET":
            return 200, {"voices": _voice_list()}
        if parts == ["v1", "user"] and req.method == "GET":
            return 200, copy.deepcopy(self.user)
        if parts[:2] != ["v1", "convai"]:
            return 404, {"detail": "Not Found"}
        rest = parts[2:]
        if rest == ["agents", "create"] and req.method == "POST":
            return self._create(req.json)
        if len(rest) == 2 and rest[0] == "agents":
            return self._agent(req.method, rest[1], req.json)
        if rest == ["conversation", "get-signed-url"] and req.method == "GET":
            return self._signed_url(req.query.get("agent_id", ""))
        if len(rest) == 2 and rest[0] == "conversations" and req.method == "GET":
            with self._lock:
                conversation = self.conversations.get(rest[1])
            if conversation is None:
                return 404, {
                    "detail": {
                        "status": "conversation_not_found",
                        "message": f"Conversation {rest[1]} not found",
                    }
                }
            return 200, conversation
        return 404, {"detail": "Not Found"}

    def _create(self, body) -> tuple[int, object]:
        if not isinstance(body, dict):
            return 422, {
                "detail": [_error([], "dict_type", "Input should be a valid dictionary", body)]
            }
        if "conversation_config" not in body:
            return 422, {
                "detail": [_error(["conversation_config"], "missing", "Field required", body)]
            }
        errors = _validation_errors(body)
        if errors:
            return 422, {"detail": errors}
        agent_id = self.add_agent(body)
        return 200, {"agent_id": agent_id}

    def _agent(self, method: str, agent_id: str, body) -> tuple[int, object]:
        with self._lock:
            agent = self.agents.get(agent_id)
        if agent is None:
            return 404, _not_found(agent_id)
        if method == "GET":
            return 200, agent.as_json()
        if method == "DELETE":
            with self._lock:
                self.agents.pop(agent_id, None)
            return 200, {}
        if method == "PATCH":
            if not isinstance(body, dict):
                return 422, {
                    "detail": [_error([], "dict_type", "Input should be a valid dictionary", body)]
                }
            merged = deep_merge(agent.body, body)
            errors = _validation_errors(merged)
            if errors:
                return 422, {"detail": errors}
            with self._lock:
                agent.body = merged
                agent.updated = int(time.time())
            return 200, agent.as_json()
        return 405, {"detail": "Method Not Allowed"}

    def _signed_url(self, agent_id: str) -> tuple[int, object]:
        with self._lock:
            known = agent_id in self.agents
        if not agent_id or not (known or self.accept_any_agent):
            return 404, _not_found(agent_id)
        signature = secrets.token_urlsafe(24)
        with self._lock:
            self.signatures.append(signature)
        query = urlencode({"agent_id": agent_id, "conversation_signature": signature})
        return 200, {"signed_url": f"{self.conversation_url}?{query}"}

    # -- text-to-speech ------------------------------------------------------------------------------

    def tts_audio_for(self, text: str, output_format: str) -> bytes:
        """The audio the fake speaks for ``text`` in one of ``TTS_RAW_FORMATS``."""
        if callable(self.tts_audio):
            return self.tts_audio(text, output_format)
        if self.tts_audio is not None:
            return bytes(self.tts_audio)
        ms = max(20, min(len(text) * self.tts_ms_per_char, self.tts_max_ms))
        rate = int(output_format.split("_")[1])
        return tone(rate, ms, mulaw=output_format == "ulaw_8000")

    def _tts(self, request: BaseHTTPRequestHandler, record: Request, voice_id: str) -> None:
        tts = TtsRequest(
            voice_id,
            record.query,
            record.headers,
            record.json,
            request.client_address[:2],
        )
        with self._lock:
            self.tts_requests.append(tts)
        try:
            status, answer = self._tts_check(tts)
            tts.status = status
            if status != 200:
                self.answer_json(request, status, answer)
                return
            self._stream(request, tts, self.tts_audio_for(record.json["text"], answer))
        finally:
            tts.done.set()

    def _tts_check(self, tts: TtsRequest) -> tuple[int, object]:
        """The error answer for a request ElevenLabs would refuse, else ``(200, output_format)``."""
        fmt = tts.query.get("output_format", TTS_DEFAULT_FORMAT)
        if fmt not in TTS_OUTPUT_FORMATS:
            choices = ", ".join(f"'{value}'" for value in TTS_OUTPUT_FORMATS)
            return 422, {
                "detail": [
                    {
                        "type": "enum",
                        "loc": ["query", "output_format"],
                        "msg": f"Input should be {choices}",
                        "input": fmt,
                    }
                ]
            }
        body = tts.json
        if not isinstance(body, dict):
            return 422, {
                "detail": [_error([], "dict_type", "Input should be a valid dictionary", body)]
            }
        if not isinstance(body.get("text"), str):
            return 422, {"detail": [_error(["text"], "missing", "Field required", body)]}
        if tts.voice_id not in VOICES.values():
            return 404, {
                "detail": {
                    "status": "voice_not_found",
                    "message": f"A voice with the voice_id {tts.voice_id} was not found.",
                }
            }
        if fmt not in TTS_RAW_FORMATS:
            return 400, {
                "detail": {
                    "status": "fake_format_not_supported",
                    "message": f"The fake API does not encode {fmt}.",
                }
            }
        return 200, fmt

    def _stream(self, request: BaseHTTPRequestHandler, tts: TtsRequest, audio: bytes) -> None:
        """Send ``audio`` as a chunked body, noticing a client that goes away."""
        sock = request.connection
        content_type = "audio/basic" if tts.query["output_format"] == "ulaw_8000" else "audio/pcm"
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.send_header("Transfer-Encoding", "chunked")
        request.send_header("request-id", secrets.token_hex(8))
        request.end_headers()
        size = max(1, self.tts_chunk_size)
        try:
            for start in range(0, len(audio), size):
                if start and self._client_gone(sock, self.tts_chunk_delay):
                    tts.disconnected = True
                    break
                chunk = audio[start : start + size]
                # Counted before writing: the test may read the count as soon as the bytes land.
                tts.sent += chunk
                tts.chunks += 1
                request.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if tts.chunks == self.tts_drop_after:
                    tts.dropped = True
                    sock.shutdown(socket.SHUT_RDWR)
                    break
                if tts.chunks == 1 and self.tts_gate is not None:
                    if self._hold(sock, self.tts_gate):
                        tts.disconnected = True
                        break
            else:
                request.wfile.write(b"0\r\n\r\n")
                tts.completed = True
        except OSError:
            tts.disconnected = True
        if not tts.completed:
            request.close_connection = True

    @staticmethod
    def _client_gone(sock: socket.socket, wait: float) -> bool:
        """Whether the client closed its end, waiting up to ``wait`` seconds to find out.

        An HTTP client sends nothing while it reads a response, so a readable socket means
        end-of-file (or a reset).
        """
        readable, _, _ = select.select([sock], [], [], max(0.0, wait))
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _hold(self, sock: socket.socket, gate: threading.Event, limit: float = 30.0) -> bool:
        """Wait for the test to open ``gate`` (at most ``limit`` s); True if the client left."""
        deadline = time.monotonic() + limit
        while not gate.is_set() and time.monotonic() < deadline:
            if self._client_gone(sock, 0.01):
                return True
        return False


def _not_found(agent_id: str) -> dict:
    return {
        "detail": {
            "status": "agent_not_found",
            "message": f"Agent with id {agent_id} not found",
        }
    }


def _voice_list() -> list[dict]:
    return [
        {"voice_id": voice_id, "name": name, "category": "premade"}
        for name, voice_id in VOICES.items()
    ]


def tone(rate: int, ms: int, *, mulaw: bool = False, hz: int = 1000) -> bytes:
    """``ms`` of a ``hz`` sine at half scale: PCM16 little-endian, or G.711 µ-law bytes."""
    count = rate * ms // 1000
    samples = [round(16384 * math.sin(2 * math.pi * hz * n / rate)) for n in range(count)]
    if mulaw:
        return bytes(_ulaw(sample) for sample in samples)
    return b"".join(sample.to_bytes(2, "little", signed=True) for sample in samples)


def _ulaw(sample: int) -> int:
    """G.711 µ-law code of a 16-bit sample (the classic reference encoder, written out here so
    that the fake does not share the audio core's tables)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = 7
    while exponent and not magnitude & (0x80 << exponent):
        exponent -= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | exponent << 4 | mantissa) & 0xFF
