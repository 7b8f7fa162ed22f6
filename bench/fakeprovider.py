"""A fake OpenAI Realtime server for load tests, run as its own process (``python -m bench.fakeprovider``).

With ``--protocol elevenlabs`` it is an ElevenLabs Conversational AI agent instead, with the same
modes, greeting and barge-ins (``bench.fakeelevenlabs``); with ``--protocol pipeline`` it is the
three services of a pipeline agent (Deepgram, chat completions, ElevenLabs TTS) answering caller
turns after fixed delays (``bench.fakepipeline``; the modes do not apply). What follows describes
the default, ``--protocol openai``.

It speaks the GA protocol (docs/providers/openai_realtime.md#wire-protocol) to the bridge's
provider client, on 127.0.0.1 only, and records when each piece of audio arrived and left, for
``bench.analysis``. Modes:

``echo``
    every appended chunk comes straight back as agent audio of the same length: the agent talks
    all the time, produced in real time (the caller's own pace), in replies of ``--turn`` seconds.
``duty``
    the same, but only during talk windows: ``--talk`` seconds out of every ``--talk + --silence``
    (2 s of 5 s = 40 %), each window one reply.
``sink``
    never talks (after the greeting).

Every session answers its first ``response.create`` (the agent's first message) at once with
``--greeting-ms`` of audio in 100 ms deltas, faster than real time as OpenAI does. With
``--barge-in S`` a session sends ``input_audio_buffer.speech_started`` every ``S`` seconds while a
reply is playing and cancels that reply (server VAD with ``interrupt_response``), then
``speech_stopped``, ``committed`` and the caller's transcript 0.4 s later.

Agent audio frames are tagged (``bench.tagging``); caller audio is recorded with its tags. The
caller is identified by the session's ``instructions``, which the bench agent's system prompt
fills with ``{caller_number}``. On SIGTERM/SIGINT, or after ``--max-seconds``, everything
recorded is written to ``--out`` (pickle) and the process exits.
"""

# JSON frames are built with %-formatting on purpose: their braces would need escaping in f-strings.
# ruff: noqa: UP031

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import pickle
import random
import re
import signal
import sys
import time
from array import array

from . import tagging, wire

APPEND_PREFIX = b'{"type":"input_audio_buffer.append","audio":"'
#: The caller's number in the agent's prompt; the bridge inserts caller-chosen values quoted.
_CALLER_RE = re.compile(r"caller \"?(\+?\d+)")
monotonic = time.monotonic


class Session:
    """What one provider connection (one call) did, with timestamps (CLOCK_MONOTONIC)."""

    def __init__(self, number: int, opened: float):
        self.number = number
        self.key = f"session-{number}"
        self.opened = opened
        self.closed: float | None = None
        self.in_t = array("d")
        self.in_tag = array("q")
        self.in_cum = array("q")
        self.in_bytes = 0
        self.out_t = array("d")
        self.out_tag = array("q")
        self.out_cum = array("q")
        self.out_resp = array("q")
        self.out_bytes = 0
        self.out_index = 0
        self.greeting_at: float | None = None
        self.talk_from = float("inf")
        self.responses = 0
        self.active: tuple[str, str, int] | None = None  # response id, item id, number
        self.active_since = 0.0
        self.bargeins: list[tuple[float, int, str]] = []  # time, reply number, item id
        self.truncates: list[tuple[float, str, int]] = []  # time, item id, audio_end_ms
        self.phase = 0.0
        self.errors: list[str] = []

    def dump(self) -> dict:
        return {k: v for k, v in vars(self).items() if k not in ("active",)}


class FakeRealtime:
    def __init__(self, args):
        self.args = args
        self.mode = args.mode
        self.sessions: list[Session] = []
        self.cycle = args.talk + args.silence
        self.rng = random.Random(args.seed)
        #: Sessions by caller number (the pipeline fake's chat and TTS requests name the call).
        self.by_key: dict[str, Session] = {}

    def new_session(self, cls: type[Session] = Session) -> Session:
        session = cls(len(self.sessions), monotonic())
        session.phase = self.rng.uniform(0, self.cycle)
        self.sessions.append(session)
        return session

    def dump(self, path: str) -> None:
        data = {
            "mode": self.mode,
            "protocol": self.args.protocol,
            "args": vars(self.args),
            "sessions": {s.key: s.dump() for s in self.sessions},
            "cpu": os.times()[:2],
        }
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)


