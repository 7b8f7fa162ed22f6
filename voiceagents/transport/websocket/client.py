"""``connect``: open a client connection (TCP or TLS, through a proxy if the environment names
one) and complete the opening handshake."""

from __future__ import annotations

import asyncio
import functools
import os
import ssl as ssl_module
from collections.abc import Iterable, Mapping

from websockets.asyncio.client import connect_http_proxy
from websockets.client import ClientProtocol
from websockets.exceptions import (
    ProxyError,
)
from websockets.http11 import USER_AGENT
from websockets.proxy import get_proxy, parse_proxy
from websockets.uri import WebSocketURI, parse_uri

from ..tls import websocket_context
from .connection import WebSocketConnection


async def connect(
    url: str,
    *,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    open_timeout: float | None = 10.0,
    max_size: int | None = 2**20,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    max_buffer: int = 4 * 2**20,
    ssl: ssl_module.SSLContext | None = None,
    proxy: str | bool | None = True,
) -> WebSocketConnection:
    """Open a ``ws://`` or ``wss://`` connection and complete the opening handshake.

    ``ssl`` is the TLS context for ``wss://`` (default: the process-wide one of ``transport.tls``).
    ``proxy``: ``True`` uses the proxy the environment names for the URL, a URL
    (``http://user:pass@host:port``) uses that HTTP(S) proxy, ``None``/``False`` connects directly.
    The rest mirrors ``websockets.asyncio.client.connect``; ``max_buffer`` is how much received
    data (in bytes or characters) may wait for the consumer before reading pauses.

    Raises what ``websockets.asyncio.client.connect`` raises: ``OSError`` when the server cannot
    be reached, ``InvalidStatus`` (``.response.status_code``/``.body``) when it refuses the
    upgrade, another ``InvalidHandshake`` for a bad response, ``TimeoutError`` after
    ``open_timeout``; ``ProxyError`` (an ``InvalidHandshake``) when the proxy refuses.
    """
    uri = parse_uri(url)
    if proxy is True:
        proxy = _environment_proxy(uri.secure, uri.host, uri.port, _proxy_variables())
    if uri.secure:
        if ssl is None:
            ssl = websocket_context()
    elif ssl is not None:
        raise ValueError("an ssl context needs a wss:// URL")
    loop = asyncio.get_running_loop()

    def factory() -> WebSocketConnection:
        # extensions=None: the handshake offers no extension, so no compression.
        return WebSocketConnection(
            ClientProtocol(uri, max_size=max_size),
            max_size=max_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_buffer=max_buffer,
        )

    transport = None
    try:
        async with asyncio.timeout(open_timeout):
            if proxy:
                transport, connection = await _connect_through_proxy(str(proxy), uri, ssl, factory)
            else:
                transport, connection = await loop.create_connection(
                    factory,
                    uri.host,
                    uri.port,
                    ssl=ssl if uri.secure else None,
                    server_hostname=uri.host if uri.secure else None,
                )
            await connection._handshake(headers)
    except TimeoutError as exc:
        if transport is not None:
            transport.abort()
        raise TimeoutError("timed out during opening handshake") from exc
    except BaseException:
        if transport is not None:
            transport.abort()
        raise
    connection._start_keepalive()
    return connection


def _proxy_variables() -> tuple:
    """The environment's proxy settings (``*_proxy`` in any case, ``no_proxy`` among them)."""
    if os.supports_bytes_environ:  # no decoding of every name and value
        return tuple(item for item in os.environb.items() if b"proxy" in item[0].lower())
    return tuple(item for item in os.environ.items() if "proxy" in item[0].lower())


@functools.lru_cache(maxsize=64)
def _environment_proxy(secure: bool, host: str, port: int, _variables: tuple) -> str | None:
    """``websockets.proxy.get_proxy`` for this address under these proxy settings: it reads the
    whole environment four times (~75 µs, at every provider connection), this once."""
    return get_proxy(WebSocketURI(secure, host, port, "/", ""))


async def _connect_through_proxy(
    proxy: str, uri: WebSocketURI, ssl: ssl_module.SSLContext | None, factory
) -> tuple[asyncio.Transport, WebSocketConnection]:
    """An HTTP(S) ``CONNECT`` tunnel (the library's helper), then TLS to the server inside it."""
    parsed = parse_proxy(proxy)
    if not parsed.scheme.startswith("http"):
        raise ProxyError(f"{parsed.scheme} proxies are not supported here; use an HTTP(S) proxy")
    proxy_tls = websocket_context() if parsed.scheme == "https" else None
    transport = await connect_http_proxy(parsed, uri, user_agent_header=USER_AGENT, ssl=proxy_tls)
    connection = factory()
    transport.set_protocol(connection)
    try:
        if ssl is not None:
            transport = await asyncio.get_running_loop().start_tls(
                transport, connection, ssl, server_hostname=uri.host
            )
    except BaseException:
        transport.abort()
        raise
    connection.connection_made(transport)
    return transport, connection
