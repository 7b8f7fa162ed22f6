"""The WebSocket transport of the provider legs (OpenAI Realtime, later ElevenLabs and Deepgram):
a lean client connection.

Why not ``websockets.asyncio.client``: a provider leg carries ~50 small messages per second each
way per call, and under 60 concurrent calls its per-message machinery (an async context manager
and a lock per ``send()``, drain checks, StreamReader/Assembler queueing and ``recv()`` per
received message) cost about 17 % of the event loop's CPU.

What is kept: the ``websockets`` library's sans-I/O core (``ClientProtocol``) does the opening
handshake and its checks, pings and pongs, fragmented messages, every error case and the close
handshake. This module moves bytes between that core and an asyncio transport, inside
``asyncio.Protocol`` callbacks: no task per connection; a send that the socket can take right away
is one synchronous ``transport.write``; a received message is one ``deque.append`` plus, when the
consumer is waiting, one future result.

What is not left to the library: the two kinds of frame that make up nearly all the traffic of an
open connection, framed here directly (RFC 6455 §5.2). The library parses every frame with a chain
of generators, an enum lookup and a dataclass (3.1 µs for a 370-byte audio event here) and builds
every sent frame the same way (1.9 µs, with a ``getrandom`` system call for its masking key); the
direct paths take about a third of that. Receiving: a whole, unfragmented, unmasked text or binary
frame without RSV bits, within ``max_size``, is delivered without the library; anything else (a
control frame, a fragment, anything invalid, UTF-8 that does not decode) is handed to the library
as whole frames, so its parser is always at a frame boundary when the direct path runs, and it
answers, reassembles or fails the connection exactly as before; once the connection is closing
the library gets every byte. Sending: a text or binary message is one masked frame whose masking
key comes from ``os.urandom``, drawn 256 keys at a time.

Proxies: as ``websockets.asyncio.client.connect`` does, the proxy that the environment names for
the URL (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) is used by default, through
the library's own HTTP ``CONNECT`` helper; SOCKS proxies are refused with a clear error (they would
need python-socks).

Left out on purpose: compression (permessage-deflate is never offered: small latency-critical
frames, CPU per frame), HTTP redirects and subprotocols.

Modules: ``client`` (``connect``: TCP/TLS, proxy, opening handshake), ``connection`` (the
``asyncio.Protocol``: sending, receiving, closing), ``framing`` (the frames read and built here),
``keepalive`` (pings on timers).
"""

from .client import connect
from .connection import Message, WebSocketConnection

__all__ = ["Message", "WebSocketConnection", "connect"]
