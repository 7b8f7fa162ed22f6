"""Just enough HTTP/1.1 and WebSocket (RFC 6455) for the load generator and the fake provider.

Both bench processes drive hundreds of sockets from one core, so they skip general-purpose
libraries: frames are built and parsed here with a few slices, inside ``asyncio.Protocol``
callbacks (no task per message). What is supported is exactly what the bench needs: text, ping,
pong and close frames, fragmented messages, 7/16/64-bit lengths, masking, no extensions.

Client frames carry an all-zero masking key. RFC 6455 wants an unpredictable key (it protects
proxies from cache poisoning, which cannot happen on loopback); servers just XOR with it, so
a zero key is valid on the wire and spares the generator a per-frame XOR.
"""

from __future__ import annotations

import base64
import hashlib
import struct

try:  # the C helper that the websockets package ships
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets is a dependency of the project

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_ZERO_KEY = b"\0\0\0\0"
_HEAD_END = b"\r\n\r\n"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(payload: bytes, opcode: int = OP_TEXT, *, mask: bool = False) -> bytes:
    """One final frame; ``mask`` for client-to-server frames (zero key, payload unchanged)."""
    n = len(payload)
    b0 = 0x80 | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    return head + _ZERO_KEY + payload if mask else head + payload


def close_frame(code: int = 1000, *, mask: bool = False) -> bytes:
    return frame(struct.pack("!H", code), OP_CLOSE, mask=mask)


class FrameReader:
    """Incremental frame parser: ``feed(bytes)`` returns complete ``(opcode, payload)`` messages."""

    __slots__ = ("buf", "_frag_op", "_frags")

    def __init__(self) -> None:
        self.buf = bytearray()
        self._frag_op: int | None = None
        self._frags: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            at = pos + 2
            if length == 126:
                if size - at < 2:
                    break
                length = (buf[at] << 8) | buf[at + 1]
                at += 2
            elif length == 127:
                if size - at < 8:
                    break
                length = int.from_bytes(buf[at : at + 8], "big")
                at += 8
            key = None
            if b1 & 0x80:
                if size - at < 4:
                    break
                key = bytes(buf[at : at + 4])
                at += 4
            if size - at < length:
                break
            payload = bytes(buf[at : at + length])
            if key is not None and key != _ZERO_KEY:
                payload = apply_mask(payload, key)
            pos = at + length
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode == OP_CONT:
                self._frags.append(payload)
                if fin and self._frag_op is not None:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op, self._frags = None, []
            elif not fin and opcode in (OP_TEXT, OP_BINARY):
                self._frag_op, self._frags = opcode, [payload]
            else:
                out.append((opcode, payload))
        if pos:
            del buf[:pos]
        return out


def split_head(buf: bytearray) -> tuple[bytes, bytes] | None:
    """``(head, rest)`` once ``buf`` holds a whole HTTP head, else None."""
    end = buf.find(_HEAD_END)
    if end < 0:
        return None
    return bytes(buf[:end]), bytes(buf[end + 4 :])


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the headers (lower-cased names) of an HTTP head."""
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def client_handshake(host: str, path: str, headers: dict[str, str]) -> tuple[bytes, str]:
    """The upgrade request of a client, and the ``Sec-WebSocket-Accept`` value to expect."""
    key = base64.b64encode(
        hashlib.sha1(repr((host, path, id(headers))).encode()).digest()[:16]
    ).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), accept_key(key)


def server_accept(headers: dict[str, str]) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(headers.get('sec-websocket-key', ''))}\r\n\r\n"
    ).encode("latin-1")


def http_response(status: int, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body
