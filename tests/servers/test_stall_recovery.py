"""A 500 ms stall of the server's event loop in the middle of an agent's answer, through real
daphne and uvicorn processes: the delay it adds is gone again within 1.5 s.

The fake OpenAI streams a 4.5 s answer at once (as OpenAI does, faster than real time); the caller
plays what it receives in real time, like a phone, and notes when each mark's audio has played.
Marks are named by their position in the agent's audio, so for each one the *outbound latency*
is the time its audio finished playing minus the time the provider sent it, and the *excess*
is that above what the same path gives before the stall (see ``excess_after_stall``): 0 while
audio flows on time, the gap the caller heard when a stall delays everything after it. Without
stall recovery that excess stays at ~420 ms (500 ms stall minus the 80 ms lead) to the end of
the answer (measured on both servers before the recovery existed).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import statistics
import time

import numpy as np
import pytest
from websockets.sync.client import connect

from tests.fakes.openai_realtime import FakeOpenAIRealtime, ScriptedResponse
from voiceagents.audio.g711 import ulaw_encode
from voiceagents.call import streamtokens

from .calls import LoopThread
from .running import SERVERS, seed, server_env, start_server
from .test_stream_refusals import TWILIO, twilio_headers, twilio_start

STALL_S = 0.5
#: The benchmark's answer (tests/bench/test_stall.py).
ANSWER_S = 6.0
#: This test's: the stall ends 1.5 s into it and recovery is judged from 3 s on, so 4.5 s leaves
#: 1.5 s of marks to judge (about 14, one per 100 ms of audio; the test needs 10).
TEST_ANSWER_S = 4.5
#: How long the caller listens after the last audio played, for its marks (longer than a stall),
#: unless the mark at the answer's end has come and played: no audio or mark is still to come.
TAIL_S = 1.0
SILENCE = base64.b64encode(b"\xff" * 160).decode()


def voiced(seconds: float, rate: int = 8000) -> np.ndarray:
    """Vowel-like audio (harmonics of 118 Hz, slow loudness swing) with no pause in it."""
    t = np.arange(int(rate * seconds)) / rate
    wave = sum(np.sin(2 * np.pi * 118 * k * t) / k for k in range(1, 6))
    return np.rint(6000 * (0.6 + 0.3 * np.sin(2 * np.pi * 3 * t)) * wave).astype(np.int16)


def play_call(
    port: int, call: dict, server_pid: int, stall_after: float, answer_ms: float | None = None
) -> dict:
    """Twilio's side, playing agent audio in real time; stalls the server ``stall_after`` s into
    the answer. Returns mark play times and the stall's signal time. Once the mark at
    ``answer_ms`` (the answer's end) has played and been echoed, it hangs up without the tail."""
    token = streamtokens.mint(call["call_id"])
    start = twilio_start(call["call_id"], token, call["call_sid"])
    sid = start["start"]["streamSid"]
    media = json.dumps({"event": "media", "streamSid": sid, "media": {"payload": SILENCE}})
    marks: list[tuple[float, float]] = []  # (position ms, time its audio finished playing)
    echoes: list[tuple[float, str]] = []
    carrier_end = first = stalled_at = None
    with connect(f"ws://127.0.0.1:{port}{TWILIO}", additional_headers=twilio_headers()) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(json.dumps(start))
        t0 = time.monotonic()
        sent = 0
        while True:
            now = time.monotonic()
            if now >= t0 + sent * 0.02:
                ws.send(media)  # the caller's side: silence, in real time
                sent += 1
            while echoes and echoes[0][0] <= now:
                _, name = echoes.pop(0)
                ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}}))
            if first is not None and stalled_at is None and now >= first + stall_after:
                os.kill(server_pid, signal.SIGUSR1)
                stalled_at = now
            if carrier_end is not None and now > carrier_end + TAIL_S:
                break  # the answer has played out
            ended = answer_ms is not None and marks and marks[-1][0] >= answer_ms
            if ended and now > carrier_end and not echoes:
                break  # ...to its last mark, echoed: what the tail would wait for has come
            if now - t0 > 20:
                raise AssertionError("the answer did not finish playing")
            try:
                raw = ws.recv(timeout=max(0.0, t0 + sent * 0.02 - time.monotonic()))
            except TimeoutError:
                continue
            frame = json.loads(raw)
            arrived = time.monotonic()
            if frame.get("event") == "media":
                start_at = arrived if carrier_end is None else max(arrived, carrier_end)
                carrier_end = start_at + 0.02
                first = first or arrived
            elif frame.get("event") == "mark" and carrier_end is not None:
                name = frame["mark"]["name"]
                if not name.startswith("probe-"):  # a round-trip probe names no position
                    marks.append((float(name), carrier_end))
                echoes.append((carrier_end, name))
        ws.send(json.dumps({"event": "stop", "streamSid": sid, "stop": {}}))
    return {"marks": marks, "stalled_at": stalled_at}


