"""The load generator: N concurrent Twilio callers against a running server, as its own process.

Each caller does what Twilio does for an inbound call to a ``<Connect><Stream>`` number
(docs/carriers/twilio.md#wire-protocol): it POSTs the signed voice webhook, reads the TwiML, opens
the media WebSocket with a signed handshake, sends ``connected`` and ``start`` with the TwiML's
parameters, then one 20 ms μ-law ``media`` frame on a real-time grid until it is told to stop,
and ``stop``.
It plays back what the server sends like Twilio's outbound queue: audio plays in real time from
the moment it arrives, a ``mark`` is echoed once the audio sent before it would have finished
playing, and ``clear`` empties the queue and echoes the outstanding marks at once
(docs/carriers/twilio.md#marks-and-clear).

Calls start staggered over ``--ramp`` seconds; the steady window (``--settle`` seconds after the
last call received its first agent audio, ``--steady`` long) is what the latency, CPU and RSS
figures describe. During the window ``--joiners`` more calls start one at a time, evenly spread,
and hang up after ``--joiner-hold`` seconds: their time to first agent audio is that of a call
arriving at a server already carrying N calls, and their ends exercise the end of a call while
the others talk, as in production. The server's
``/proc`` counters are read at both ends of the window, ``/healthz/`` is probed every
``--health-interval`` seconds throughout. Everything is written to ``--out`` (pickle) for
``bench.analysis``. With ``--burst-rate`` it runs the set-up bench's burst instead
(``Generator.run_burst``, driven by ``bench.setup``). The server's CPU and RSS are summed over its
process tree (a server with worker processes; ``bench.proctree``). Connections go to
``--target`` (127.0.0.1) only; webhook and handshake
signatures are computed for ``--public-url``, as Twilio signs the URL it was given.

Per frame the work is a string format, a tiny base64 encode (``bench.tagging``) and one
``transport.write``: no task per call in steady state, only timer callbacks.
"""

# JSON frames are built with %-formatting on purpose: their braces would need escaping in f-strings.
# ruff: noqa: UP031

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import pickle
import re
import sys
import time
from array import array
from html import unescape
from urllib.parse import urlencode, urlsplit

from . import proctree, tagging, wire
from .fakepipeline import SILENT, UTTERANCE_END, VOICED, caller_tail

monotonic = time.monotonic
ACCOUNT_SID = "AC" + "b" * 32
_MEDIA_HEAD = b'{"event":"media"'
_PAYLOAD_KEY = b'"payload":"'
#: Seconds of silence a talking caller (``--caller-talk``) keeps before its turns: the greeting.
TALK_START = 1.5


def twilio_signature(url: str, params: dict[str, str], token: str) -> str:
    """X-Twilio-Signature: HMAC-SHA1 of the URL plus the sorted POST parameters.

    The algorithm: docs/carriers/twilio.md#webhook-signature.
    """
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def read_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, RSS bytes) of a process and the processes it started (a server
    with worker processes), from /proc (``bench.proctree``)."""
    return proctree.stat(pid)


def core_busy() -> list[float]:
    """Busy seconds of each core since boot (everything but idle and iowait), from /proc/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                out.append((sum(v[:8]) - v[3] - v[4]) / tick)
    return out


