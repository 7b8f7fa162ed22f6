"""The provider leg's WebSocket framing: microseconds per message, direct path against the library.

Run from the repository root with ``python -m bench.wsframes`` (``make bench`` does). Both sides of
each row run over the same open loopback connection of ``voiceagents.transport.websocket``:

* **receive**: one server frame holding a 20 ms OpenAI ``response.output_audio.delta`` event,
  handed to the connection as one read, then taken by the consumer (``recv()``); against the same
  frame through ``websockets``' sans-I/O parser (``receive_data`` + ``events_received`` + UTF-8
  decoding), which is what the connection did for every frame before it framed data frames itself.
* **send**: one ``input_audio_buffer.append`` (a 20 ms μ-law frame), framed, masked and written to
  the socket; against ``send_text`` + ``data_to_send`` of the library + the same socket write.

Each figure is the best of several repetitions of a tight loop (the machine's noise only adds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from voiceagents.transport.websocket import WebSocketConnection, connect

DELTA = json.dumps(
    {
        "type": "response.output_audio.delta",
        "event_id": "event_" + "a" * 20,
        "response_id": "resp_" + "b" * 20,
        "item_id": "item_" + "c" * 20,
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(os.urandom(160)).decode(),
    }
).encode()
APPEND = (
    '{"type":"input_audio_buffer.append","audio":"'
    + base64.b64encode(os.urandom(160)).decode()
    + '"}'
)


async def _open() -> tuple[WebSocketConnection, asyncio.Server]:
    """A connection to a loopback server that completes the handshake and drains what it gets."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocol = ServerProtocol()
        protocol.receive_data(await reader.readuntil(b"\r\n\r\n"))
        (request,) = protocol.events_received()
        protocol.send_response(protocol.accept(request))
        writer.write(b"".join(protocol.data_to_send()))
        try:
            while await reader.read(1 << 20):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return await connect(f"ws://127.0.0.1:{port}/", proxy=None), server


def _best(loop_once, count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        loop_once(count)
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


async def measure(count: int, repeats: int) -> list[tuple[str, float, float]]:
    """Rows of (what, library µs, direct µs)."""
    conn, server = await _open()
    frame = Frame(Opcode.TEXT, DELTA).serialize(mask=False)
    # Open from the start: its parser begins at frames, as after a handshake.
    library = ClientProtocol(conn.protocol.uri, state=OPEN)

    def library_receive(n: int) -> None:
        for _ in range(n):
            library.receive_data(frame)
            for event in library.events_received():
                event.data.decode()

    async def direct_receive_async(n: int) -> None:
        for _ in range(n):
            conn.data_received(frame)
            await conn.recv()

    def direct_receive(n: int) -> None:
        asyncio.get_running_loop()  # inside the loop: recv() never suspends, a message is there
        coroutine = direct_receive_async(n)
        try:
            coroutine.send(None)
        except StopIteration:
            return
        coroutine.close()
        raise RuntimeError("recv() had to wait: a frame was not delivered")

    transport = conn.transport

    def library_send(n: int) -> None:
        for _ in range(n):
            library.send_text(APPEND.encode())
            transport.write(b"".join(library.data_to_send()))

    def direct_send(n: int) -> None:
        for _ in range(n):
            conn.write(APPEND)

    rows = [
        (
            "receive: 370-byte audio delta, read to message",
            _best(library_receive, count, repeats),
            _best(direct_receive, count, repeats),
        ),
    ]
    send_count = max(1, count // 10)  # each one is a real socket write
    library_send_us = _best(library_send, send_count, repeats)
    await asyncio.sleep(0.05)  # let the server drain between the two
    rows.append(
        (
            "send: 20 ms append, framed, masked, written",
            library_send_us,
            _best(direct_send, send_count, repeats),
        )
    )
    conn.transport.abort()
    server.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000, help="messages per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.count, args.repeats))
    print("### Provider leg WebSocket framing (µs per message, best of repetitions)")
    print()
    print("| message | websockets sans-I/O | direct (transport.websocket) |")
    print("| --- | ---: | ---: |")
    for what, library_us, direct_us in rows:
        print(f"| {what} | {library_us:.2f} | {direct_us:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
