"""A fake OpenAI Chat Completions endpoint that streams, for the pipeline's reply stage.

``FakeOpenAIChat`` is a real HTTP/1.1 server on 127.0.0.1, port 0, in a thread. ``url`` is the
endpoint itself (``http://127.0.0.1:<port>/v1/chat/completions``), as an agent's base URL would be.
It answers like OpenAI (docs/stages/openai_chat.md):

* ``Authorization: Bearer <key>`` is required; a wrong or missing key is
  ``401 {"error": {"message": "Incorrect API key provided: ...", "type": "invalid_request_error",
  "param": null, "code": "invalid_api_key"}}``;
* the body must be JSON with ``model``, a non-empty ``messages`` list and ``"stream": true``
  (else ``400`` with an ``invalid_request_error``); other paths are ``404``;
* the reply streams as Server-Sent Events in chunked encoding: a role chunk, one chunk per
  scripted piece, a finish chunk, a usage chunk when ``stream_options.include_usage`` is set, and
  ``data: [DONE]``.

Replies are scripted with ``script()`` (pieces, a delay per chunk, a gate to hold the stream on,
an error in the middle, tool calls); with no script the fake answers ``DEFAULT_REPLY``.
``fail_next`` answers the next request with an HTTP error. Every request is recorded in
``requests``; ``client_gone`` is set when a client closes its connection before the end of a
stream (a barge-in), and ``completed`` counts streams sent to their end.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.fakes.http_fake import ThreadedHTTPFake

API_KEY = "sk-test-openai-chat-0123456789abcdef"
PATH = "/v1/chat/completions"
DEFAULT_REPLY = ("Hello! ", "How can I help you today?")
#: How long a gated stream waits for its gate before giving up (a test that forgot to open it).
GATE_TIMEOUT = 10.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    json: object
    #: The client's (host, port): the same for requests sent over one kept-alive connection.
    peer: tuple[str, int]


@dataclass
class Script:
    """One scripted reply."""

    pieces: tuple[str, ...] = DEFAULT_REPLY
    #: Seconds before each chunk after the role chunk (e.g. 0.3 for a sentence every 300 ms).
    delay: float = 0.0
    #: Hold the stream after this many pieces until ``gate`` is set (a test's checkpoint).
    gate: threading.Event | None = None
    gate_after: int = 1
    #: After this many pieces, send ``data: {"error": error}`` and end the stream.
    error: dict | None = None
    error_after: int = 0
    #: Tool calls to stream instead of finishing with ``stop``: ``{"name", "arguments"}`` each.
    tool_calls: list[dict] = field(default_factory=list)
    #: After this many pieces, drop the connection without finishing the body.
    drop_after: int | None = None


@dataclass
class _Failure:
    status: int
    body: object


class FakeOpenAIChat(ThreadedHTTPFake):
    """``with FakeOpenAIChat() as chat:`` then use ``chat.url`` as the reply stage's base URL."""

    methods = ("POST",)
    protocol_version = "HTTP/1.1"
    url_path = PATH

    def __init__(self, api_key: str = API_KEY, model: str = "gpt-4o-mini-2024-07-18"):
        self.api_key = api_key
        self.model = model
        self.requests: list[Request] = []
        #: Set when a client closed its connection in the middle of a stream.
        self.client_gone = threading.Event()
        #: Streams sent to their end ([DONE] or a scripted error).
        self.completed = 0
        self._scripts: deque[Script] = deque()
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()

    # -- scripting and inspection -----------------------------------------------------------------

    def script(self, *pieces: str, **options) -> Script:
        """Queue the next reply: its content ``pieces`` and ``Script`` options."""
        script = Script(pieces=pieces or DEFAULT_REPLY, **options)
        with self._lock:
            self._scripts.append(script)
        return script

    def fail_next(
        self, status: int, message: str, *, kind: str = "invalid_request_error", code=None
    ) -> None:
        """The next request (after the key check) is refused with OpenAI's error body."""
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        with self._lock:
            self._failures.append(_Failure(status, body))

    @property
    def bodies(self) -> list[object]:
        with self._lock:
            return [request.json for request in self.requests]

    # -- server side --------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = Request(request.path, dict(request.headers), body, request.client_address)
        with self._lock:
            self.requests.append(record)
        if request.path != PATH:
            self.answer_json(request, 404, _error(f"Invalid URL (POST {request.path})", None))
            return
        key = _bearer(request.headers.get("Authorization", ""))
        if key != self.api_key:
            self.answer_json(request, 401, _bad_key(key))
            return
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            self.answer_json(request, failure.status, failure.body)
            return
        problem = _validate(body)
        if problem:
            self.answer_json(request, 400, _error(problem, "invalid_request_error"))
            return
        with self._lock:
            script = self._scripts.popleft() if self._scripts else Script()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._stream(request, script, body["model"], include_usage)

    def _stream(self, request, script: Script, model: str, include_usage: bool) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "text/event-stream; charset=utf-8")
        request.send_header("Transfer-Encoding", "chunked")
        request.send_header("Cache-Control", "no-cache")
        request.end_headers()
        stream = _Stream(request, model or self.model)
        try:
            stream.chunk({"role": "assistant", "content": ""}, first=True)
            for index, piece in enumerate(script.pieces):
                if script.gate is not None and index == script.gate_after:
                    stream.wait_for(script.gate)
                if script.error is not None and index == script.error_after:
                    stream.event({"error": script.error})
                    stream.end()
                    self._done()
                    return
                if script.drop_after is not None and index == script.drop_after:
                    stream.drop()
                    return
                stream.pause(script.delay)
                stream.chunk({"content": piece})
            if script.gate is not None and script.gate_after >= len(script.pieces):
                stream.wait_for(script.gate)
            if script.error is not None:
                stream.event({"error": script.error})
                stream.end()
                self._done()
                return
            for index, call in enumerate(script.tool_calls):
                stream.pause(script.delay)
                stream.tool_call(index, call)
            stream.pause(script.delay)
            stream.chunk({}, finish_reason="tool_calls" if script.tool_calls else "stop")
            if include_usage:
                stream.usage(completion_tokens=len(script.pieces))
            stream.data("[DONE]")
            stream.end()
            self._done()
        except _ClientGone:
            request.close_connection = True
            self.client_gone.set()

    def _done(self) -> None:
        with self._lock:
            self.completed += 1