class Connection(asyncio.Protocol):
    def __init__(self, fake: FakeRealtime):
        self.fake = fake
        self.args = fake.args
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.reader: wire.FrameReader | None = None
        self.session: Session | None = None
        self.timers: list[asyncio.TimerHandle] = []
        self._delta_prefix = b""
        self.closing = False

    # -- transport ----------------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        for timer in self.timers:
            timer.cancel()
        if self.session is not None:
            self.session.closed = monotonic()

    def data_received(self, data: bytes):
        if self.reader is None:
            self.head += data
            parts = wire.split_head(self.head)
            if parts is None:
                return
            head, rest = parts
            if not self._handshake(head):
                return
            data = rest
            if not data:
                return
        now = monotonic()
        for opcode, payload in self.reader.feed(data):
            if opcode == wire.OP_TEXT:
                self._on_text(payload, now)
            elif opcode == wire.OP_PING:
                self.transport.write(wire.frame(payload, wire.OP_PONG))
            elif opcode == wire.OP_CLOSE:
                if not self.closing:
                    self.closing = True
                    self.transport.write(wire.frame(payload[:2], wire.OP_CLOSE))
                self.transport.close()
                return

    def _handshake(self, head: bytes) -> bool:
        _, headers = wire.parse_head(head)
        if headers.get("authorization") != f"Bearer {self.args.api_key}":
            self.transport.write(
                wire.http_response(401, b'{"error":{"message":"Incorrect API key"}}')
            )
            self.transport.close()
            return False
        self.transport.write(wire.server_accept(headers))
        self.reader = wire.FrameReader()
        self.session = self.fake.new_session()
        self._send(
            json.dumps(
                {
                    "type": "session.created",
                    "event_id": "ev_0",
                    "session": {"type": "realtime", "id": f"sess_{self.session.number}"},
                }
            )
        )
        if self.args.barge_in > 0 and self.fake.mode != "sink":
            first = self.fake.rng.uniform(self.args.barge_in, 2 * self.args.barge_in)
            self.timers.append(self.loop.call_later(first, self._barge_in))
        return True

    def _send(self, text: str) -> None:
        if not self.closing:
            self.transport.write(wire.frame(text.encode()))

    # -- client events ------------------------------------------------------------------------

    def _on_text(self, payload: bytes, now: float) -> None:
        if payload.startswith(APPEND_PREFIX) and payload.endswith(b'"}'):
            self._on_append(payload[len(APPEND_PREFIX) : -2], now)
            return
        try:
            event = json.loads(payload)
        except ValueError:
            self.session.errors.append("not JSON")
            return
        kind = event.get("type")
        session = self.session
        if kind == "input_audio_buffer.append":
            self._on_append(event.get("audio", "").encode(), now)
        elif kind == "session.update":
            instructions = (event.get("session") or {}).get("instructions", "")
            found = _CALLER_RE.search(instructions)
            if found:
                session.key = found.group(1)
            self._send('{"type":"session.updated","event_id":"ev_1","session":{"type":"realtime"}}')
        elif kind == "response.create":
            if session.greeting_at is None:
                self._greeting(now)
            else:
                self._start_reply(now)
        elif kind == "conversation.item.truncate":
            session.truncates.append(
                (now, str(event.get("item_id")), int(event.get("audio_end_ms", -1)))
            )
            self._send(
                json.dumps(
                    {
                        "type": "conversation.item.truncated",
                        "event_id": "ev_t",
                        "item_id": event.get("item_id"),
                        "content_index": 0,
                        "audio_end_ms": event.get("audio_end_ms"),
                    }
                )
            )
        elif kind == "response.cancel":
            if session.active is None:
                self._send(
                    '{"type":"error","event_id":"ev_e","error":{"type":"invalid_request_error",'
                    '"code":"response_cancel_not_active","message":"no active response"}}'
                )
            else:
                self._end_reply("cancelled", "client_cancelled")

    def _on_append(self, audio_b64: bytes, now: float) -> None:
        session = self.session
        size = tagging.b64_len(audio_b64)
        session.in_bytes += size
        session.in_t.append(now)
        session.in_tag.append(tagging.read_tag(audio_b64))
        session.in_cum.append(session.in_bytes)
        mode = self.fake.mode
        if mode == "sink" or now < session.talk_from or size <= 0:
            return
        if mode == "duty":
            talking = (now - session.opened + session.phase) % self.fake.cycle < self.args.talk
            if not talking:
                if session.active is not None:
                    self._end_reply("completed", None)
                return
        elif session.active is not None and now - session.active_since >= self.args.turn:
            self._end_reply("completed", None)
        if session.active is None:
            self._start_reply(now)
        self._agent_audio(size)

    # -- agent replies ------------------------------------------------------------------------

    def _start_reply(self, now: float) -> None:
        session = self.session
        session.responses += 1
        n = session.responses
        response_id, item_id = f"resp_{n}", f"item_{n}"
        session.active = (response_id, item_id, n)
        session.active_since = now
        self._send(
            '{"type":"response.created","event_id":"ev_c","response":{"id":"%s","status":"in_progress"}}'
            % response_id
        )
        self._send(
            '{"type":"response.output_item.added","event_id":"ev_a","response_id":"%s","output_index":0,'
            '"item":{"id":"%s","type":"message","role":"assistant","status":"in_progress"}}'
            % (response_id, item_id)
        )
        self._delta_prefix = (
            '{"type":"response.output_audio.delta","event_id":"ev_d","response_id":"%s","item_id":"%s",'
            '"output_index":0,"content_index":0,"delta":"' % (response_id, item_id)
        ).encode()

    def _agent_audio(self, size: int) -> None:
        session = self.session
        index = session.out_index
        session.out_index += 1
        if size == tagging.FRAME_BYTES:
            b64 = tagging.frame_b64(index)
        else:
            b64 = base64.b64encode(tagging.tagged(index, size)).decode()
        message = self._delta_prefix + b64.encode() + b'"}'
        session.out_bytes += size
        session.out_tag.append(index)
        session.out_cum.append(session.out_bytes)
        session.out_resp.append(session.active[2])
        session.out_t.append(monotonic())
        if not self.closing:
            self.transport.write(wire.frame(message))

    def _end_reply(self, status: str, reason: str | None) -> None:
        session = self.session
        response_id, item_id, _ = session.active
        session.active = None
        ids = '"response_id":"%s","item_id":"%s","output_index":0,"content_index":0' % (
            response_id,
            item_id,
        )
        if status == "completed":
            self._send('{"type":"response.output_audio.done","event_id":"ev_o",%s}' % ids)
            self._send(
                '{"type":"response.output_audio_transcript.done","event_id":"ev_x",%s,'
                '"transcript":"Bench reply."}' % ids
            )
            self._send(
                '{"type":"response.output_item.done","event_id":"ev_i","response_id":"%s","output_index":0,'
                '"item":{"id":"%s","type":"message","role":"assistant","status":"completed"}}'
                % (response_id, item_id)
            )
        details = "null" if reason is None else '{"reason":"%s"}' % reason
        self._send(
            '{"type":"response.done","event_id":"ev_r","response":{"id":"%s","status":"%s",'
            '"status_details":%s}}' % (response_id, status, details)
        )

    def _greeting(self, now: float) -> None:
        session = self.session
        self._start_reply(now)
        session.greeting_at = monotonic()
        chunk = tagging.SILENCE * 5  # 100 ms
        b64 = base64.b64encode(chunk).decode().encode()
        remaining = self.args.greeting_ms * 8
        while remaining > 0:
            size = min(remaining, len(chunk))
            piece = b64 if size == len(chunk) else base64.b64encode(chunk[:size])
            session.out_bytes += size
            session.out_tag.append(-1)
            session.out_cum.append(session.out_bytes)
            session.out_resp.append(session.active[2])
            session.out_t.append(monotonic())
            self.transport.write(wire.frame(self._delta_prefix + piece + b'"}'))
            remaining -= size
        self._end_reply("completed", None)
        # Echo/duty audio starts once the greeting has played (it is paced in real time).
        session.talk_from = session.greeting_at + self.args.greeting_ms / 1000 + 0.2

    def _barge_in(self) -> None:
        session = self.session
        if self.closing or session is None:
            return
        if session.active is None or session.active[2] <= 1:
            self.timers.append(self.loop.call_later(0.25, self._barge_in))
            return
        now = monotonic()
        caller_item = f"caller_{len(session.bargeins) + 1}"
        session.bargeins.append((now, session.active[2], session.active[1]))
        self._send(
            '{"type":"input_audio_buffer.speech_started","event_id":"ev_s","audio_start_ms":%d,'
            '"item_id":"%s"}' % (int((now - session.opened) * 1000), caller_item)
        )
        self._end_reply("cancelled", "turn_detected")
        self.timers.append(self.loop.call_later(0.4, self._caller_turn_done, caller_item))
        self.timers.append(self.loop.call_later(self.args.barge_in, self._barge_in))

    def _caller_turn_done(self, item_id: str) -> None:
        at = int((monotonic() - self.session.opened) * 1000)
        self._send(
            '{"type":"input_audio_buffer.speech_stopped","event_id":"ev_p","audio_end_ms":%d,"item_id":"%s"}'
            % (at, item_id)
        )
        self._send(
            '{"type":"input_audio_buffer.committed","event_id":"ev_m","item_id":"%s","previous_item_id":null}'
            % item_id
        )
        self._send(
            '{"type":"conversation.item.input_audio_transcription.completed","event_id":"ev_q",'
            '"item_id":"%s","content_index":0,"transcript":"Bench caller."}' % item_id
        )


