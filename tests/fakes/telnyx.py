"""A fake Telnyx for tests: signed webhooks, the Call Control REST API, and a media-stream caller.

* Signatures are made here with ``cryptography``'s Ed25519 API directly, never with
  ``telephony.carriers.telnyx.signature``: the signed message (``timestamp|body``,
  docs/carriers/telnyx.md#webhook-signature) is composed independently, so a shared
  misunderstanding cannot make both sides agree.
* ``FakeTelnyxAPI`` is a real HTTP server on 127.0.0.1, port 0, in a thread (so sync Django test
  clients and async tests can both reach it). It records every command and answers like Telnyx:
  ``200 {"data": {"result": "ok"}}``, or a scripted error such as
  ``422 {"errors": [{"code": "90018", "title": "Call has already ended", ...}]}``. A dial
  (``POST /v2/calls``) is recorded as a ``dial`` command and answered with a new
  ``call_control_id``. It also
  answers ``GET /v2/balance`` with ``balance`` (the request a key check makes).
* ``FakeTelnyxCaller`` plays Telnyx's side of a bidirectional media stream
  (docs/carriers/telnyx.md#media-stream-frames) over any pair of send/receive coroutines:
  ``connected`` (with the auth token), ``start`` with our ``client_state``, ``media`` frames paced
  in real time, ``dtmf``, ``error``, ``stop``. It plays the audio it receives on a simulated clock
  and echoes each ``mark`` once the audio before it has played; ``clear`` drops the queue and returns the queued marks at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fakes.http_fake import ThreadedHTTPFake

#: Matches ``VOICEAGENTS['PUBLIC_URL']`` in tests/settings.py.
PUBLIC_URL = "https://voice.example.test"
WEBHOOK_PATH = "/telephony/telnyx/webhook/"
#: Where our streaming_start points Telnyx (written out here on purpose, not imported).
MEDIA_PATH = "/telephony/telnyx/media/"
API_KEY = "KEY0123456789ABCDEF_telnyx_test"
CALLER = "+15551230000"
OUR_NUMBER = "+15559870000"
CONNECTION_ID = "2811212257810187875"


# -- Ed25519 signing (docs/carriers/telnyx.md#webhook-signature) ------------------------------


@dataclass(frozen=True)
class KeyPair:
    private: Ed25519PrivateKey = field(repr=False)

    @property
    def public_b64(self) -> str:
        """The public key as the Telnyx portal shows it: base64 of the raw 32 bytes."""
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    def sign(self, body: bytes, timestamp: int | str) -> str:
        """``telnyx-signature-ed25519`` for ``body`` sent at ``timestamp``."""
        message = str(timestamp).encode("ascii") + b"|" + body
        return base64.b64encode(self.private.sign(message)).decode("ascii")


def keypair(seed: str | None = None) -> KeyPair:
    """A fresh key pair, or a deterministic one derived from ``seed``."""
    if seed is None:
        return KeyPair(Ed25519PrivateKey.generate())
    return KeyPair(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest()))


def signed_headers(
    body: bytes, key: KeyPair | None, timestamp: int | None = None
) -> dict[str, str]:
    """The two Telnyx headers for ``body``; ``key=None`` sends none."""
    if key is None:
        return {}
    stamp = int(time.time()) if timestamp is None else timestamp
    return {"telnyx-timestamp": str(stamp), "telnyx-signature-ed25519": key.sign(body, stamp)}


def post(
    client,
    body: bytes,
    key: KeyPair | None,
    *,
    timestamp: int | None = None,
    path: str = WEBHOOK_PATH,
    headers=None,
):
    """POST ``body`` as Telnyx would; works with Django's ``Client`` and ``AsyncClient`` (await it)."""
    return client.post(
        path,
        data=body,
        content_type="application/json",
        headers={**signed_headers(body, key, timestamp), **(headers or {})},
    )


# -- webhook bodies (docs/carriers/telnyx.md#webhook-envelope) --------------------------------


