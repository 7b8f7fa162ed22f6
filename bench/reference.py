"""A tiny reference bridge, to check the bench itself (``python -m bench.reference``).

It plays the server under test with the least code that can: the Twilio voice webhook answers
TwiML with the caller's number as ``call_id``, the media WebSocket is relayed frame by frame to
the provider (``input_audio_buffer.append`` with the very same base64) and back (each
``response.output_audio.delta`` becomes one ``media`` frame, with a ``mark`` after every second
frame), and ``speech_started`` sends ``clear`` to the caller and ``conversation.item.truncate``
to the provider. No pacing, no recording, no database.

Faults can be injected to prove that the bench measures what it claims: ``--drop-every K`` drops
every K-th caller frame, ``--delay-ms D`` holds every caller frame D ms before relaying it, and
``--rechunk`` re-cuts caller audio into 100-byte appends whose bytes are inverted (a stand-in for
transcoding: tags no longer survive, durations do). Signatures are not checked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
from urllib.parse import parse_qs

from websockets.asyncio.client import connect

from . import wire

PUBLIC_HOST = "bench.example.test"


# -- what either bridge (this one, and bench.reference_asgi under uvicorn) says -----------------


def http_answer(method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` of an HTTP request: the voice webhook's TwiML (the
    caller's number as ``call_id``), ``/healthz/``, or 404."""
    if method == "POST" and path.startswith("/telephony/twilio/voice/"):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="wss://{PUBLIC_HOST}/telephony/twilio/media/">'
            f'<Parameter name="call_id" value="{form.get("From", "")}" />'
            '<Parameter name="stream_token" value="reference" /></Stream></Connect>'
            "<Hangup /></Response>"
        )
        return 200, twiml.encode(), "text/xml"
    if path.startswith("/healthz/"):
        return 200, b'{"status": "ok"}', "application/json"
    return 404, b"", "text/plain"


async def open_provider(url: str, api_key: str, caller: str):
    """The provider's WebSocket, its session set up for ``caller`` (the fake finds the call by
    the number in the instructions) and the greeting asked for."""
    provider = await connect(
        url, compression=None, additional_headers={"Authorization": f"Bearer {api_key}"}
    )
    await provider.recv()  # session.created
    session = {"type": "realtime", "instructions": f"Reference bridge for caller {caller}."}
    await provider.send(json.dumps({"type": "session.update", "session": session}))
    await provider.send(json.dumps({"type": "response.create"}))
    return provider


def append_message(audio_b64: str) -> str:
    return '{"type":"input_audio_buffer.append","audio":"' + audio_b64 + '"}'


def provider_event(event: dict, state: dict) -> tuple[list[str], str | None]:
    """One provider event relayed: the frames for the caller, and what goes back to the
    provider (the truncation at a barge-in) or None. ``state``: the stream's ``sid``, the agent
    frames sent (``out``) and the item playing (``item``)."""
    kind = event.get("type")
    sid = state["sid"]
    if kind == "response.output_audio.delta":
        state["item"] = event.get("item_id", "")
        frames = [{"event": "media", "streamSid": sid, "media": {"payload": event["delta"]}}]
        state["out"] += 1
        if state["out"] % 2 == 0:
            frames.append({"event": "mark", "streamSid": sid, "mark": {"name": str(state["out"])}})
        return [_compact(f) for f in frames], None
    if kind == "input_audio_buffer.speech_started":
        truncate = {
            "type": "conversation.item.truncate",
            "item_id": state["item"],
            "content_index": 0,
            "audio_end_ms": 0,
        }
        return [_compact({"event": "clear", "streamSid": sid})], json.dumps(truncate)
    return [], None