class Caller(asyncio.Protocol):
    """One Twilio media stream. Steady-state work happens in callbacks only."""

    def __init__(
        self, gen: Generator, index: int, number: str, *, joiner: bool = False, burst: bool = False
    ):
        self.gen = gen
        self.joiner = joiner
        self.burst = burst
        self.loop = gen.loop
        self.index = index
        self.number = number
        self.call_sid = "CA" + hashlib.md5(f"{gen.run_id}-{index}".encode()).hexdigest()
        self.stream_sid = "MZ" + hashlib.md5(f"{gen.run_id}-{index}-s".encode()).hexdigest()
        self.transport: asyncio.Transport | None = None
        self.reader = wire.FrameReader()
        self.head = bytearray()
        self.accept = ""
        self.opened = self.loop.create_future()
        self.closed = self.loop.create_future()
        self.got_audio = self.loop.create_future()
        self.seq = 0
        self.k = 0  # next media frame index
        self.began = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.stopping = False
        # What happened, for the analysis.
        self.error = ""
        self.webhook_ms = None
        self.start_sent: float | None = None
        self.first_media: float | None = None
        self.stop_sent: float | None = None
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self.sent_t = array("d")
        self.send_lag = array("d")
        self.recv_t = array("d")
        self.recv_tag = array("q")
        self.recv_cum = array("q")
        self.recv_bytes = 0
        self.play_end = 0.0
        self.pending_marks: list[tuple[str, asyncio.TimerHandle | None]] = []
        self.marks_received = 0
        self.marks_echoed = 0
        self.clears: list[float] = []
        self.other_events: dict[str, int] = {}
        self._schedule: tuple[int, int, int] | None = None
        self._tails: tuple[str, ...] = ()

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()
        for _, timer in self.pending_marks:
            if timer is not None:
                timer.cancel()
        self.closed_at = self.closed_at or monotonic()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes):
        if not self.opened.done():
            self.head += data
            parts = wire.split_head(self.head)
            if parts is None:
                return
            head, data = parts
            status, headers = wire.parse_head(head)
            if " 101 " not in status + " " or headers.get("sec-websocket-accept") != self.accept:
                self.opened.set_exception(ConnectionError(f"handshake refused: {status} {headers}"))
                self.transport.close()
                return
            self.opened.set_result(None)
            if not data:
                return
        now = monotonic()
        for opcode, payload in self.reader.feed(data):
            if opcode == wire.OP_TEXT:
                if payload.startswith(_MEDIA_HEAD):
                    start = payload.find(_PAYLOAD_KEY, 16) + len(_PAYLOAD_KEY)
                    self._media(payload[start : payload.find(b'"', start)], now)
                else:
                    self._event(payload, now)
            elif opcode == wire.OP_PING:
                self.transport.write(wire.frame(payload, wire.OP_PONG, mask=True))
            elif opcode == wire.OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.closed_at = now
                if self.timer is not None:
                    self.timer.cancel()
                self.stopping = True
                self.transport.write(wire.frame(payload[:2], wire.OP_CLOSE, mask=True))
                self.transport.close()
                return

    def send_json(self, obj: dict) -> None:
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(wire.frame(text.encode(), mask=True))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # -- caller audio -------------------------------------------------------------------------

    def begin(self, parameters: dict[str, str]) -> None:
        self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.start_sent = monotonic()
        self.send_json(
            {
                "event": "start",
                "sequenceNumber": str(self.next_seq()),
                "start": {
                    "accountSid": ACCOUNT_SID,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        self._media_fmt = (
            '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
            '"timestamp":"%d","payload":"%s'
            + ("%s" if self.gen.args.caller_talk else tagging.FILLER_B64)
            + '"},"streamSid":"'
            + self.stream_sid
            + '"}'
        )
        self.began = monotonic()
        talk = self.gen.args.caller_talk
        if talk and not self.joiner:
            self._talk_setup(*talk)
        elif talk:
            self._tails = (self._tail_b64(SILENT),)  # joining calls listen only
            self._schedule = (1, 1, 0)
        self._tick()

    # A pipeline caller talks in turns (``--caller-talk SPEAK,PAUSE``): its frames say what they
    # are in the byte after the tag (bench.fakepipeline), the last voiced frame of each utterance
    # marked, and carry the caller's number so that the fake can tell the calls apart.

    def _tail_b64(self, kind: int) -> str:
        return base64.b64encode(caller_tail(kind, self.number)).decode()

    def _talk_setup(self, speak: float, pause: float) -> None:
        speak_frames = max(2, round(speak / 0.02))
        cycle = speak_frames + round(pause / 0.02)
        # The first utterance after the greeting, the calls' turns spread over the cycle.
        offset = round(TALK_START / 0.02) + int((self.index * 0.6180339887) % 1.0 * cycle)
        self._tails = tuple(self._tail_b64(k) for k in (SILENT, VOICED, UTTERANCE_END))
        self._schedule = (offset, cycle, speak_frames)

    def _tail(self, k: int) -> str:
        offset, cycle, speak = self._schedule
        if k < offset:
            return self._tails[0]
        p = (k - offset) % cycle
        return (
            self._tails[1]
            if p < speak - 1
            else self._tails[2]
            if p == speak - 1
            else self._tails[0]
        )

    def _tick(self) -> None:
        if self.stopping or self.transport is None or self.transport.is_closing():
            return
        k = self.k
        self.seq += 1
        if self._schedule is None:
            text = self._media_fmt % (self.seq, k + 1, k * 20, tagging.tag_b64(k))
        else:
            text = self._media_fmt % (self.seq, k + 1, k * 20, tagging.tag_b64(k), self._tail(k))
        data = wire.frame(text.encode(), mask=True)
        now = monotonic()
        self.sent_t.append(now)
        self.send_lag.append(now - (self.began + k * 0.02))
        self.transport.write(data)
        self.k = k + 1
        self.timer = self.loop.call_later(self.began + self.k * 0.02 - monotonic(), self._tick)

    def stop(self) -> None:
        self.stopping = True
        if self.timer is not None:
            self.timer.cancel()
        self.stop_sent = monotonic()
        self.send_json(
            {
                "event": "stop",
                "sequenceNumber": str(self.next_seq()),
                "stop": {"accountSid": ACCOUNT_SID, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )

    # -- what the server sends ----------------------------------------------------------------

    def _media(self, payload: bytes, now: float) -> None:
        size = tagging.b64_len(payload)
        if self.first_media is None:
            self.first_media = now
            self.got_audio.set_result(None)
        self.recv_bytes += size
        self.recv_t.append(now)
        self.recv_tag.append(tagging.read_tag(payload))
        self.recv_cum.append(self.recv_bytes)
        # Twilio's playback: audio plays back to back from when it arrives.
        self.play_end = max(self.play_end, now) + size / 8000

    def _event(self, payload: bytes, now: float) -> None:
        try:
            message = json.loads(payload)
            event = message["event"]
        except (ValueError, KeyError, TypeError):
            self.other_events["malformed"] = self.other_events.get("malformed", 0) + 1
            return
        if event == "mark":
            self.marks_received += 1
            name = str(message.get("mark", {}).get("name", ""))
            delay = self.play_end - now
            if delay <= 0 and not self.pending_marks:
                self._echo(name)
            else:
                timer = self.loop.call_later(max(0.0, delay), self._echo_due)
                self.pending_marks.append((name, timer))
        elif event == "clear":
            self.clears.append(now)
            self.play_end = now
            pending, self.pending_marks = self.pending_marks, []
            for name, timer in pending:
                if timer is not None:
                    timer.cancel()
                self._echo(name)
        else:
            self.other_events[event] = self.other_events.get(event, 0) + 1

    def _echo_due(self) -> None:
        # Timers fire in order (their due times only grow); echo the oldest.
        if self.pending_marks:
            name, _ = self.pending_marks.pop(0)
            self._echo(name)

    def _echo(self, name: str) -> None:
        self.marks_echoed += 1
        self.seq += 1
        self.send_text(
            '{"event":"mark","sequenceNumber":"%d","streamSid":"%s","mark":{"name":%s}}'
            % (self.seq, self.stream_sid, json.dumps(name))
        )

    def result(self) -> dict:
        keep = (
            "index number call_sid error webhook_ms start_sent first_media stop_sent close_code closed_at "
            "sent_t send_lag recv_t recv_tag recv_cum recv_bytes marks_received marks_echoed clears "
            "other_events began joiner burst"
        ).split()
        return {name: getattr(self, name) for name in keep}


class Generator:
    def __init__(self, args):
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.run_id = args.run_id or f"{os.getpid()}-{time.time_ns()}"
        self.host, port = args.target.rsplit(":", 1)
        self.port = int(port)
        self.public = args.public_url.rstrip("/")
        self.public_host = urlsplit(self.public).hostname
        self.callers: list[Caller] = []
        self.health: list[tuple[float, float, int]] = []  # sent, seconds, status
        self.stats: dict[str, object] = {}
        self.stop_event = asyncio.Event()

    def number(self, index: int) -> str:
        return f"{self.args.number_prefix}{index:05d}"

    async def http(
        self, method: str, path: str, body: bytes = b"", headers: dict | None = None
    ) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            lines = [
                f"{method} {path} HTTP/1.1",
                f"Host: {self.public_host}",
                "Connection: close",
                f"Content-Length: {len(body)}",
            ]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            raw = await reader.read()
        finally:
            writer.close()
        head, _, content = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        if b"transfer-encoding: chunked" in head.lower():
            content = _dechunk(content)
        return status, content

    async def call(
        self,
        index: int,
        start_at: float,
        hold: float | None = None,
        hangup_after: float | None = None,
    ) -> None:
        """One caller from webhook to hang-up: at ``stop_event``, after ``hold`` seconds, or
        ``hangup_after`` seconds after its first agent audio (a set-up burst's call)."""
        burst = hangup_after is not None
        caller = Caller(self, index, self.number(index), joiner=hold is not None, burst=burst)
        self.callers.append(caller)
        await asyncio.sleep(max(0.0, start_at - monotonic()))
        args = self.args
        try:
            form = {
                "CallSid": caller.call_sid,
                "AccountSid": ACCOUNT_SID,
                "From": caller.number,
                "To": args.to_number,
                "CallStatus": "ringing",
                "Direction": "inbound",
                "ApiVersion": "2010-04-01",
            }
            path = "/telephony/twilio/voice/"
            signature = twilio_signature(self.public + path, form, args.auth_token)
            began = monotonic()
            status, body = await asyncio.wait_for(
                self.http(
                    "POST",
                    path,
                    urlencode(form).encode(),
                    {
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Twilio-Signature": signature,
                    },
                ),
                args.timeout,
            )
            caller.webhook_ms = (monotonic() - began) * 1000
            if status != 200:
                raise RuntimeError(f"voice webhook answered {status}: {body[:200]!r}")
            twiml = body.decode()
            stream_url = unescape(re.search(r'<Stream url="([^"]+)"', twiml).group(1))
            parameters = {
                unescape(k): unescape(v)
                for k, v in re.findall(r'<Parameter name="([^"]+)" value="([^"]+)"', twiml)
            }
            await asyncio.wait_for(
                self.loop.create_connection(lambda: caller, self.host, self.port), args.timeout
            )
            request, caller.accept = wire.client_handshake(
                self.public_host,
                urlsplit(stream_url).path,
                {"X-Twilio-Signature": twilio_signature(stream_url, {}, args.auth_token)},
            )
            caller.transport.write(request)
            await asyncio.wait_for(caller.opened, args.timeout)
            caller.begin(parameters)
            if burst:
                await asyncio.wait(
                    (caller.got_audio, caller.closed),
                    timeout=args.timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not caller.got_audio.done():
                    raise RuntimeError("no agent audio")
                await asyncio.sleep(hangup_after)
            elif hold is None:
                await self.stop_event.wait()
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), hold)
            if caller.closed.done():
                raise RuntimeError(f"the server closed the stream early (code {caller.close_code})")
            caller.stop()
            await asyncio.wait_for(asyncio.shield(caller.closed), args.close_timeout)
        except Exception as err:  # noqa: BLE001 - every failure is a failed call in the report
            caller.error = caller.error or f"{type(err).__name__}: {err}"
            if caller.transport is not None:
                caller.transport.abort()

    async def probe_health(self) -> None:
        while not self.stop_event.is_set():
            sent = monotonic()
            try:
                status, _ = await asyncio.wait_for(self.http("GET", "/healthz/"), 5)
            except Exception:  # noqa: BLE001
                status = 0
            self.health.append((sent, monotonic() - sent, status))
            await asyncio.sleep(max(0.0, sent + self.args.health_interval - monotonic()))

    def sample(self, name: str) -> None:
        now = monotonic()
        sample = {"t": now, "self_cpu": sum(os.times()[:2])}
        if self.args.server_pid:
            sample["server_cpu"], sample["server_rss"] = read_stat(self.args.server_pid)
        if self.args.fake_pid:
            sample["fake_cpu"], sample["fake_rss"] = read_stat(self.args.fake_pid)
        try:
            sample["loadavg"] = os.getloadavg()[0]
            sample["cores"] = core_busy()
        except OSError:
            pass
        self.stats[name] = sample

    def setting_up(self) -> int:
        """Calls not yet set up: no agent audio yet, no error, still open."""
        return sum(
            1 for c in self.callers if c.first_media is None and not c.error and not c.closed.done()
        )

    async def run(self) -> dict:
        args = self.args
        t0 = monotonic() + 0.2
        n = args.calls
        spacing = args.ramp / max(1, n)
        self.sample("begin")
        health = asyncio.ensure_future(self.probe_health())
        calls = [asyncio.ensure_future(self.call(i, t0 + i * spacing)) for i in range(n)]
        # The steady state begins once every call is set up (its first agent audio has arrived):
        # under a burst of call starts the server's set-up work can lag the ramp by seconds.
        await asyncio.sleep(max(0.0, t0 + args.ramp - monotonic()))
        deadline = monotonic() + args.setup_timeout
        while self.setting_up() and monotonic() < deadline:
            await asyncio.sleep(0.05)
        set_up = monotonic()
        window_start = set_up + args.settle
        window_end = window_start + args.steady
        await asyncio.sleep(max(0.0, window_start - monotonic()))
        self.sample("window_start")
        joiners = args.joiners if args.joiners >= 0 else max(1, int(args.steady // 3))
        calls += [
            asyncio.ensure_future(
                self.call(n + i, window_start + (i + 0.5) * args.steady / joiners, args.joiner_hold)
            )
            for i in range(joiners)
        ]
        await asyncio.sleep(max(0.0, window_end - monotonic()))
        self.sample("window_end")
        await asyncio.sleep(0.2)
        self.stop_event.set()
        await asyncio.gather(*calls)
        await health
        self.sample("end")
        return {
            "args": vars(args),
            "window": (window_start, window_end),
            "t0": t0,
            "set_up": set_up,
            "stats": self.stats,
            "health": self.health,
            "callers": {c.number: c.result() for c in self.callers},
        }

    async def run_burst(self) -> dict:
        """The set-up bench (``bench.setup``). ``--calls`` live calls (0: none) start over
        ``--ramp`` and stay until the end; ``--warmup`` calls then run one after another (a fresh
        server's first calls pay one-time costs); the server's CPU is read over ``--idle``
        seconds (its rate with the live calls); then calls arrive ``--burst-rate`` a second for
        ``--burst-seconds``, each hanging up ``--hangup-after`` seconds after its first agent
        audio. With ``--wait-stdin`` the generator prints ``BURST_DONE`` once every burst call
        has closed and waits for a line on stdin (the caller reads the server's CPU when the
        calls' rows are final) before it hangs up the live calls."""
        args = self.args
        n = args.calls
        t0 = monotonic() + 0.2
        spacing = args.ramp / max(1, n)
        live = [asyncio.ensure_future(self.call(i, t0 + i * spacing)) for i in range(n)]
        if n:
            await asyncio.sleep(max(0.0, t0 + args.ramp - monotonic()))
            deadline = monotonic() + args.setup_timeout
            while self.setting_up() and monotonic() < deadline:
                await asyncio.sleep(0.05)
        self.stats["live_set_up"] = {"t": monotonic()}
        for i in range(args.warmup):
            await self.call(WARMUP_INDEX + i, monotonic(), hangup_after=args.hangup_after)
        await asyncio.sleep(args.settle)
        self.sample("idle_start")
        await asyncio.sleep(args.idle)
        self.sample("idle_end")
        count = max(1, round(args.burst_rate * args.burst_seconds))
        self.sample("burst_start")
        first = self.stats["burst_start"]["t"] + 0.005
        burst = [
            asyncio.ensure_future(
                self.call(
                    BURST_INDEX + i, first + i / args.burst_rate, hangup_after=args.hangup_after
                )
            )
            for i in range(count)
        ]
        await asyncio.gather(*burst)
        self.sample("burst_end")
        if args.wait_stdin:
            print("BURST_DONE", flush=True)
            await self.loop.run_in_executor(None, sys.stdin.readline)
        self.sample("live_end")
        self.stop_event.set()
        await asyncio.gather(*live)
        self.sample("end")
        return {
            "args": vars(args),
            "burst": True,
            "t0": t0,
            "stats": self.stats,
            "health": self.health,
            "callers": {c.number: c.result() for c in self.callers},
        }


#: Caller numbers of ``run_burst``: live calls from 0, burst calls and warm-up calls from these.
BURST_INDEX = 20000
WARMUP_INDEX = 90000


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Twilio caller load generator for the call benchmark")
    p.add_argument("--target", default="127.0.0.1:8000", help="host:port of the server (loopback)")
    p.add_argument("--public-url", default="https://bench.example.test")
    p.add_argument("--auth-token", required=True)
    p.add_argument("--to-number", default="+15550000001")
    p.add_argument(
        "--number-prefix", default="+1999", help="callers are numbered <prefix><5 digits>"
    )
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--ramp", type=float, default=2.0, help="seconds over which calls start")
    p.add_argument(
        "--settle",
        type=float,
        default=1.5,
        help="seconds between the last call being set up and the window",
    )
    p.add_argument(
        "--setup-timeout",
        type=float,
        default=60.0,
        help="the window opens at the latest this long after the ramp",
    )
    p.add_argument("--steady", type=float, default=10.0, help="seconds of steady-state window")
    p.add_argument(
        "--joiners",
        type=int,
        default=-1,
        help="calls that start one at a time during the window (default: one per 3 s of it)",
    )
    p.add_argument("--joiner-hold", type=float, default=2.0, help="seconds each joining call lasts")
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--close-timeout", type=float, default=60.0)
    p.add_argument("--health-interval", type=float, default=0.25)
    p.add_argument("--server-pid", type=int, default=0)
    p.add_argument("--fake-pid", type=int, default=0)
    p.add_argument("--run-id", default="")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--caller-talk",
        type=lambda s: tuple(float(x) for x in s.split(",")),
        default=(),
        help="SPEAK,PAUSE seconds: callers talk in turns (the pipeline fake), e.g. 1.5,3",
    )
    p.add_argument(
        "--burst-rate",
        type=float,
        default=0.0,
        help="set-up bench: calls arriving per second (0: the steady-window run instead)",
    )
    p.add_argument("--burst-seconds", type=float, default=10.0, help="set-up bench: burst length")
    p.add_argument(
        "--hangup-after",
        type=float,
        default=0.1,
        help="set-up bench: seconds a burst call stays after its first agent audio",
    )
    p.add_argument("--warmup", type=int, default=0, help="set-up bench: calls before the idle read")
    p.add_argument(
        "--idle", type=float, default=2.0, help="set-up bench: seconds of the server's base rate"
    )
    p.add_argument(
        "--wait-stdin",
        action="store_true",
        help="set-up bench: print BURST_DONE after the burst, wait for a line before the end",
    )
    p.add_argument("--no-uvloop", action="store_true")
    return p


async def _main(args) -> None:
    generator = Generator(args)
    result = await (generator.run_burst() if args.burst_rate else generator.run())
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, args.out)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .loop import run

    run(_main(args), uvloop=not args.no_uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
