"""A fake of Deepgram's management REST API for tests: the projects list a key check reads.

``FakeDeepgramAPI`` is a real HTTP server on 127.0.0.1, port 0, in a thread (the streaming
``/v1/listen`` fake is ``tests/fakes/deepgram.py``). It answers like Deepgram
(https://developers.deepgram.com/reference/manage/projects/list):

* every request needs ``Authorization: Token <key>``; anything else is
  ``401 {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": ...}``;
* ``GET /v1/projects`` answers ``{"projects": [{"project_id", "name"}]}``.

Every request's path is recorded in ``paths``.
"""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler

from tests.fakes.http_fake import ThreadedHTTPFake

API_KEY = "dg-test-key-0123456789abcdef0123456789ab"


class FakeDeepgramAPI(ThreadedHTTPFake):
    """``with FakeDeepgramAPI() as api:`` then point a credential's API base URL at ``api.url``."""

    methods = ("GET",)

    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.projects = [{"project_id": str(uuid.uuid4()), "name": "Front desk"}]
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.paths.append(request.path)
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            self._error(request, 401, "INVALID_AUTH", "Invalid credentials.")
        elif request.path == "/v1/projects":
            self.answer_json(request, 200, {"projects": list(self.projects)})
        else:
            self._error(request, 404, "Not Found", f"No such endpoint: {request.path}")

    def _error(self, request, status: int, code: str, message: str) -> None:
        self.answer_json(
            request, status, {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}
        )
