"""A fake of Twilio's REST API for tests: the account resource a key check reads, and live-call
updates (a transfer's ``<Dial>``).

``FakeTwilioAPI`` is a real HTTP server on 127.0.0.1, port 0, in a thread. It answers like Twilio
(docs/carriers/twilio.md; https://www.twilio.com/docs/iam/api/account):

* every request needs HTTP Basic auth with an account SID and its auth token; anything else is
  ``401 {"code": 20003, "message": "Authenticate", "more_info": ..., "status": 401}``;
* ``GET /2010-04-01/Accounts/{AccountSid}.json`` answers the account (``friendly_name``,
  ``status``, ``auth_token``... as Twilio does) when the SID is the authenticated one, else
  ``404`` with Twilio's ``20404`` body.

* ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` (form-encoded) updates a live
  call (https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource): the form
  is recorded in ``updates`` and the Call resource answered (``status`` ``in-progress``, or
  ``completed`` for ``Status=completed``); ``Twiml`` and ``Url`` together are refused (``400``,
  Twilio's ``21205``-style body), an unknown CallSid (see ``live_calls``) answers ``404``/``20404``, and
  ``fail_update`` scripts an error answer. ``on_update(call_sid, form)`` runs as an accepted
  update takes effect, before the answer (``answer_delay`` later): a test plays Twilio's side of
  the stream there (Twilio ends a replaced stream, maybe before its REST answer arrives).

* ``GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` answers the Call resource a test
  put in ``call_records[CallSid]`` (``status``, ``duration`` in whole seconds as a string,
  ``price`` negative as a string or ``None`` until rated, ``price_unit``), else ``404``/``20404``.

* ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (form-encoded) places a call: the form is
  recorded in ``calls`` (every value a list, as Twilio reads repeated fields), ``To``, ``From``
  and one of ``Url``/``Twiml`` are required (``21201``-style ``400`` otherwise), and the answer is
  ``201`` with the Call resource (``sid`` ``CA…``, ``status`` ``queued``, snake_case fields).
  ``refuse_calls = (status, code, message)`` makes the next requests fail with Twilio's body.

When ``answer_as`` is ``"busy"``, ``"no-answer"``, ``"failed"`` or ``"canceled"``, the call rings
and ends so (signed status callbacks only). When it is set to another value (``"human"``,
``"machine_end_beep"``...), a placed call is then
*answered* in a thread of its own, the way Twilio does it (``AnsweredCall``): status callbacks
``initiated``, ``ringing``, ``in-progress`` signed with ``X-Twilio-Signature``; the ``Url``
fetched (signed POST) for its TwiML; the ``<Connect><Stream>`` WebSocket opened with a signed
handshake and driven by ``FakeTwilioCaller`` (``connected``, ``start`` with the TwiML's
parameters); the ``AsyncAmdStatusCallback`` posted (signed, ``AnsweredBy``) ``amd_delay``
seconds later; and once the stream ends (our side closes it, or ``hang_up()``), the
``completed`` status callback with ``CallDuration``. A callback answered ``5xx`` is posted again
(``RETRIES`` times at most).

Every request's path and ``Authorization`` header are recorded in ``requests``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fakes.http_fake import ThreadedHTTPFake
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.fakes.twilio_stream import FakeTwilioCaller, sid

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"
#: Times a callback answered ``5xx`` is tried again.
RETRIES = 3
#: ``answer_as`` values for calls nobody answers: the final ``CallStatus`` Twilio reports.
UNANSWERED = frozenset({"busy", "no-answer", "failed", "canceled"})


def twilio_error(code: int, message: str, status: int) -> dict:
    """Twilio's REST error body."""
    return {
        "code": code,
        "message": message,
        "more_info": MORE_INFO.format(code=code),
        "status": status,
    }


