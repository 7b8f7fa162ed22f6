"""One TLS context per process, shared by every client we open.

Building an ``ssl.SSLContext`` loads the CA bundle: 20–40 ms of CPU, spent on the event loop
when a client is made there, while every live call's audio waits (measured with the call
benchmark: a new ``httpx.AsyncClient`` per ElevenLabs call was a quarter of the server's CPU
while 100 calls started). A context is safe to share between connections and threads, so each
kind is built once, on first use.
"""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def websocket_context() -> ssl.SSLContext:
    """For ``wss://`` provider sockets: the system's trust store, as ``ssl`` defaults to."""
    return ssl.create_default_context()


@cache
def http_context() -> ssl.SSLContext:
    """For REST clients: httpx's own default (certifi's bundle, ``SSL_CERT_FILE`` honoured)."""
    return httpx.create_ssl_context()


def async_client(**options) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` on the shared context (``verify`` may still be given)."""
    options.setdefault("verify", http_context())
    return httpx.AsyncClient(**options)


def client(**options) -> httpx.Client:
    """A synchronous ``httpx.Client`` on the shared context."""
    options.setdefault("verify", http_context())
    return httpx.Client(**options)
