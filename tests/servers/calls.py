"""Whole calls through a real server process, as Twilio would make them, and the fakes they use.

``LoopThread`` runs asyncio fakes (provider sockets) on an event loop of their own in a daemon
thread, so a synchronous test can drive them while the server process reaches them over
loopback. ``run_call`` plays Twilio's side of one call; ``call_row`` reads the call's row from the
server's own SQLite database once it has ended.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from voiceagents.call import streamtokens

from .test_stream_refusals import TWILIO, twilio_headers, twilio_start


class LoopThread:
    """An event loop in a daemon thread: ``run(coro)`` runs a coroutine there and waits."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def call_row(tmp_path, call_id: str, timeout: float = 10) -> dict:
    """The call's row in the server's own SQLite database, once it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            db.row_factory = sqlite3.Row
            row = dict(
                db.execute(
                    "select status, end_reason, error, provider_session_id from voiceagents_call "
                    "where id = ?",
                    (call_id.replace("-", ""),),
                ).fetchone()
            )
        if row["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def run_call(
    port: int, call: dict, *, hang_up_after: bytes | None, during=None
) -> tuple[bytes, int | None]:
    """Play Twilio: start the stream, read agent audio until ``hang_up_after`` has arrived (then
    send ``stop``) or the server closes; the audio received and the close code.

    ``during(ws, stream_sid, received)``, if given, is called after each frame read (the caller speaking);
    it returns True once it is done.
    """
    received = bytearray()
    token = streamtokens.mint(call["call_id"])
    with connect(f"ws://127.0.0.1:{port}{TWILIO}", additional_headers=twilio_headers()) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(json.dumps(twilio_start(call["call_id"], token, call["call_sid"])))
        stream_sid = None
        try:
            while True:
                frame = json.loads(ws.recv(timeout=10))
                stream_sid = frame.get("streamSid", stream_sid)
                if frame.get("event") == "media":
                    received += base64.b64decode(frame["media"]["payload"])
                if during is not None and during(ws, stream_sid, received):
                    during = None
                if hang_up_after is not None and hang_up_after in received:
                    ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {}}))
                    hang_up_after = None
        except ConnectionClosed as closed:
            return bytes(received), closed.rcvd.code if closed.rcvd else None
