"""Listening sockets of ``voiceagents.serve``: one per worker where the kernel balances them.

On Linux, sockets that set ``SO_REUSEPORT`` before binding the same (host, port) form a group,
and the kernel hands each new connection to one of them by a hash of its addresses. Each worker
then accepts only what the kernel gave it: no accept race, in which the busiest worker (the one
awake) keeps winning (a measured finding with one socket shared by uvicorn's ``--workers``:
nearly every call on one worker under load). A worker that stops closes its socket and leaves
the group, so new connections go to the others.

Elsewhere ``SO_REUSEPORT`` is missing or does not balance (BSD and macOS hand every connection to
one socket), so the workers share one socket that the supervisor binds.
"""

from __future__ import annotations

import socket
import sys

#: True where one socket per worker is balanced by the kernel.
BALANCED = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple]:
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return family, address


def bind(host: str, port: int, *, reuse_port: bool, backlog: int | None = None) -> socket.socket:
    """A TCP socket bound to (host, port); listening when ``backlog`` is given.

    With ``reuse_port``, other sockets of this user may bind the same address (``BALANCED``).
    """
    family, address = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
