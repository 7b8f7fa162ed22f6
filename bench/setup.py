"""Set-up bench: what a call's set-up costs the server, and first agent audio during a burst.

``python -m bench.setup`` starts the server under test as ``bench.calls`` does (same servers,
``--stack``, ``--workers``, pinning), with the fake OpenAI Realtime in ``sink`` mode and a short
greeting (``--greeting-ms``, 100: one delta, five 20 ms frames). The load generator
(``bench.loadgen``'s burst mode) then:

1. optionally starts ``--live N`` calls that stay connected throughout (first audio while N
   calls are live);
2. runs ``--warmup`` calls one after another (a fresh server's first calls pay one-time costs:
   imports, connections, caches);
3. reads the server's CPU over ``--idle`` seconds: its base rate (with the live calls, if any);
4. starts ``--rate`` calls a second for ``--seconds``; each does the voice webhook, opens the
   media stream, sends ``connected`` and ``start``, waits for the greeting's first agent audio
   and hangs up (``stop``) ``--hangup-after`` seconds after it.

This process then waits until every burst call's row is final in the database and reads the
server's CPU again. **Set-up CPU per call** = (server CPU from the first webhook to the last row
final − base rate × that time) / calls: the whole life of a short call (webhook, stream start,
provider session, greeting, end and the row's final write) less the few media frames, which are
estimated (messages per call × ``--frame-us``, the sink mode's cost per caller frame; with
``--live N`` it is measured: the base rate over N × 50 frames a second) and reported apart.
CPU is summed over the server's process tree (``bench.proctree``).

Figures: first agent audio after ``start`` p50 / p95 / p99 / max over the burst's calls, the
webhook's response time, set-up CPU per call with and without the media estimate, and with
several workers how the calls spread over them (``Call.worker``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import analysis, calls, proctree, stack
from .loadgen import BURST_INDEX, WARMUP_INDEX
from .seed import AUTH_TOKEN, TO_NUMBERS

#: Server CPU per 20 ms caller frame of a live sink call (the relay of one frame to the
#: provider, its share of marks and wake-ups): 83 µs measured with ``--live 100`` (114 µs with
#: ``--live 50``) on the 2-core Intel Xeon VM, 2026-12-04, asyncio loop. The estimate of a burst
#: call's media cost when no live calls run; counting every message of a burst call (agent
#: frames and marks too) at this cost makes it an upper bound.
FRAME_US = 83.0


class SetupBench(calls.Bench):
    """``bench.calls.Bench``'s servers and stacks, one burst per run."""

    def run_once(self, server: str) -> dict:
        args = self.args
        self.level_no += 1
        tag = f"setup-{server}-{self.level_no}"
        prefix = f"+1998{self.level_no:03d}"
        burst_prefix = prefix + str(BURST_INDEX)[0]
        count = max(1, round(args.rate * args.seconds))
        fake_out = self.tmp / f"fake-{tag}.pickle"
        gen_out = self.tmp / f"gen-{tag}.pickle"
        fake_args = [
            *("--protocol", "openai", "--mode", "sink", "--barge-in", "0"),
            *("--greeting-ms", str(args.greeting_ms), "--out", str(fake_out)),
        ]
        final: dict = {}
        try:
            with self.serving(server, tag, fake_args) as (port, server_proc, fake):
                gen_cmd = [
                    *(self.python, "-m", "bench.loadgen", "--target", f"127.0.0.1:{port}"),
                    *("--public-url", calls.PUBLIC_URL, "--auth-token", AUTH_TOKEN),
                    *("--to-number", TO_NUMBERS["openai_realtime"], "--number-prefix", prefix),
                    *("--calls", str(args.live), "--ramp", f"{max(0.5, args.live / 40):.2f}"),
                    *("--settle", "1", "--warmup", str(args.warmup), "--idle", str(args.idle)),
                    *("--burst-rate", str(args.rate), "--burst-seconds", str(args.seconds)),
                    *("--hangup-after", str(args.hangup_after), "--wait-stdin"),
                    *("--server-pid", str(server_proc.pid), "--fake-pid", str(fake.pid)),
                    *("--out", str(gen_out)),
                ]
                gen = subprocess.Popen(
                    calls.pinned(args.load_core, gen_cmd),
                    cwd=calls.ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    if gen.stdout.readline().strip() == "BURST_DONE":
                        if keeps_rows(server):
                            final = self.wait_final(server_proc.pid, burst_prefix, count)
                        gen.stdin.write("go\n")
                        gen.stdin.flush()
                    gen.wait(args.live / 40 + args.seconds + 120)
                finally:
                    calls.stop(gen)
                if gen.returncode:
                    raise RuntimeError(f"the load generator failed ({gen.returncode})")
                fake.send_signal(signal.SIGTERM)
                fake.wait(30)
                rows = self.stack.call_rows(burst_prefix) if keeps_rows(server) else None
            with open(gen_out, "rb") as f:
                gen_data = pickle.load(f)
        finally:
            if not args.keep:
                for path in (fake_out, gen_out):
                    with contextlib.suppress(OSError):
                        path.unlink()
        result = analyse(gen_data, final, rows, frame_us=args.frame_us, live=args.live)
        result.update(server=server, rate=args.rate, seconds=args.seconds, **self.stack_facts())
        return result

    def wait_final(self, pid: int, prefix: str, count: int, timeout: float = 60.0) -> dict:
        """When every burst call's row is final: the time and the server's CPU then."""
        deadline = time.monotonic() + timeout
        rows: dict = {}
        while time.monotonic() < deadline:
            rows = self.stack.call_rows(prefix)
            if len(rows) >= count and all(s in stack.FINAL for s, _ in rows.values()):
                t = time.monotonic()
                cpu, rss = proctree.stat(pid)
                return {"t": t, "server_cpu": cpu, "server_rss": rss, "rows_final": True}
            time.sleep(0.05)
        t = time.monotonic()
        cpu, rss = proctree.stat(pid)
        return {"t": t, "server_cpu": cpu, "server_rss": rss, "rows_final": False}


def keeps_rows(server: str) -> bool:
    """False for the reference bridge, which has no database: its calls end when they close."""
    return not server.startswith("reference")


def analyse(gen: dict, final: dict, rows: dict | None, *, frame_us: float, live: int) -> dict:
    """The burst's figures from the generator's record and the server's CPU when rows were
    final (``final``; without it, when the last burst call closed). ``rows`` is None for a
    server that keeps none."""
    callers = [c for c in gen["callers"].values() if BURST_INDEX <= c["index"] < WARMUP_INDEX]
    live_calls = [c for c in gen["callers"].values() if c["index"] < BURST_INDEX]
    failures = {
        c["number"]: c["error"] or "no agent audio"
        for c in callers
        if c["error"] or c["first_media"] is None
    }
    failures.update({c["number"]: c["error"] for c in live_calls if c["error"]})
    not_final = [n for n, (s, _) in (rows or {}).items() if s not in stack.FINAL]
    missing = 0 if rows is None else len(callers) - len(rows)
    stats = gen["stats"]
    idle_a, idle_b, start = stats["idle_start"], stats["idle_end"], stats["burst_start"]
    end = final or stats["burst_end"]
    base_rate = (idle_b["server_cpu"] - idle_a["server_cpu"]) / (idle_b["t"] - idle_a["t"])
    span = end["t"] - start["t"]
    burst_cpu = end["server_cpu"] - start["server_cpu"]
    n = len(callers)
    gross = (burst_cpu - base_rate * span) / n if n else math.nan
    # A burst call's media: its caller frames, the greeting's frames and the marks both ways.
    messages = [
        len(c["sent_t"]) + len(c["recv_t"]) + c["marks_received"] + c["marks_echoed"]
        for c in callers
    ]
    frame_cost, frame_source = frame_us / 1e6, "estimate"
    if live:
        frame_cost, frame_source = base_rate / (live * 50), "measured"
    media = (sum(messages) / n) * frame_cost if n else math.nan
    return {
        "calls": n,
        "live": live,
        "failed": len(failures) + len(not_final) + max(0, missing),
        "failures": dict(list(failures.items())[:5]),
        "rows_not_final": len(not_final),
        "rows_missing": max(0, missing),
        "rows_final_in_time": bool(final.get("rows_final")),
        "first_audio": analysis.summarize(
            c["first_media"] - c["start_sent"] for c in callers if c["first_media"] is not None
        ),
        "webhook": analysis.summarize(
            c["webhook_ms"] / 1000 for c in callers if c["webhook_ms"] is not None
        ),
        "base_rate": base_rate,
        "span_s": span,
        "burst_cpu_s": burst_cpu,
        "burst_core": burst_cpu / span if span else math.nan,
        "setup_cpu_ms": 1000 * gross,
        "messages_per_call": sum(messages) / n if n else math.nan,
        "frame_us": frame_cost * 1e6,
        "frame_source": frame_source,
        "media_ms": 1000 * media,
        "setup_cpu_net_ms": 1000 * (gross - media),
        "server_rss": end.get("server_rss") or start.get("server_rss", 0),
        "worker_calls": stack.worker_shares(rows or {}),
        "foreign0": _foreign(start, stats["burst_end"], 0, burst_cpu),
    }


def _foreign(a: dict, b: dict, core: int, ours: float) -> float:
    """Busy share of ``core`` during the burst that was not the server's."""
    elapsed = b["t"] - a["t"]
    try:
        busy = b["cores"][core] - a["cores"][core]
    except (KeyError, IndexError, TypeError):
        return math.nan
    return max(0.0, busy - ours) / elapsed if elapsed else math.nan


def one_line(r: dict) -> str:
    fa, wh = r["first_audio"], r["webhook"]
    f = calls._f
    workers = (
        f"  calls per worker {stack.shares_text(r['worker_calls'])}"
        if r["workers"] > 1 and r["worker_calls"]
        else ""
    )
    rows = "" if r["rows_final_in_time"] else "  (rows not all final: CPU read at the last close)"
    if not keeps_rows(r["server"]):
        rows = "  (no rows: CPU read at the last close)"
    verdict = "ok" if not r["failed"] else f"FAILED {r['failed']}: {r['failures']}"
    return (
        f"set-up {calls.label(r)} {r['rate']:g}/s × {r['seconds']:g} s ({r['calls']} calls"
        f"{', ' + str(r['live']) + ' live' if r['live'] else ''}): first audio p50/p95/p99/max "
        f"{f(fa['p50'])}/{f(fa['p95'])}/{f(fa['p99'])}/{f(fa['max'])} ms  webhook p50/p99 "
        f"{f(wh['p50'])}/{f(wh['p99'])} ms  set-up CPU {f(r['setup_cpu_ms'], 2)} ms/call "
        f"(media ≈ {f(r['media_ms'], 2)} ms: {f(r['messages_per_call'])} messages × "
        f"{f(r['frame_us'])} µs {r['frame_source']}; without it {f(r['setup_cpu_net_ms'], 2)} ms)  "
        f"server {f(100 * r['burst_core'], 0)}% core over {f(r['span_s'], 2)} s, base "
        f"{f(100 * r['base_rate'], 1)}%  other load core 0 {f(100 * r['foreign0'], 0)}%"
        f"{workers}{rows}  {verdict}"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="uvicorn", help=f"one of {', '.join(calls.SERVERS)}")
    p.add_argument("--stack", choices=stack.STACKS, default="sqlite", help="see bench/stack.py")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rate", type=float, default=40.0, help="calls arriving per second")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the burst")
    p.add_argument(
        "--hangup-after",
        type=float,
        default=0.1,
        help="seconds a call stays after its first agent audio",
    )
    p.add_argument("--greeting-ms", type=int, default=100, help="the fake's greeting")
    p.add_argument("--live", type=int, default=0, help="calls live throughout (sink)")
    p.add_argument("--warmup", type=int, default=-1, help="calls before the base rate (-1: 4 × W)")
    p.add_argument("--idle", type=float, default=2.0, help="seconds of the server's base rate")
    p.add_argument(
        "--frame-us",
        type=float,
        default=FRAME_US,
        help="server CPU per media message for the media estimate (without --live)",
    )
    p.add_argument("--repeat", type=int, default=1, help="bursts, each on a fresh server")
    p.add_argument("--redis-url", default="")
    p.add_argument("--database-url", default="")
    p.add_argument("--postgres-url", default=stack.DEFAULT_POSTGRES)
    p.add_argument("--no-record", action="store_true", help="agent without call recording")
    p.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for the server")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--nice", type=int, default=-10)
    p.add_argument("--server-core", default="0")
    p.add_argument("--load-core", default="1")
    p.add_argument("--json", default=str(calls.ROOT / "var" / "bench" / "setup.json"))
    p.add_argument("--keep", action="store_true")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = parser().parse_args(argv)
    if args.server not in calls.SERVERS or args.server == "reference":
        raise SystemExit(f"unknown server {args.server!r}")
    if args.workers > 1 and args.server not in calls.WORKER_SERVERS:
        raise SystemExit(
            f"{args.server} runs one process: --workers needs one of {calls.WORKER_SERVERS}"
        )
    if args.warmup < 0:
        args.warmup = 4 * args.workers
    # What bench.calls.Bench reads of its arguments and the set-up bench does not choose.
    args.providers = ["openai_realtime"]
    calls.NICE = args.nice if os.geteuid() == 0 else 0
    print(f"Set-up bench on {calls.machine()}; {calls.stack_text(args)}; workers {args.workers}")
    bench = SetupBench(args)
    results = []
    bench.stack.prepare(bench.seed)
    try:
        for _ in range(args.repeat):
            result = bench.run_once(args.server)
            results.append(result)
            print(one_line(result), flush=True)
    finally:
        bench.stack.finish()
        if not args.keep:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"argv": sys.argv, "machine": calls.machine(), "runs": results}, default=str)
        )
    return results


if __name__ == "__main__":
    sys.exit(1 if any(r["failed"] for r in main()) else 0)
