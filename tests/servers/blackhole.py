"""A TCP server that accepts connections and never answers: a database or Redis that hangs.

Worse than a closed port (refused at once): clients wait for their own timeouts, which is what
a stuck PostgreSQL or Redis does to a process.
"""

from __future__ import annotations

import socket
import threading


class Blackhole:
    """Listens on 127.0.0.1 (port 0); ``accepted`` counts the connections it holds open."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._held)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._held.append(conn)

    def __enter__(self) -> Blackhole:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # close() alone leaves accept() blocked (Linux): the join then waited its full 5 s.
        # shutdown() wakes it with an error.
        self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the accept thread did not stop"
        with self._lock:
            for conn in self._held:
                conn.close()
