"""The reference bridge as an ASGI app under uvicorn (``python -m bench.reference_asgi``).

``bench.reference`` parses HTTP and WebSocket frames itself on asyncio streams; this is the same
bridge (the same TwiML, the same relay both ways, ``clear`` and ``conversation.item.truncate``
at ``speech_started``, no pacing, no recording, no database) as an ASGI app served by uvicorn
with the server's own choices (``--loop auto``: uvloop; ``--ws auto``; h11 for HTTP), in one
process or with ``--workers W``. Between the two references and the project's server the
set-up bench (``bench.setup --server reference-uvicorn``) tells what the ASGI server costs a
call and what Django and the project add on top. Signatures are not checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import uvicorn

from .reference import append_message, http_answer, open_provider, provider_event

#: Where the (fake) OpenAI Realtime server listens; set by ``main`` for every worker.
PROVIDER_ENV = "BENCH_REFERENCE_PROVIDER"
API_KEY = "sk-bench"


async def app(scope, receive, send) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _stream(receive, send)


async def _http(scope, receive, send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    status, content, kind = http_answer(scope["method"], scope["path"], body)
    headers = [(b"content-type", kind.encode()), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def _stream(receive, send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    provider = None
    reader: asyncio.Task | None = None
    state = {"sid": "", "out": 0, "item": ""}

    async def from_provider() -> None:
        async for message in provider:
            frames, back = provider_event(json.loads(message), state)
            for frame in frames:
                await send({"type": "websocket.send", "text": frame})
            if back is not None:
                await provider.send(back)

    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                continue
            event = json.loads(text)
            kind = event.get("event")
            if kind == "media" and provider is not None:
                await provider.send(append_message(event["media"]["payload"]))
            elif kind == "start":
                state["sid"] = event["start"]["streamSid"]
                caller = event["start"]["customParameters"]["call_id"]
                provider = await open_provider(os.environ[PROVIDER_ENV], API_KEY, caller)
                reader = asyncio.ensure_future(from_provider())
            elif kind == "stop":
                await send({"type": "websocket.close", "code": 1000})
                return
    finally:
        if reader is not None:
            reader.cancel()
        if provider is not None:
            await provider.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The reference bridge as an ASGI app under uvicorn")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--provider", required=True, help="ws:// URL of the (fake) OpenAI Realtime")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    os.environ[PROVIDER_ENV] = args.provider  # the workers inherit it
    uvicorn.run(
        "bench.reference_asgi:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        loop="auto",
        ws="auto",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