class _ClientGone(Exception):
    pass


class _Stream:
    """Server-Sent Events in HTTP chunked encoding, noticing when the client hangs up."""

    def __init__(self, request: BaseHTTPRequestHandler, model: str):
        self.request = request
        self.sock: socket.socket = request.connection
        self.model = model
        self.id = f"chatcmpl-{int(time.time() * 1000)}"
        self.created = int(time.time())

    def chunk(self, delta: dict, *, finish_reason: str | None = None, first=False) -> None:
        event = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": None,
        }
        if first:
            event["system_fingerprint"] = "fp_fake"
        self.event(event)

    def tool_call(self, index: int, call: dict) -> None:
        """One tool call the way OpenAI streams it: name first, then the arguments in pieces."""
        call_id = call.get("id") or f"call_{index}"
        self.chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call["name"], "arguments": ""},
                    }
                ]
            }
        )
        arguments = call.get("arguments", "{}")
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            self.chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})

    def usage(self, *, completion_tokens: int) -> None:
        prompt_tokens = 50
        self.event(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def event(self, payload: dict) -> None:
        self.data(json.dumps(payload, separators=(",", ":")))

    def data(self, text: str) -> None:
        self._write(f"data: {text}\n\n".encode())

    def end(self) -> None:
        self._send(b"0\r\n\r\n")

    def drop(self) -> None:
        """Close the connection in the middle of the body, as a failing proxy would."""
        self.request.close_connection = True
        self.sock.shutdown(socket.SHUT_RDWR)

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, noticing a client that hangs up meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            self._check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.01))

    def wait_for(self, gate: threading.Event) -> None:
        deadline = time.monotonic() + GATE_TIMEOUT
        while not gate.wait(0.01):
            self._check()
            if time.monotonic() > deadline:
                return  # the test never opened it: go on rather than hang the server

    def _check(self) -> None:
        # The client sends nothing while it reads the response, so a readable socket means it
        # closed the connection (recv returns b"") or reset it.
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return
        try:
            gone = self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            gone = True
        if gone:
            raise _ClientGone

    def _write(self, data: bytes) -> None:
        """``data`` as one chunk of the chunked body."""
        self._send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _send(self, raw: bytes) -> None:
        self._check()
        try:
            self.request.wfile.write(raw)
            self.request.wfile.flush()
        except OSError as err:
            raise _ClientGone from err


def _bearer(header: str) -> str:
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _bad_key(key: str) -> dict:
    shown = f"{key[:3]}{'*' * 10}{key[-4:]}" if len(key) > 8 else key
    message = (
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key" if key else None,
        }
    }


def _error(message: str, kind: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _validate(body: object) -> str:
    """OpenAI's message for a request body the fake refuses, or ''."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if not body.get("model"):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "[] is too short - 'messages'"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            return f"Invalid value for 'messages[{index}].role'."
        if not isinstance(message.get("content"), str) and not message.get("tool_calls"):
            return f"Invalid type for 'messages[{index}].content': expected a string."
    if body.get("stream") is not True:
        return "This fake only streams: set 'stream' to true."
    return ""