def ideal_play_times(sent: list[tuple[float, str, int]]) -> list[tuple[float, float, float]]:
    """When a carrier playing in real time could play each delta at best, had the server no
    delay at all: ``(first ms, last ms, time its first sample plays)`` per delta, from the
    provider's send times (µ-law 8k: 8 bytes a ms)."""
    out, end, prev = [], None, 0
    for at, _response, upto in sent:
        start = at if end is None else max(at, end)
        duration = (upto - prev) / 8000
        out.append((prev / 8, upto / 8, start))
        end, prev = start + duration, upto
    return out


def excess_series(result: dict) -> list[tuple[float, float]]:
    """(excess s, play time s after the stall ended) per mark; see ``excess_after_stall``."""
    marks, stalled_at, ideal = result["marks"], result["stalled_at"], result["ideal"]

    def ideal_end(pos: float) -> float:
        for first, last, start in ideal:
            if first < pos <= last:
                return start + (pos - first) / 1000
        raise AssertionError(f"mark {pos} is beyond the audio sent")

    over = [(t - ideal_end(pos), t) for pos, t in marks]
    baseline = statistics.median(o for o, t in over if t < stalled_at)
    return [(o - baseline, t - stalled_at - STALL_S) for o, t in over]


def recovered_after(result: dict, bar: float = 0.020) -> float:
    """Seconds from the stall's end until the excess is under ``bar`` for good."""
    series = excess_series(result)
    over = [t for e, t in series if e > bar]
    return max(over, default=0.0)


def excess_after_stall(result: dict) -> tuple[list[float], float]:
    """Outbound latency above baseline of the marks played from 1.5 s after the stall ended, and
    the worst excess seen at all (the stall's own effect).

    Latency of the audio up to mark position P: the time it finished playing minus the time it
    left the provider. Its baseline is the best a server without delay could do given when the
    provider sent it (``ideal_play_times``), plus the constant cost of the path (the median
    before the stall)."""
    excess = excess_series(result)
    late = [e for e, t in excess if t >= 1.5]
    return late, max(e for e, _ in excess)


#: How the fake streams the answer: (bytes per delta, seconds between deltas). All at once, as
#: OpenAI does; in 500 ms bursts every 500 ms, or 20 ms every 20 ms (a provider speaking in
#: real time), so that during the stall most of it waits unread in the server's socket.
PACING = {"whole-answer": (800, 0.0), "bursts": (4000, 0.5), "real-time": (160, 0.02)}


def run_stall(
    server: str,
    start_process,
    tmp_path,
    *,
    pacing: str = "whole-answer",
    answer_s: float = ANSWER_S,
    shared_server=None,
) -> dict:
    """One call with a stall, on a server process of its own, or on the one that every test
    given ``shared_server`` (the fixture) shares: the stall blocks it while this call alone is
    on it, and the call has its own number and agent (each with this test's fake OpenAI)."""
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    audio = ulaw_encode(voiced(answer_s))
    script = ScriptedResponse(audio=audio, transcript="a long answer")
    script.chunk, script.interval = PACING[pacing]
    fake.responses.append(script)
    if shared_server is None:
        env = server_env(tmp_path, TEST_STALL_ON_SIGUSR1=str(STALL_S))
        (call,) = seed(env, openai_url=fake.url, calls=1)
        port, process = start_server(start_process, server, env)
    else:
        process = shared_server(server, TEST_STALL_ON_SIGUSR1=str(STALL_S))
        (call,) = process.seed(openai_url=fake.url, calls=1)
        port = process.port
    try:
        result = play_call(port, call, process.proc.pid, stall_after=1.0, answer_ms=len(audio) / 8)
        # The caller's clock and the fake's are both this process's monotonic clock.
        result["ideal"] = ideal_play_times(fake.sessions[0].audio_sent)
        return result
    finally:
        loop.run(fake.__aexit__(None, None, None))
        loop.stop()


@pytest.mark.parametrize("pacing", list(PACING))
@pytest.mark.parametrize("server", SERVERS)
def test_a_500_ms_loop_stall_adds_no_lasting_delay(server, pacing, shared_server):
    result = run_stall(
        server, None, None, pacing=pacing, answer_s=TEST_ANSWER_S, shared_server=shared_server
    )
    late, worst = excess_after_stall(result)
    assert worst > 0.3, "the stall did not delay the audio: was it injected?"
    assert len(late) >= 10, late
    # The strict bar (20 ms) is the benchmark's (tests/bench/test_stall.py); here a margin for a
    # busy machine, still an order of magnitude below the ~420 ms a stall leaves without recovery.
    assert max(late) <= 0.1, late