def _compact(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Bridge:
    def __init__(self, args):
        self.args = args

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        start, headers = wire.parse_head(head[:-4])
        method, path, _ = start.split(" ", 2)
        if headers.get("upgrade", "").lower() == "websocket":
            writer.write(wire.server_accept(headers))
            await self.stream(reader, writer)
            return
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        status, content, kind = http_answer(method, path, body)
        writer.write(wire.http_response(status, content, kind))
        await writer.drain()
        writer.close()

    async def stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = wire.FrameReader()
        provider = None
        tasks: list[asyncio.Task] = []
        state = {"sid": "", "count": 0, "out": 0, "item": ""}
        loop = asyncio.get_running_loop()
        carry = bytearray()

        async def from_provider() -> None:
            async for message in provider:
                frames, back = provider_event(json.loads(message), state)
                for frame in frames:
                    writer.write(wire.frame(frame.encode()))
                if back is not None:
                    await provider.send(back)

        async def append(audio_b64: str) -> None:
            await provider.send(append_message(audio_b64))

        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for opcode, payload in frames.feed(data):
                    if opcode == wire.OP_CLOSE:
                        writer.write(wire.close_frame())
                        return
                    if opcode == wire.OP_PING:
                        writer.write(wire.frame(payload, wire.OP_PONG))
                        continue
                    if opcode != wire.OP_TEXT:
                        continue
                    message = json.loads(payload)
                    event = message.get("event")
                    if event == "start":
                        state["sid"] = message["start"]["streamSid"]
                        caller = message["start"]["customParameters"]["call_id"]
                        provider = await open_provider(
                            self.args.provider, self.args.api_key, caller
                        )
                        tasks.append(asyncio.ensure_future(from_provider()))
                    elif event == "media" and provider is not None:
                        state["count"] += 1
                        if self.args.drop_every and state["count"] % self.args.drop_every == 0:
                            continue
                        audio_b64 = message["media"]["payload"]
                        if self.args.rechunk:
                            carry.extend(bytes(255 - b for b in base64.b64decode(audio_b64)))
                            while len(carry) >= 100:
                                await append(base64.b64encode(bytes(carry[:100])).decode())
                                del carry[:100]
                        elif self.args.delay_ms:
                            loop.call_later(
                                self.args.delay_ms / 1000,
                                lambda a=audio_b64: tasks.append(asyncio.ensure_future(append(a))),
                            )
                        else:
                            await append(audio_b64)
                    elif event == "stop":
                        writer.write(wire.close_frame())
                        await writer.drain()
                        return
        finally:
            for task in tasks:
                task.cancel()
            if provider is not None:
                await provider.close()
            writer.close()


async def serve(args) -> None:
    bridge = Bridge(args)
    # SO_REUSEPORT: with --workers each process listens on the same port, as the launcher's do.
    server = await asyncio.start_server(
        bridge.handle, "127.0.0.1", args.port, reuse_port=args.workers > 1
    )
    if args.workers <= 1:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await asyncio.wait_for(done.wait(), args.max_seconds)
    except TimeoutError:
        pass
    server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Reference bridge for checking the call benchmark")
    p.add_argument("--port", type=int, default=0)
    p.add_argument(
        "--provider", required=True, help="ws:// URL of the (fake) OpenAI Realtime server"
    )
    p.add_argument("--api-key", default="sk-bench")
    p.add_argument("--drop-every", type=int, default=0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--rechunk", action="store_true")
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="W processes on one port (SO_REUSEPORT; needs --port): the floor of W workers' cost",
    )
    p.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop when it is installed, as uvicorn's --loop auto does",
    )
    args = p.parse_args(argv)
    if args.workers > 1:
        return run_workers(args)
    run(args)
    return 0


def run(args) -> None:
    try:
        import uvloop
    except ImportError:  # as uvicorn's --loop auto: asyncio's own loop then
        uvloop = None
    if args.uvloop and uvloop is not None:
        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


def run_workers(args) -> int:
    """A parent and ``--workers`` forked children that serve; SIGTERM/SIGINT reach them all."""
    if not args.port:
        raise SystemExit("--workers needs a --port for the processes to share")
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            try:
                run(args)
            finally:
                os._exit(0)
        children.append(pid)
    print(f"PORT {args.port}", flush=True)

    def forward(sig, frame):
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
