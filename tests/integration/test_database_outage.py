"""A real PostgreSQL goes silent under real daphne and uvicorn processes, then comes back.

The server reaches PostgreSQL through a proxy in the test that can stop passing bytes: new
connections hang and established ones (the pool's) stall, as when the database host is cut off.
Readiness answers 503 within ``HEALTH_CHECK_TIMEOUT``, liveness 200, the voice webhook the
apology within ``WEBHOOK_DEADLINE``; once the bytes flow again readiness is 200 again.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.servers.running import SERVERS, seed, server_env, start_server
from tests.servers.test_outages import MARGIN, assert_live, request, twilio_voice_webhook

pytestmark = pytest.mark.integration

HEALTH_CHECK_TIMEOUT = 1.0
WEBHOOK_DEADLINE = 3.0


class SwitchableProxy:
    """A TCP proxy to ``target``; ``cut()`` stops every byte both ways, ``restore()`` resumes."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._server.close()
        self._flowing.set()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._flowing.wait()
        upstream = socket.create_connection(self.target)
        self._sockets.append(upstream)
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        self._pipe(upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def scratch_database(postgres_database_url):
    """A new, empty database on the integration PostgreSQL: ``(url parts, name)``; dropped after."""
    parts = urlsplit(postgres_database_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    name = f"outage_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    yield parts, name
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("server", SERVERS)
def test_postgresql_cut_off_and_back(server, start_process, tmp_path, scratch_database):
    parts, name = scratch_database
    proxy = SwitchableProxy((parts.hostname, parts.port or 5432))
    try:
        via_proxy = parts._replace(
            netloc=f"{parts.username}@127.0.0.1:{proxy.port}", path=f"/{name}"
        )
        env = server_env(tmp_path)
        env.update(
            DATABASE_URL=urlunsplit(via_proxy),
            VOICEAGENTS_HEALTH_CHECK_TIMEOUT=str(HEALTH_CHECK_TIMEOUT),
            VOICEAGENTS_WEBHOOK_DEADLINE=str(WEBHOOK_DEADLINE),
        )
        seed(env)
        port, process = start_server(start_process, server, env)

        status, body, _ = request(port, "GET", "/healthz/ready")
        assert (status, json.loads(body)["database"]) == (200, "ok"), body
        status, body, _ = twilio_voice_webhook(port)
        assert status == 200 and b"<Stream" in body, body  # connected: PostgreSQL answers

        proxy.cut()
        status, body, took = request(port, "GET", "/healthz/ready")
        assert (status, json.loads(body)["database"]) == (503, "down"), body
        assert took < HEALTH_CHECK_TIMEOUT + MARGIN
        assert_live(port)
        status, body, took = twilio_voice_webhook(port)
        assert status == 200, body
        assert b"<Say>" in body and b"<Hangup />" in body and b"<Stream" not in body, body
        assert took < WEBHOOK_DEADLINE + MARGIN

        proxy.restore()
        deadline = time.monotonic() + 60
        while True:
            status, body, _ = request(port, "GET", "/healthz/ready")
            if status == 200:
                break
            assert time.monotonic() < deadline, f"not ready again after the outage: {body!r}"
            time.sleep(0.5)
        process.check_alive()
    finally:
        proxy.close()
