"""The lean WebSocket client (voiceagents/transport/websocket/) against real loopback servers.

Servers are the ``websockets`` library's own (``websockets.asyncio.server.serve``), except where a
misbehaving peer is needed (never answers the handshake, stops reading or answering pings): those
are raw asyncio TCP servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import random
import re
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from voiceagents.transport.websocket import connect

# -- helpers -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ws_server(handler, **kwargs):
    async with serve(handler, "127.0.0.1", 0, **kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        scheme = "wss" if kwargs.get("ssl") else "ws"
        yield f"{scheme}://127.0.0.1:{port}/path?x=1"


@contextlib.asynccontextmanager
async def raw_server(on_connect):
    """A plain TCP server; the writers it was given are closed on exit."""
    writers = []

    async def handle(reader, writer):
        writers.append(writer)
        await on_connect(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


async def accept_then_stall(reader, writer):
    """Complete the WebSocket handshake, then never read nor answer anything again."""
    request = await reader.readuntil(b"\r\n\r\n")
    key = re.search(rb"(?i)sec-websocket-key: *(\S+)", request).group(1).decode()
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def wait_until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


# -- handshake ---------------------------------------------------------------------------------


async def test_handshake_sends_our_headers_and_offers_no_compression():
    seen = {}

    async def handler(ws):
        seen["headers"] = ws.request.headers
        seen["path"] = ws.request.path
        await ws.send("welcome")  # may arrive in the same segment as the 101 response
        await ws.wait_closed()

    async with ws_server(handler) as url:
        conn = await connect(url, headers={"Authorization": "Bearer sk-1", "X-Extra": "yes"})
        assert await conn.recv() == "welcome"
        await conn.close()
    assert seen["headers"]["Authorization"] == "Bearer sk-1"
    assert seen["headers"]["X-Extra"] == "yes"
    assert "Sec-WebSocket-Extensions" not in seen["headers"]
    assert seen["path"] == "/path?x=1"
    assert conn.response.status_code == 101


async def test_http_refusal_raises_invalid_status_with_status_and_body():
    def refuse(connection, request):
        return Response(401, "Unauthorized", Headers(), b'{"error": "bad key"}')

    async with ws_server(echo, process_request=refuse) as url:
        with pytest.raises(InvalidStatus) as excinfo:
            await connect(url)
    assert excinfo.value.response.status_code == 401
    assert excinfo.value.response.body == b'{"error": "bad key"}'


async def test_a_server_that_never_answers_the_handshake_times_out():
    async def silent(reader, writer):
        await reader.read()  # swallow the request, answer nothing

    async with raw_server(silent) as url:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await connect(url, open_timeout=0.3)
        assert loop.time() - started < 1.5


async def test_unreachable_server_raises_oserror():
    with pytest.raises(OSError):
        await connect("ws://127.0.0.1:1/", open_timeout=2)


async def test_ssl_context_is_refused_for_ws_urls():
    with pytest.raises(ValueError, match="wss://"):
        await connect("ws://127.0.0.1:1/", ssl=ssl.create_default_context())


# -- messages ----------------------------------------------------------------------------------


async def test_text_and_binary_round_trip_with_write_and_send():
    async with ws_server(echo) as url:
        conn = await connect(url)
        conn.write('{"type":"input_audio_buffer.append","audio":"AAAA"}')
        await conn.send("héllo ✓")
        conn.write(b"\x00\x01\x02")
        assert await conn.recv() == '{"type":"input_audio_buffer.append","audio":"AAAA"}'
        assert await conn.recv() == "héllo ✓"
        assert await conn.recv() == b"\x00\x01\x02"
        await conn.close()


async def test_fragmented_message_is_reassembled():
    parts = [f"{i:03d}" + "x" * 40_000 for i in range(20)]

    async def handler(ws):
        await ws.send(iter(parts))  # an iterable is sent as one message in fragments
        await ws.send(iter([b"ab", b"cd"]))
        await ws.wait_closed()

    async with ws_server(handler) as url:
        conn = await connect(url)
        assert await conn.recv() == "".join(parts)
        assert await conn.recv() == b"abcd"
        await conn.close()


@pytest.mark.parametrize("fragmented", [False, True])
async def test_message_over_max_size_closes_with_1009(fragmented):
    server_close = {}

    async def handler(ws):
        await ws.send(iter(["y" * 600, "y" * 600]) if fragmented else "y" * 1200)
        await ws.wait_closed()
        server_close["code"] = ws.close_code

    async with ws_server(handler) as url:
        conn = await connect(url, max_size=1000)
        with pytest.raises(ConnectionClosedError) as excinfo:
            await conn.recv()
    assert excinfo.value.sent.code == 1009
    assert server_close["code"] == 1009


async def test_invalid_utf8_text_closes_with_1007():
    async def handler(ws):
        await ws.send(b"\xff\xfe", text=True)
        await ws.wait_closed()

    async with ws_server(handler) as url:
        conn = await connect(url)
        with pytest.raises(ConnectionClosedError) as excinfo:
            await conn.recv()
    assert excinfo.value.sent.code == 1007


# -- frames read and written without the library (the hot path) ---------------------------------
#
# A raw server runs the library's own server side (``ServerProtocol``): it answers the handshake,
# serializes what it sends, and parses, unmasks and checks everything the client sends.


class LibraryServer:
    """A raw TCP peer whose WebSocket side is ``websockets.server.ServerProtocol``."""

    def __init__(self):
        self.protocol = ServerProtocol()
        self.writer = None
        self.received = []  # frames the client sent, as the library parsed them
        self.raw = bytearray()  # the bytes the client sent after its handshake request
        self.ready = asyncio.Event()

    async def on_connect(self, reader, writer):
        self.writer = writer
        self.reader = reader
        request = await reader.readuntil(b"\r\n\r\n")
        self.protocol.receive_data(request)
        (request_event,) = self.protocol.events_received()
        self.protocol.send_response(self.protocol.accept(request_event))
        self.response_head = b"".join(self.protocol.data_to_send())
        self.ready.set()

    async def read_frames(self, count, timeout=5.0):
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                data = await self.reader.read(65536)
                assert data, "the client closed the connection"
                self.raw += data
                self.protocol.receive_data(data)
                assert self.protocol.parser_exc is None, self.protocol.parser_exc
                self.received.extend(self.protocol.events_received())
        return self.received


def mask_keys(stream):
    """The masking key of each client frame in ``stream`` (RFC 6455 §5.2 header layout)."""
    keys, pos = [], 0
    while pos < len(stream):
        length, pos = stream[pos + 1] & 0x7F, pos + 2
        if length == 126:
            length, pos = int.from_bytes(stream[pos : pos + 2], "big"), pos + 2
        elif length == 127:
            length, pos = int.from_bytes(stream[pos : pos + 8], "big"), pos + 8
        keys.append(stream[pos : pos + 4])
        pos += 4 + length
    return keys


def server_frame(opcode, data, fin=True):
    return Frame(opcode, data, fin=fin).serialize(mask=False)


def random_traffic(rng):
    """Server frames of every kind the client must handle, the messages they make, the pings."""
    frames, messages, pings = [], [], []
    for index in range(80):
        kind = rng.choice(["text", "text", "binary", "fragmented", "ping", "sized"])
        if kind == "text":
            text = f"{index}:" + "é€😀x"[rng.randrange(4)] * rng.randrange(0, 300)
            frames.append(server_frame(Opcode.TEXT, text.encode()))
            messages.append(text)
        elif kind == "binary":
            data = rng.randbytes(rng.randrange(0, 300))
            frames.append(server_frame(Opcode.BINARY, data))
            messages.append(data)
        elif kind == "fragmented":
            parts = [f"{index}-{n}€".encode() for n in range(rng.randrange(2, 5))]
            frames.append(server_frame(Opcode.TEXT, parts[0], fin=False))
            for n, part in enumerate(parts[1:], 2):
                if rng.random() < 0.5:  # control frames may come between fragments
                    ping = f"p{index}.{n}".encode()
                    frames.append(server_frame(Opcode.PING, ping))
                    pings.append(ping)
                frames.append(server_frame(Opcode.CONT, part, fin=n == len(parts)))
            messages.append(b"".join(parts).decode())
        elif kind == "ping":
            ping = f"ping {index}".encode()
            frames.append(server_frame(Opcode.PING, ping))
            pings.append(ping)
        else:  # the 16- and 64-bit length forms, at their edges
            size = rng.choice([125, 126, 127, 65535, 65536, 70000])
            data = bytes([index % 256]) * size
            frames.append(server_frame(Opcode.BINARY, data))
            messages.append(data)
    return frames, messages, pings


@pytest.mark.parametrize("seed", range(6))
async def test_every_frame_arrives_whole_and_in_order_however_reads_cut_the_stream(seed):
    """Reads cut anywhere (inside headers, lengths, payloads, UTF-8 sequences, and right after
    the handshake response, whose read also carries the first frames): the same messages, in
    order, and every ping answered, as the library alone would."""
    rng = random.Random(seed)
    frames, messages, pings = random_traffic(rng)
    server = LibraryServer()
    async with raw_server(server.on_connect) as url:
        connecting = asyncio.ensure_future(connect(url))
        await server.ready.wait()
        stream = server.response_head + b"".join(frames)
        # Cut points: many tiny reads near the start (the handshake's end, the first headers),
        # then random ones; one write per piece, each read by the client before the next.
        cuts = sorted(
            {rng.randrange(len(server.response_head) - 3, len(server.response_head) + 40)}
            | {rng.randrange(1, len(stream)) for _ in range(120)}
        )
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        pieces[0:2] = [pieces[0] + pieces[1]]  # the response and the first frame bytes together
        for piece in pieces:
            server.writer.write(piece)
            await server.writer.drain()
            await asyncio.sleep(0.0005)
        conn = await connecting
        received = [await conn.recv() for _ in messages]
        assert received == messages
        pongs = await server.read_frames(len(pings))
        assert [(frame.opcode, frame.data) for frame in pongs] == [
            (Opcode.PONG, ping) for ping in pings
        ]


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_sent_frames_are_masked_valid_frames_with_fresh_keys(kind):
    """What write() frames itself, the library's server side accepts (it refuses unmasked client
    frames), at every length form, and no masking key repeats across 600 frames (three draws of
    the key pool)."""
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 70000]
    sizes += random.Random(1).choices(range(400), k=592)
    server = LibraryServer()
    async with raw_server(server.on_connect) as url:
        connecting = asyncio.ensure_future(connect(url))
        await server.ready.wait()
        server.writer.write(server.response_head)
        conn = await connecting
        sent = []
        for n, size in enumerate(sizes):
            if kind == "text":
                message = (f"{n}é" * size)[:size]
            else:
                message = bytes([n % 256]) * size
            conn.write(message)
            sent.append(message)
        frames = await server.read_frames(len(sent))
        opcode = Opcode.TEXT if kind == "text" else Opcode.BINARY
        assert [frame.opcode for frame in frames] == [opcode] * len(sent)
        assert [frame.data for frame in frames] == [
            m.encode() if isinstance(m, str) else m for m in sent
        ]
        assert all(frame.fin and not frame.rsv1 for frame in frames)
    keys = mask_keys(bytes(server.raw))
    assert len(keys) == len(sent)
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    "frames, delivered",
    [
        pytest.param(
            [server_frame(Opcode.TEXT, b"fine"), Frame(Opcode.TEXT, b"x").serialize(mask=True)],
            ["fine"],
            id="a masked server frame",
        ),
        pytest.param(
            [
                server_frame(Opcode.TEXT, b"first half", fin=False),
                server_frame(Opcode.TEXT, b"not a continuation"),
            ],
            [],
            id="a new message inside a fragmented one",
        ),
    ],
)
async def test_protocol_violations_fail_the_connection_with_1002(frames, delivered):
    server = LibraryServer()
    async with raw_server(server.on_connect) as url:
        # This server never closes its side: do not wait 10 s for it after failing.
        connecting = asyncio.ensure_future(connect(url, close_timeout=0.1))
        await server.ready.wait()
        server.writer.write(server.response_head + b"".join(frames))
        conn = await connecting
        assert [await conn.recv() for _ in delivered] == delivered
        with pytest.raises(ConnectionClosedError) as excinfo:
            await conn.recv()
    assert excinfo.value.sent.code == 1002


async def test_a_frame_cut_short_by_the_end_of_the_stream_is_reported_as_abnormal():
    server = LibraryServer()
    async with raw_server(server.on_connect) as url:
        connecting = asyncio.ensure_future(connect(url))
        await server.ready.wait()
        server.writer.write(
            server.response_head
            + server_frame(Opcode.TEXT, b"whole")
            + server_frame(Opcode.TEXT, b"cut short")[:-3]
        )
        conn = await connecting
        assert await conn.recv() == "whole"
        server.writer.write_eof()
        with pytest.raises(ConnectionClosedError) as excinfo:
            await conn.recv()
    assert excinfo.value.rcvd is None  # no close frame: 1006, abnormal closure
    assert isinstance(excinfo.value.__cause__, EOFError)


# -- closing -----------------------------------------------------------------------------------


async def test_server_close_with_1011_raises_with_its_code_and_reason():
    async def handler(ws):
        await ws.send("last words")
        await ws.close(1011, "internal error")

    async with ws_server(handler) as url:
        conn = await connect(url)
        received = []
        with pytest.raises(ConnectionClosedError) as excinfo:
            async for message in conn:
                received.append(message)
    assert received == ["last words"]
    assert (excinfo.value.rcvd.code, excinfo.value.rcvd.reason) == (1011, "internal error")
    assert (conn.close_code, conn.close_reason) == (1011, "internal error")
    with pytest.raises(ConnectionClosedError):
        conn.write("too late")


async def test_clean_close_ends_the_iteration():
    async def handler(ws):
        for i in range(3):
            await ws.send(str(i))
        await ws.close()

    async with ws_server(handler) as url:
        conn = await connect(url)
        assert [message async for message in conn] == ["0", "1", "2"]
        assert conn.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await conn.recv()
        with pytest.raises(ConnectionClosed):
            await conn.send("too late")


async def test_our_close_runs_the_handshake_wakes_the_reader_and_is_idempotent():
    server_close = {}

    async def handler(ws):
        await ws.wait_closed()
        server_close["code"] = ws.close_code

    async with ws_server(handler) as url:
        conn = await connect(url)
        reader = asyncio.ensure_future(conn.recv())
        await asyncio.sleep(0.02)
        await conn.close()
        await conn.close()
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(reader, 1)
        assert conn.state is State.CLOSED
        await wait_until(lambda: "code" in server_close)
    assert server_close["code"] == 1000


async def test_close_gives_up_after_close_timeout_when_the_peer_does_not_answer():
    async with raw_server(accept_then_stall) as url:
        conn = await connect(url, close_timeout=0.2, ping_interval=None)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(conn.close(), 2)
        assert 0.15 < loop.time() - started < 1.5
        assert conn.state is State.CLOSED


# -- keepalive ---------------------------------------------------------------------------------


async def test_pings_from_the_server_are_answered_without_a_reader():
    connections = []

    async def handler(ws):
        connections.append(ws)
        await ws.wait_closed()

    # The server closes the connection (1011) if a pong is 50 ms late.
    async with ws_server(handler, ping_interval=0.05, ping_timeout=0.05) as url:
        conn = await connect(url, ping_interval=None)
        await asyncio.sleep(0.4)  # several intervals, nobody calling recv()
        # Still open on both sides: the server got every pong in time.
        assert conn.state is State.OPEN
        assert connections[0].state is State.OPEN
        await conn.close()


async def test_our_pings_keep_a_live_connection_open():
    async with ws_server(echo) as url:
        conn = await connect(url, ping_interval=0.05, ping_timeout=0.05)
        await asyncio.sleep(0.4)
        assert conn.state is State.OPEN
        await conn.send("still here")
        assert await conn.recv() == "still here"
        await conn.close()


async def test_keepalive_closes_the_connection_when_the_peer_stops_answering():
    async with raw_server(accept_then_stall) as url:
        conn = await connect(url, ping_interval=0.05, ping_timeout=0.1, close_timeout=0.1)
        with pytest.raises(ConnectionClosedError) as excinfo:
            await asyncio.wait_for(conn.recv(), 2)
    assert excinfo.value.sent.code == 1011
    assert excinfo.value.sent.reason == "keepalive ping timeout"
    assert excinfo.value.rcvd is None


# -- flow control ------------------------------------------------------------------------------


async def test_send_waits_when_the_peer_stops_reading():
    chunk = "z" * 65_536
    async with raw_server(accept_then_stall) as url:
        conn = await connect(url, ping_interval=None)
        sent = 0

        async def flood():
            nonlocal sent
            for _ in range(1000):  # 64 MB: far more than the kernel buffers take
                await conn.send(chunk)
                sent += 1

        task = asyncio.ensure_future(flood())
        try:
            # The kernel's socket buffers fill up first (a few MB on loopback), then ours.
            await wait_until(lambda: conn.writing_paused, timeout=10)
            await asyncio.sleep(0.1)
            before = sent
            await asyncio.sleep(0.2)
            assert sent == before and not task.done()  # the sender waits...
            # ...and the transport holds at most about its high-water mark plus one message.
            assert conn.transport.get_write_buffer_size() < 2 * 65_536 + len(chunk)
        finally:
            task.cancel()
            conn.transport.abort()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_reading_pauses_when_the_consumer_falls_behind_and_resumes_when_drained():
    count = 2000
    progress = {"sent": 0}

    async def handler(ws):
        for i in range(count):
            await ws.send(f"{i:05d}" + "m" * 10_000)  # 20 MB in all: more than the kernel buffers
            progress["sent"] += 1
        await ws.close()

    async with ws_server(handler) as url:
        conn = await connect(url, max_buffer=256 * 1024)
        await wait_until(lambda: not conn.transport.is_reading())
        await asyncio.sleep(0.2)
        assert progress["sent"] < count  # the server is held back by TCP, not buffered here
        received = [message[:5] async for message in conn]
    assert received == [f"{i:05d}" for i in range(count)]


# -- TLS ---------------------------------------------------------------------------------------


def self_signed_certificate(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


async def test_wss_round_trip_and_certificate_verification(tmp_path):
    server_ssl, client_ssl = self_signed_certificate(tmp_path)
    async with ws_server(echo, ssl=server_ssl) as url:
        assert url.startswith("wss://")
        conn = await connect(url, ssl=client_ssl)
        await conn.send("over TLS")
        assert await conn.recv() == "over TLS"
        await conn.close()
        assert conn.close_code == 1000
        # The default context doesn't trust a self-signed certificate.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(url)


# -- proxies ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connect_proxy(status: bytes = b"200 Connection established"):
    """A loopback HTTP CONNECT proxy that tunnels bytes both ways; yields its URL and requests."""
    requests: list[bytes] = []

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        requests.append(request)
        target = re.match(rb"CONNECT ([^ ]+):(\d+) HTTP/1.1", request)
        if not status.startswith(b"200") or target is None:
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(
            target.group(1).decode(), int(target.group(2))
        )
        writer.write(b"HTTP/1.1 " + status + b"\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://user:secret@127.0.0.1:{port}", requests
    finally:
        server.close()


async def test_connects_through_an_http_connect_proxy():
    async with ws_server(echo) as url, connect_proxy() as (proxy, requests):
        ws = await connect(url, proxy=proxy, open_timeout=2)
        await ws.send("through the tunnel")
        assert await ws.recv() == "through the tunnel"
        await ws.close()
    port = url.split(":")[2].split("/")[0]
    assert requests[0].startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=" in requests[0]  # user:secret


async def test_the_proxy_named_by_the_environment_is_used_by_default(monkeypatch):
    async with ws_server(echo) as url, connect_proxy() as (proxy, requests):
        monkeypatch.setenv("http_proxy", proxy)  # ws:// URLs use the http proxy
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        ws = await connect(url, open_timeout=2)
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.close()
        assert len(requests) == 1
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        direct = await connect(url, open_timeout=2)
        await direct.close()
        assert len(requests) == 1  # NO_PROXY: straight to the server


async def test_a_proxy_refusal_raises_a_handshake_error():
    from websockets.exceptions import InvalidHandshake, InvalidProxyStatus

    async with (
        ws_server(echo) as url,
        connect_proxy(b"407 Proxy Authentication Required") as (
            proxy,
            _,
        ),
    ):
        with pytest.raises(InvalidProxyStatus) as caught:
            await connect(url, proxy=proxy, open_timeout=2)
    assert isinstance(caught.value, InvalidHandshake)  # the provider maps it to "cannot reach"
    assert caught.value.response.status_code == 407


async def test_socks_proxies_are_refused_clearly():
    from websockets.exceptions import ProxyError

    with pytest.raises(ProxyError, match="socks5 proxies are not supported"):
        await connect("ws://127.0.0.1:9/", proxy="socks5://127.0.0.1:1080", open_timeout=2)


async def test_wss_through_a_proxy_verifies_the_server_inside_the_tunnel(tmp_path):
    server_ssl, client_ssl = self_signed_certificate(tmp_path)
    async with ws_server(echo, ssl=server_ssl) as url, connect_proxy() as (proxy, requests):
        ws = await connect(url, ssl=client_ssl, proxy=proxy, open_timeout=2)
        await ws.send("tls in a tunnel")
        assert await ws.recv() == "tls in a tunnel"
        await ws.close()
        assert requests[0].startswith(b"CONNECT 127.0.0.1:")
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(url, proxy=proxy, open_timeout=2)