def new_call_control_id() -> str:
    return "v3:" + secrets.token_urlsafe(40)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def webhook(
    event_type: str, payload: dict, *, event_id: str | None = None, occurred_at: str | None = None
) -> bytes:
    """A Call Control webhook body, bytes exactly as signed."""
    envelope = {
        "data": {
            "record_type": "event",
            "event_type": event_type,
            "id": event_id or str(uuid.uuid4()),
            "occurred_at": occurred_at or _now_iso(),
            "payload": payload,
        },
        "meta": {"attempt": 1, "delivered_to": PUBLIC_URL + WEBHOOK_PATH},
    }
    return json.dumps(envelope).encode()


def call_payload(call_control_id: str, **fields) -> dict:
    payload = {
        "call_control_id": call_control_id,
        "call_leg_id": str(uuid.uuid4()),
        "call_session_id": str(uuid.uuid4()),
        "connection_id": CONNECTION_ID,
        "client_state": None,
        "from": CALLER,
        "to": OUR_NUMBER,
        "direction": "incoming",
    }
    payload.update(fields)
    return payload


def call_initiated(call_control_id: str, **fields) -> bytes:
    fields.setdefault("state", "parked")
    fields.setdefault("offered_codecs", "PCMU,G729")
    return webhook("call.initiated", call_payload(call_control_id, **fields))


def call_answered(call_control_id: str, client_state: str | None = None, **kw) -> bytes:
    return webhook("call.answered", call_payload(call_control_id, client_state=client_state), **kw)


def call_hangup(
    call_control_id: str,
    cause: str = "normal_clearing",
    source: str = "caller",
    client_state: str | None = None,
    **kw,
) -> bytes:
    payload = call_payload(
        call_control_id,
        client_state=client_state,
        hangup_cause=cause,
        hangup_source=source,
        sip_hangup_cause="200",
    )
    return webhook("call.hangup", payload, **kw)


def speak_ended(call_control_id: str, client_state: str | None) -> bytes:
    return webhook(
        "call.speak.ended",
        call_payload(call_control_id, client_state=client_state, status="completed"),
    )


def streaming_event(event_type: str, call_control_id: str, **fields) -> bytes:
    return webhook(event_type, call_payload(call_control_id, stream_id=str(uuid.uuid4()), **fields))


def decode_client_state(value: str) -> dict:
    return json.loads(base64.b64decode(value))


# -- the Call Control REST API (docs/carriers/telnyx.md#call-control-commands) ----------------


@dataclass
class Command:
    """One request the fake API received."""

    call_control_id: str
    action: str
    body: dict
    headers: dict


@dataclass
class _Script:
    status: int
    body: dict | None  # None: drop the connection without answering


