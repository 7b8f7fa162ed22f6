"""A customer's webhook endpoint, for the call webhook's tests: it records each request and
answers the statuses it was given, in turn; ``verify`` checks a request as the documented receiver
code does (docs/call-webhook.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

from voiceagents.call_webhook import SIGNATURE_HEADER

from .http_fake import ThreadedHTTPFake

SECRET = "whsec-test-0123456789"


class Receiver(ThreadedHTTPFake):
    """The customer's endpoint: answers ``statuses`` in turn (the last one from then on)."""

    methods = ("POST",)

    def __init__(self, *statuses: int):
        self.statuses = list(statuses) or [200]
        self.requests: list[dict] = []
        self._lock = threading.Lock()

    def _handle(self, request):
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        with self._lock:
            self.requests.append(
                {"path": request.path, "headers": dict(request.headers), "body": body}
            )
            status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        self.answer_json(request, status, {"ok": status < 300})


def verify(request: dict, secret: str = SECRET, tolerance: int = 300) -> dict:
    """What a receiver does with the documented scheme (docs/call-webhook.md)."""
    fields = dict(part.split("=", 1) for part in request["headers"][SIGNATURE_HEADER].split(","))
    timestamp = int(fields["t"])
    assert abs(time.time() - timestamp) < tolerance
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + request["body"], hashlib.sha256)
    assert hmac.compare_digest(fields["v1"], expected.hexdigest())
    return json.loads(request["body"])