async def serve(args) -> None:
    loop = asyncio.get_running_loop()
    fake = FakeRealtime(args)
    factory = Connection
    if args.protocol == "elevenlabs":
        from .fakeelevenlabs import ElevenLabsConnection

        factory = ElevenLabsConnection
    elif args.protocol == "pipeline":
        from .fakepipeline import PipelineConnection

        factory = PipelineConnection
    server = await loop.create_server(lambda: factory(fake), "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await asyncio.wait_for(done.wait(), args.max_seconds)
    except TimeoutError:
        pass
    server.close()
    if args.out:
        fake.dump(args.out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Fake OpenAI Realtime (or ElevenLabs ConvAI) server for the call benchmark"
    )
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--protocol", choices=("openai", "elevenlabs", "pipeline"), default="openai")
    p.add_argument("--mode", choices=("echo", "duty", "sink"), default="echo")
    p.add_argument("--api-key", default="sk-bench")
    p.add_argument("--turn", type=float, default=4.0, help="echo: seconds per reply")
    p.add_argument("--talk", type=float, default=2.0, help="duty: seconds of talk per cycle")
    p.add_argument("--silence", type=float, default=3.0, help="duty: seconds of silence per cycle")
    p.add_argument("--greeting-ms", type=int, default=400)
    p.add_argument(
        "--barge-in", type=float, default=0.0, help="seconds between barge-ins (0: none)"
    )
    p.add_argument(
        "--ping-interval", type=float, default=2.0, help="elevenlabs: seconds between pings"
    )
    # The pipeline fake's fixed delays (ms) and its replies (bench.fakepipeline).
    p.add_argument("--stt-delay", type=float, default=150.0, help="pipeline: end of speech → final")
    p.add_argument(
        "--llm-delay", type=float, default=200.0, help="pipeline: request → 1st sentence"
    )
    p.add_argument("--llm-rest", type=float, default=100.0, help="pipeline: 1st → 2nd sentence")
    p.add_argument("--tts-delay", type=float, default=100.0, help="pipeline: request → 1st audio")
    p.add_argument("--tts-chunk-ms", type=int, default=100, help="pipeline: audio per TTS chunk")
    p.add_argument("--tts-speed", type=float, default=2.0, help="pipeline: TTS × real time")
    p.add_argument("--sentence-ms", type=int, default=800, help="pipeline: audio per sentence")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--out", default="")
    p.add_argument("--no-uvloop", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .loop import run

    run(serve(args), uvloop=not args.no_uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
