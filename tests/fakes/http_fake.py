"""The plumbing every fake REST API shares: a real HTTP server on 127.0.0.1, port 0, in a thread.

A fake subclasses ``ThreadedHTTPFake``, says which ``methods`` it answers (others get http.server's
``501``) and implements ``_handle(request)``, where ``request`` is the
``BaseHTTPRequestHandler`` of one request. ``with Fake() as fake:`` serves it at ``fake.url``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out or went away: the fake records what matters


class ThreadedHTTPFake:
    """Base of the loopback HTTP fakes: serve ``_handle`` on ``url`` inside a ``with`` block."""

    #: The HTTP methods ``_handle`` answers.
    methods: tuple[str, ...] = ("GET",)
    #: "HTTP/1.1" for keep-alive connections and chunked bodies, as most vendors answer; every
    #: answer then needs a Content-Length or chunked encoding.
    protocol_version = "HTTP/1.0"
    #: Appended to the server's root to make ``url`` (e.g. "/v2" when clients expect it there).
    url_path = ""

    url = ""
    _server: ThreadingHTTPServer | None = None

    def __enter__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = fake.protocol_version

            def dispatch(self):
                fake._handle(self)

            def log_message(self, *args):
                pass

        for method in self.methods:
            setattr(Handler, f"do_{method}", Handler.dispatch)
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.url_path}"
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    @staticmethod
    def answer_json(request: BaseHTTPRequestHandler, status: int, body: object) -> None:
        """Answer ``status`` with ``body`` as JSON, with a Content-Length."""
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