class FakeTelnyxAPI(ThreadedHTTPFake):
    """``with FakeTelnyxAPI() as api:`` then point ``TELNYX_API_URL`` (or a credential) at ``api.url``."""

    methods = ("POST", "GET")
    url_path = "/v2"

    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.commands: list[Command] = []
        self._scripts: dict[str, deque[_Script]] = {}
        self._lock = threading.Lock()
        #: Seconds to wait before answering (to exercise client timeouts).
        self.delay = 0.0
        #: What ``GET /v2/balance`` answers under ``data`` (Telnyx's example values).
        self.balance = {
            "record_type": "balance",
            "pending": "10.00",
            "balance": "300.00",
            "credit_limit": "100.00",
            "available_credit": "400.00",
            "currency": "USD",
        }
        #: Paths of the GET requests received, in order.
        self.gets: list[str] = []
        #: Sign the webhooks of answered dials with this key; None: dials are not answered.
        self.answer_key: KeyPair | None = None
        #: ``result`` of ``call.machine.detection.ended`` for answered dials (when they ask AMD).
        self.answer_as = "human"
        #: Seconds between the stream's start and the AMD webhook.
        self.amd_delay = 0.3
        #: PCMU audio the callee says as soon as the stream starts (a machine's greeting).
        self.callee_audio = b""
        #: Answered dials by call_control_id.
        self.answered: dict[str, AnsweredDial] = {}
        self._threads: list[threading.Thread] = []

    def __exit__(self, *exc) -> None:
        for dial in list(self.answered.values()):
            dial.hang_up()
        for thread in self._threads:
            thread.join(10)
        super().__exit__(*exc)

    # -- scripting and inspection -----------------------------------------------------------------

    def fail(
        self,
        action: str,
        status: int = 422,
        *,
        code: str = "90018",
        title: str = "Call has already ended",
        detail: str = "This call is no longer active and can't receive commands.",
        times: int = 1,
    ) -> None:
        """The next ``times`` commands ``action`` get a Telnyx error body."""
        body = {"errors": [{"code": code, "title": title, "detail": detail}]}
        for _ in range(times):
            self._scripts.setdefault(action, deque()).append(_Script(status, body))

    def drop(self, action: str, times: int = 1) -> None:
        """The next ``times`` commands ``action`` get no answer: the connection is closed."""
        for _ in range(times):
            self._scripts.setdefault(action, deque()).append(_Script(0, None))

    def of(self, action: str) -> list[Command]:
        with self._lock:
            return [c for c in self.commands if c.action == action]

    def actions(self) -> list[str]:
        with self._lock:
            return [c.action for c in self.commands]

    async def wait_for(self, predicate, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"fake Telnyx API: condition not met within {timeout}s; got {self.actions()}"
                )
            await asyncio.sleep(0.01)

    # -- server side --------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length)
        if self.delay:
            time.sleep(self.delay)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.answer_json(
                request,
                401,
                {
                    "errors": [
                        {
                            "code": "10009",
                            "title": "Authentication failed",
                            "detail": "Could not understand the provided credentials.",
                        }
                    ]
                },
            )
            return
        if request.command == "GET":
            self._get(request)
            return
        parts = request.path.split("/")
        if request.path == "/v2/calls":
            self._dial(request, raw)
            return
        # /v2/calls/{call_control_id}/actions/{action}
        if len(parts) != 6 or parts[1:3] != ["v2", "calls"] or parts[4] != "actions":
            self.answer_json(
                request,
                404,
                {
                    "errors": [
                        {"code": "10005", "title": "Resource not found", "detail": request.path}
                    ]
                },
            )
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.answer_json(
                request,
                400,
                {"errors": [{"code": "10015", "title": "Bad request", "detail": "not JSON"}]},
            )
            return
        command = Command(unquote(parts[3]), parts[5], body, dict(request.headers))
        with self._lock:
            self.commands.append(command)
            scripts = self._scripts.get(command.action)
            script = scripts.popleft() if scripts else None
        if script is None:
            self.answer_json(request, 200, {"data": {"result": "ok"}})
        elif script.body is None:
            request.close_connection = True
            request.connection.close()
        else:
            self.answer_json(request, script.status, script.body)

    def _dial(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        """``POST /v2/calls``: recorded as a ``dial`` command under a new ``call_control_id``;
        ``connection_id``, ``to`` and ``from`` are required (422 otherwise), as at Telnyx."""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.answer_json(
                request,
                400,
                {"errors": [{"code": "10015", "title": "Bad request", "detail": "not JSON"}]},
            )
            return
        ccid = new_call_control_id()
        with self._lock:
            self.commands.append(Command(ccid, "dial", body, dict(request.headers)))
            scripts = self._scripts.get("dial")
            script = scripts.popleft() if scripts else None
        missing = [name for name in ("connection_id", "to", "from") if not body.get(name)]
        if script is not None:
            self.answer_json(request, script.status, script.body)
        elif missing:
            detail = f"The '{missing[0]}' parameter is required."
            self.answer_json(
                request,
                422,
                {"errors": [{"code": "10015", "title": "Invalid parameter", "detail": detail}]},
            )
        else:
            data = {
                "call_control_id": ccid,
                "call_leg_id": str(uuid.uuid4()),
                "call_session_id": str(uuid.uuid4()),
                "is_alive": False,
                "record_type": "call",
            }
            self.answer_json(request, 200, {"data": data})
            if self.answer_key is not None:
                dial = AnsweredDial(self, ccid, body)
                self.answered[ccid] = dial
                thread = threading.Thread(target=dial.run, name=f"fake-telnyx-{ccid}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _get(self, request: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.gets.append(request.path)
        if request.path == "/v2/balance":
            self.answer_json(request, 200, {"data": dict(self.balance)})
            return
        self.answer_json(
            request,
            404,
            {"errors": [{"code": "10005", "title": "Resource not found", "detail": request.path}]},
        )


# -- media-stream frames (docs/carriers/telnyx.md#media-stream-frames) ------------------------


def connected(token: str | None = None) -> dict:
    frame: dict = {"event": "connected", "version": "1.0.0"}
    if token is not None:
        frame["connected"] = {"x-telnyx-streaming-auth-token": token}
    return frame


def start(
    stream_id: str,
    call_control_id: str,
    client_state: str | None,
    *,
    encoding: str = "L16",
    sample_rate: int = 16000,
    custom_parameters: dict | None = None,
    sequence_number: int = 1,
) -> dict:
    return {
        "event": "start",
        "sequence_number": str(sequence_number),
        "stream_id": stream_id,
        "start": {
            "user_id": str(uuid.uuid4()),
            "call_control_id": call_control_id,
            "call_session_id": str(uuid.uuid4()),
            "from": CALLER,
            "to": OUR_NUMBER,
            "client_state": client_state,
            "custom_parameters": dict(custom_parameters or {}),
            "media_format": {"encoding": encoding, "sample_rate": sample_rate, "channels": 1},
        },
    }


def media(
    stream_id: str,
    payload: bytes,
    *,
    chunk: int | None,
    sequence_number: int,
    timestamp_ms: int = 0,
    track: str = "inbound",
) -> dict:
    inner = {
        "track": track,
        "timestamp": str(timestamp_ms),
        "payload": base64.b64encode(payload).decode("ascii"),
    }
    if chunk is not None:
        inner["chunk"] = str(chunk)
    return {
        "event": "media",
        "sequence_number": str(sequence_number),
        "stream_id": stream_id,
        "media": inner,
    }


def mark(stream_id: str, name: str, *, sequence_number: int) -> dict:
    return {
        "event": "mark",
        "sequence_number": str(sequence_number),
        "stream_id": stream_id,
        "mark": {"name": name},
    }


def dtmf(stream_id: str, digit: str, *, sequence_number: int) -> dict:
    return {
        "event": "dtmf",
        "sequence_number": str(sequence_number),
        "stream_id": stream_id,
        "occurred_at": _now_iso(),
        "dtmf": {"digit": digit},
    }


def error(
    stream_id: str, *, sequence_number: int, code: int = 100002, title: str = "Unknown error"
) -> dict:
    return {
        "event": "error",
        "sequence_number": str(sequence_number),
        "stream_id": stream_id,
        "payload": {"code": code, "title": title, "detail": "details"},
    }


def stop(stream_id: str, call_control_id: str, *, sequence_number: int) -> dict:
    return {
        "event": "stop",
        "sequence_number": str(sequence_number),
        "stream_id": stream_id,
        "stop": {"user_id": str(uuid.uuid4()), "call_control_id": call_control_id},
    }


# -- the media-stream caller ------------------------------------------------------------------


@dataclass
class Playback:
    """Telnyx's outbound queue: audio plays in real time, marks echo when reached."""

    queue: deque = field(default_factory=deque)  # ("audio", n_bytes) | ("mark", name)
    played_bytes: int = 0
    #: Audio played before the last mark echoed in order (not returned by a clear).
    acked_bytes: int = 0
    clock_start: float | None = None
    consumed_s: float = 0.0


class FakeTelnyxCaller:
    """Telnyx's side of one media stream; see the module docstring.

    ``bytes_per_ms`` follows the stream's codec: 32 for L16 16 kHz, 8 for PCMU.
    """

    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        receive_text: Callable[[float], Awaitable[str | None]],
        *,
        call_control_id: str,
        bytes_per_ms: int = 32,
    ):
        self._send_text = send_text
        self._receive_text = receive_text
        self.call_control_id = call_control_id
        self.stream_id = str(uuid.uuid4()).upper()
        self.bytes_per_ms = bytes_per_ms
        self.frame_bytes = 20 * bytes_per_ms
        self._seq = itertools.count(1)
        self.chunk = 0
        self.received: list[dict] = []
        self.media_in = bytearray()
        self.clears = 0
        self.playback = Playback()
        #: Echo marks at all (False: a Telnyx that never echoes them).
        self.ack_marks = True
        self.closed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        #: ``(played ms, acked ms)`` when each clear arrived.
        self.at_clear: list[tuple[float, float]] = []

    async def send(self, frame: dict) -> None:
        await self._send_text(json.dumps(frame))

    def next_seq(self) -> int:
        return next(self._seq)

    async def connected(self, token: str | None = None) -> None:
        await self.send(connected(token))

    async def start(self, client_state: str | None, **kwargs) -> None:
        await self.send(
            start(
                self.stream_id,
                self.call_control_id,
                client_state,
                sequence_number=self.next_seq(),
                **kwargs,
            )
        )
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._play())]

    def media_frame(self, payload: bytes, **kwargs) -> dict:
        self.chunk += 1
        kwargs.setdefault("chunk", self.chunk)
        kwargs.setdefault("timestamp_ms", (self.chunk - 1) * 20)
        return media(self.stream_id, payload, sequence_number=self.next_seq(), **kwargs)

    async def media(self, payload: bytes, **kwargs) -> None:
        await self.send(self.media_frame(payload, **kwargs))

    async def stream_audio(self, audio: bytes, *, realtime: bool = True) -> None:
        """Send ``audio`` as 20 ms frames, paced on a real-time grid when ``realtime``."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        for index, first in enumerate(range(0, len(audio), self.frame_bytes)):
            await self.media(audio[first : first + self.frame_bytes])
            if realtime:
                delay = began + (index + 1) * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def dtmf(self, digit: str) -> None:
        await self.send(dtmf(self.stream_id, digit, sequence_number=self.next_seq()))

    async def error(self, **kwargs) -> None:
        await self.send(error(self.stream_id, sequence_number=self.next_seq(), **kwargs))

    async def stop(self) -> None:
        await self.send(stop(self.stream_id, self.call_control_id, sequence_number=self.next_seq()))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def events(self, kind: str) -> list[dict]:
        return [f for f in self.received if f.get("event") == kind]

    # -- receiving and playback -------------------------------------------------------------------

    async def _read(self) -> None:
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
                self._enqueue(("audio", len(data)))
            elif event == "mark":
                self._enqueue(("mark", frame["mark"]["name"]))
            elif event == "clear":
                await self._clear()

    def _enqueue(self, item) -> None:
        loop = asyncio.get_running_loop()
        if self.playback.clock_start is None or not self.playback.queue:
            self.playback.clock_start = loop.time()
            self.playback.consumed_s = 0.0
        self.playback.queue.append(item)

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        bytes_per_s = self.bytes_per_ms * 1000
        while True:
            await asyncio.sleep(0.005)
            pb = self.playback
            while pb.queue:
                kind, value = pb.queue[0]
                if kind == "mark":
                    pb.queue.popleft()
                    if self.ack_marks:
                        pb.acked_bytes = pb.played_bytes
                        await self._echo(value)
                    continue
                duration = value / bytes_per_s
                if loop.time() - pb.clock_start < pb.consumed_s + duration:
                    break
                pb.consumed_s += duration
                pb.played_bytes += value
                pb.queue.popleft()

    def played_ms(self) -> float:
        """Agent audio played so far, counting the frame in progress pro rata."""
        pb = self.playback
        if pb.clock_start is None:
            return 0.0
        in_progress = 0.0
        if pb.queue and pb.queue[0][0] == "audio":
            elapsed = asyncio.get_running_loop().time() - pb.clock_start - pb.consumed_s
            in_progress = max(0.0, min(elapsed * 1000, pb.queue[0][1] / self.bytes_per_ms))
        return pb.played_bytes / self.bytes_per_ms + in_progress

    async def _clear(self) -> None:
        self.clears += 1
        self.at_clear.append((self.played_ms(), self.playback.acked_bytes / self.bytes_per_ms))
        queued = [value for kind, value in self.playback.queue if kind == "mark"]
        self.playback.queue.clear()
        if self.ack_marks:
            for name in queued:
                await self._echo(name)

    async def _echo(self, name: str) -> None:
        await self.send(mark(self.stream_id, name, sequence_number=self.next_seq()))


# -- a dial, answered -----------------------------------------------------------------------------


@dataclass
class AnsweredDial:
    """One dial as the fake answers it, the way Telnyx does: signed ``call.initiated``
    (``outgoing``) and ``call.answered`` to the dial's ``webhook_url``; the media stream opened to
    its ``stream_url`` with the ``stream_auth_token`` header and ``FakeTelnyxCaller``;
    ``streaming.started``; ``call.machine.detection.ended`` (``result``: ``api.answer_as``)
    ``amd_delay`` seconds later when the dial asked for AMD; ``call.hangup`` once the stream has
    ended (our side hung up, or ``hang_up()``). A webhook answered ``5xx`` is delivered again."""

    api: FakeTelnyxAPI
    call_control_id: str
    body: dict
    caller: FakeTelnyxCaller | None = None
    #: ``(event_type, HTTP status)`` of every webhook delivery, in order.
    deliveries: list[tuple[str, int]] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as err:  # noqa: BLE001 - the test reads it
            self.error = err
        finally:
            self.started.set()
            self.done.set()

    def hang_up(self) -> None:
        """The callee hangs up: the stream gets ``stop`` and closes."""
        if self._loop is not None and self.caller is not None and not self.done.is_set():
            asyncio.run_coroutine_threadsafe(self.caller.stop(), self._loop)

    def wait(self, timeout: float = 20.0) -> None:
        assert self.done.wait(timeout), f"fake Telnyx dial {self.call_control_id} did not finish"
        if self.error is not None:
            raise self.error

    def failed_deliveries(self) -> list[tuple[str, int]]:
        """The webhooks whose last delivery was answered with an error."""
        return [(kind, status) for kind, status in dict(self.deliveries).items() if status >= 400]

    def _payload(self, **fields) -> dict:
        return call_payload(
            self.call_control_id,
            direction="outgoing",
            client_state=self.body.get("client_state"),
            to=self.body.get("to"),
            **{"from": self.body.get("from")},
            **fields,
        )

    async def _deliver(self, client, event_type: str, **fields) -> None:
        body = webhook(event_type, self._payload(**fields))
        url = self.body["webhook_url"]
        for attempt in range(4):
            headers = {
                **signed_headers(body, self.api.answer_key),
                "Content-Type": "application/json",
            }
            response = await client.post(url, content=body, headers=headers)
            self.deliveries.append((event_type, response.status_code))
            if response.status_code < 500:
                return
            await asyncio.sleep(0.2 * 2**attempt)

    async def _run(self) -> None:
        import httpx
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        self._loop = asyncio.get_running_loop()
        body = self.body
        async with httpx.AsyncClient(timeout=10) as client:
            await self._deliver(client, "call.initiated", state="bridging")
            await self._deliver(client, "call.answered")
            token = body["stream_auth_token"]
            headers = {"x-telnyx-streaming-auth-token": token}
            async with connect(body["stream_url"], additional_headers=headers) as ws:

                async def receive(timeout: float) -> str | None:
                    try:
                        return await asyncio.wait_for(ws.recv(), timeout)
                    except ConnectionClosed:
                        return None

                rate = int(body.get("stream_bidirectional_sampling_rate") or 8000)
                self.caller = FakeTelnyxCaller(
                    ws.send,
                    receive,
                    call_control_id=self.call_control_id,
                    bytes_per_ms=8 if body.get("stream_codec") == "PCMU" else 32,
                )
                await self.caller.connected(token)
                await self.caller.start(
                    body.get("client_state"), encoding=body.get("stream_codec"), sample_rate=rate
                )
                self.started.set()
                await self._deliver(client, "streaming.started", stream_id=self.caller.stream_id)
                if self.api.callee_audio:
                    await self.caller.stream_audio(self.api.callee_audio, realtime=False)
                if body.get("answering_machine_detection") not in (None, "disabled"):
                    await asyncio.sleep(self.api.amd_delay)
                    await self._deliver(
                        client, "call.machine.detection.ended", result=self.api.answer_as
                    )
                await self.caller.closed.wait()
                await self.caller.aclose()
            hung_up_by_us = any(
                c.action == "hangup" and c.call_control_id == self.call_control_id
                for c in self.api.commands
            )
            await asyncio.sleep(0.5)  # Telnyx reports the hang-up after it happened
            await self._deliver(
                client,
                "call.hangup",
                hangup_cause="normal_clearing",
                hangup_source="caller" if hung_up_by_us else "callee",
                sip_hangup_cause="200",
            )