class FakeTwilioAPI(ThreadedHTTPFake):
    """``with FakeTwilioAPI() as api:`` then point ``TWILIO_API_URL`` (or a credential) at ``api.url``."""

    methods = ("GET", "POST")

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN):
        self.account_sid = account_sid
        self.auth_token = auth_token
        #: ``status`` of the account: 'active', 'suspended' or 'closed'.
        self.status = "active"
        self.friendly_name = "Acme Dental"
        self.requests: list[tuple[str, str]] = []
        #: ``(call_sid, form)`` of each accepted or refused call update; form values are lists.
        self.updates: list[tuple[str, dict[str, list[str]]]] = []
        #: CallSids the account has; None: any CallSid is a live call of this account.
        self.live_calls: set[str] | None = None
        self.on_update: Callable[[str, dict[str, list[str]]], None] | None = None
        #: CallSid → fields of its Call resource that ``GET .../Calls/{sid}.json`` answers.
        self.call_records: dict[str, dict] = {}
        #: Seconds between an accepted update taking effect (``on_update``) and its answer.
        self.answer_delay = 0.0
        self._failures: deque[tuple[int, dict]] = deque()
        self._lock = threading.Lock()
        #: Forms of the calls placed, in order.
        self.calls: list[dict[str, list[str]]] = []
        #: ``(HTTP status, Twilio code, message)``: refuse call requests with this error.
        self.refuse_calls: tuple[int, int, str] | None = None
        #: How placed calls are answered (``AnsweredBy``); None: they are not answered.
        self.answer_as: str | None = None
        #: Seconds between the stream's start and the AMD callback.
        self.amd_delay = 0.3
        #: μ-law audio the callee says as soon as the stream starts (a machine's greeting).
        self.callee_audio = b""
        #: Seconds between the stream's end and the ``completed`` callback (Twilio hangs up
        #: first; here it also keeps the callback off the moment our side writes the call's end).
        self.completed_delay = 0.5
        #: Answered calls by CallSid.
        self.answered: dict[str, AnsweredCall] = {}
        self._threads: list[threading.Thread] = []

    def __exit__(self, *exc) -> None:
        for call in list(self.answered.values()):
            call.hang_up()
        for thread in self._threads:
            thread.join(10)
        super().__exit__(*exc)

    def fail_update(
        self, status: int = 400, code: int = 21220, message: str = "Call is not in-progress."
    ) -> None:
        """The next call update gets Twilio's error body (a 5xx: an outage)."""
        self._failures.append((status, twilio_error(code, message, status)))

    def updates_of(self, call_sid: str) -> list[dict[str, list[str]]]:
        with self._lock:
            return [form for sid, form in self.updates if sid == call_sid]

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        authorization = request.headers.get("Authorization") or ""
        with self._lock:
            self.requests.append((request.path, authorization))
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if authorization != f"Basic {expected}":
            self.answer_json(request, 401, twilio_error(20003, "Authenticate", 401))
            return
        if request.command == "POST":
            if request.path.endswith("/Calls.json"):
                self._place_call(request)
            else:
                self._update_call(request)
            return
        call = self._CALL_PATH.match(request.path)
        if call is not None and call["account"] == self.account_sid:
            record = self.call_records.get(call["sid"])
            if record is None:
                message = f"The requested resource {request.path} was not found"
                self.answer_json(request, 404, twilio_error(20404, message, 404))
                return
            self.answer_json(request, 200, {**self._call(call["sid"], "completed"), **record})
            return
        if request.path != f"/2010-04-01/Accounts/{self.account_sid}.json":
            message = f"The requested resource {request.path} was not found"
            self.answer_json(request, 404, twilio_error(20404, message, 404))
            return
        self.answer_json(request, 200, self._account())

    def _account(self) -> dict:
        uri = f"/2010-04-01/Accounts/{self.account_sid}.json"
        return {
            "sid": self.account_sid,
            "owner_account_sid": self.account_sid,
            "friendly_name": self.friendly_name,
            "status": self.status,
            "type": "Full",
            "auth_token": self.auth_token,
            "date_created": "Thu, 26 Nov 2026 10:00:00 +0000",
            "date_updated": "Thu, 26 Nov 2026 10:00:00 +0000",
            "uri": uri,
            "subresource_uris": {"calls": uri.replace(".json", "/Calls.json")},
        }

    _CALL_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/]+)\.json$")

    def _update_call(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length).decode()
        match = self._CALL_PATH.match(request.path)
        if match is None or match["account"] != self.account_sid:
            message = f"The requested resource {request.path} was not found"
            self.answer_json(request, 404, twilio_error(20404, message, 404))
            return
        if "application/x-www-form-urlencoded" not in (request.headers.get("Content-Type") or ""):
            self.answer_json(request, 400, twilio_error(20001, "Invalid content type", 400))
            return
        sid, form = match["sid"], parse_qs(body, keep_blank_values=True)
        with self._lock:
            self.updates.append((sid, form))
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            self.answer_json(request, failure[0], failure[1])
            return
        if self.live_calls is not None and sid not in self.live_calls:
            message = f"The requested resource {request.path} was not found"
            self.answer_json(request, 404, twilio_error(20404, message, 404))
            return
        if "Twiml" in form and "Url" in form:
            message = "Twiml and Url cannot both be given"
            self.answer_json(request, 400, twilio_error(21205, message, 400))
            return
        if self.on_update is not None:
            self.on_update(sid, form)
        if self.answer_delay:
            time.sleep(self.answer_delay)
        status = "completed" if form.get("Status") == ["completed"] else "in-progress"
        self.answer_json(request, 200, self._call(sid, status))

    def _call(self, sid: str, status: str) -> dict:
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "status": status,
            "direction": "inbound",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
        }

    # -- outbound calls ------------------------------------------------------------------------

    def _place_call(self, request: BaseHTTPRequestHandler) -> None:
        if request.path != f"/2010-04-01/Accounts/{self.account_sid}/Calls.json":
            message = f"The requested resource {request.path} was not found"
            self.answer_json(request, 404, twilio_error(20404, message, 404))
            return
        length = int(request.headers.get("Content-Length") or 0)
        form = parse_qs(request.rfile.read(length).decode(), keep_blank_values=True)
        with self._lock:
            self.calls.append(form)
        if self.refuse_calls is not None:
            status, code, message = self.refuse_calls
            self.answer_json(request, status, twilio_error(code, message, status))
            return
        missing = [name for name in ("To", "From") if not form.get(name)]
        if not form.get("Url") and not form.get("Twiml"):
            missing.append("Url")
        if missing:
            message = f"Required parameter {missing[0]} missing."
            self.answer_json(request, 400, twilio_error(21201, message, 400))
            return
        call_sid = sid("CA")
        self.answer_json(request, 201, self._call_resource(call_sid, form))
        if self.answer_as is not None:
            call = AnsweredCall(self, call_sid, form, self.answer_as)
            self.answered[call_sid] = call
            thread = threading.Thread(target=call.run, name=f"fake-twilio-{call_sid}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _call_resource(self, call_sid: str, form: dict[str, list[str]]) -> dict:
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json"
        return {
            "sid": call_sid,
            "account_sid": self.account_sid,
            "to": form["To"][0],
            "from": form["From"][0],
            "status": "queued",
            "direction": "outbound-api",
            "answered_by": None,
            "date_created": "Fri, 04 Dec 2026 04:00:00 +0000",
            "uri": uri,
        }


@dataclass
class AnsweredCall:
    """One placed call as the fake carrier answers it (see the module docstring)."""

    api: FakeTwilioAPI
    call_sid: str
    form: dict[str, list[str]]
    answered_by: str
    #: The TwiML our voice webhook answered, its ``<Stream>`` URL and parameters.
    twiml: str = ""
    stream_url: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    caller: FakeTwilioCaller | None = None
    #: ``(callback, HTTP status)`` of every callback posted, in order.
    callbacks: list[tuple[str, int]] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    _seq: int = 0

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

    def say(self, audio: bytes) -> None:
        """The callee speaks ``audio`` (μ-law), sent as 20 ms frames at once."""
        assert self._loop is not None and self.caller is not None
        asyncio.run_coroutine_threadsafe(
            self.caller.stream_audio(audio, realtime=False), self._loop
        ).result(10)

    def wait(self, timeout: float = 20.0) -> None:
        assert self.done.wait(timeout), f"fake Twilio call {self.call_sid} did not finish"
        if self.error is not None:
            raise self.error

    def _field(self, name: str) -> str:
        return (self.form.get(name) or [""])[0]

    def _signed(self, url: str, params: dict[str, str]) -> dict[str, str]:
        signature = RequestValidator(self.api.auth_token).compute_signature(url, params)
        return {"X-Twilio-Signature": signature}

    def _base(self, status: str) -> dict[str, str]:
        return {
            "AccountSid": self.api.account_sid,
            "CallSid": self.call_sid,
            "From": self._field("From"),
            "To": self._field("To"),
            "Direction": "outbound-api",
            "CallStatus": status,
            "ApiVersion": "2010-04-01",
        }

    async def _post(self, client: httpx.AsyncClient, name: str, url: str, params: dict):
        """POST a signed callback; a ``5xx`` is tried again (up to ``RETRIES`` times, backing
        off), as our server asks of carriers when its database is busy."""
        for attempt in range(RETRIES + 1):
            response = await client.post(url, data=params, headers=self._signed(url, params))
            self.callbacks.append((name, response.status_code))
            if response.status_code < 500:
                break
            await asyncio.sleep(0.2 * 2**attempt)
        return response

    def failed_callbacks(self) -> list[tuple[str, int]]:
        """The callbacks whose last attempt was answered with an error."""
        last = dict(self.callbacks)
        return [(name, status) for name, status in last.items() if status >= 400]

    async def _status(self, client: httpx.AsyncClient, status: str, **extra) -> None:
        url = self._field("StatusCallback")
        if not url:
            return
        params = {**self._base(status), "SequenceNumber": str(self._seq), **extra}
        self._seq += 1
        await self._post(client, f"status:{status}", url, params)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(timeout=10) as client:
            await self._status(client, "initiated")
            await self._status(client, "ringing")
            if self.answered_by in UNANSWERED:
                # Nobody answers: no TwiML, no stream; the final status says why.
                await self._status(client, self.answered_by, CallDuration="0")
                return
            response = await self._post(
                client, "voice", self._field("Url"), self._base("in-progress")
            )
            self.twiml = response.text
            stream = ET.fromstring(self.twiml).find("./Connect/Stream")
            assert stream is not None, f"no <Connect><Stream> in {self.twiml!r}"
            self.stream_url = stream.get("url")
            self.parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
            await self._status(client, "in-progress")
            answered_at = time.monotonic()
            headers = self._signed(self.stream_url, {})
            async with connect(self.stream_url, additional_headers=headers) as ws:

                async def receive(timeout: float) -> str | None:
                    try:
                        return await asyncio.wait_for(ws.recv(), timeout)
                    except ConnectionClosed:
                        return None

                self.caller = FakeTwilioCaller(ws.send, receive, call_sid=self.call_sid)
                self.caller.account_sid = self.api.account_sid
                await self.caller.connected()
                await self.caller.start(self.parameters, call_sid=self.call_sid)
                self.started.set()
                if self.api.callee_audio:
                    await self.caller.stream_audio(self.api.callee_audio, realtime=False)
                await asyncio.sleep(self.api.amd_delay)
                amd_url = self._field("AsyncAmdStatusCallback")
                if amd_url:
                    params = {
                        "AccountSid": self.api.account_sid,
                        "CallSid": self.call_sid,
                        "AnsweredBy": self.answered_by,
                        "MachineDetectionDuration": str(int(self.api.amd_delay * 1000)),
                    }
                    await self._post(client, "amd", amd_url, params)
                await self.caller.closed.wait()
                await self.caller.aclose()
            await asyncio.sleep(self.api.completed_delay)
            duration = str(int(time.monotonic() - answered_at))
            await self._status(client, "completed", CallDuration=duration)
