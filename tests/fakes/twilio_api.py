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

Every request's path and ``Authorization`` header are recorded in ``requests``.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from tests.fakes.http_fake import ThreadedHTTPFake
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


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
