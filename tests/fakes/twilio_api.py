"""A fake of Twilio's REST API for tests: the account resource a key check reads.

``FakeTwilioAPI`` is a real HTTP server on 127.0.0.1, port 0, in a thread. It answers like Twilio
(docs/carriers/twilio.md; https://www.twilio.com/docs/iam/api/account):

* every request needs HTTP Basic auth with an account SID and its auth token; anything else is
  ``401 {"code": 20003, "message": "Authenticate", "more_info": ..., "status": 401}``;
* ``GET /2010-04-01/Accounts/{AccountSid}.json`` answers the account (``friendly_name``,
  ``status``, ``auth_token``... as Twilio does) when the SID is the authenticated one, else
  ``404`` with Twilio's ``20404`` body.

Every request's path and ``Authorization`` header are recorded in ``requests``.
"""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler

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

    methods = ("GET",)

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN):
        self.account_sid = account_sid
        self.auth_token = auth_token
        #: ``status`` of the account: 'active', 'suspended' or 'closed'.
        self.status = "active"
        self.friendly_name = "Acme Dental"
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        authorization = request.headers.get("Authorization") or ""
        with self._lock:
            self.requests.append((request.path, authorization))
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if authorization != f"Basic {expected}":
            self.answer_json(request, 401, twilio_error(20003, "Authenticate", 401))
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
