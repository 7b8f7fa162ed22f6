"""Call benchmark: concurrent calls per process, relay latency, CPU and memory per call.

``python -m bench.calls`` sweeps the number of concurrent calls N for each ASGI server and fake
provider mode, three processes per level, all on 127.0.0.1:

* the server under test (``patter_site.asgi:application`` under daphne, uvicorn or our launcher
  ``serve``; with ``--workers W`` a parent and W worker processes), all its processes pinned to
  core 0 with ``taskset``, on the ``--stack`` of ``bench.stack``: by default a SQLite database in
  a temporary directory (seeded by ``bench.seed``) with the in-memory layer and eager Celery
  (``--redis-url`` for channels-redis), or ``postgres+redis``: a scratch PostgreSQL database per
  level and channels-redis;
* the fake provider (``bench.fakeprovider``: OpenAI Realtime, or with ``--providers`` also an
  ElevenLabs Conversational AI agent) and the load generator (``bench.loadgen``), pinned to
  core 1.

Each level starts a fresh server, ramps the calls up, measures a steady window, stops the calls
and checks every call's row. With several providers their levels alternate (N = 10 for each,
then N = 100 for each ...), so that they are compared minutes apart on the same machine. A
(server, mode, provider) sweep stops at its first failing level: p99 over
``--p99-ms`` in either direction, any lost or duplicated frame, or any failed call
(``bench.analysis.passes``). Tables go to stdout; everything measured goes to ``--json``.
See docs/benchmarks.md for the definitions and the results.
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
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from . import analysis, proctree, stack
from .seed import AUTH_TOKEN, PROVIDERS, TO_NUMBERS

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://bench.example.test"
DEFAULT_LEVELS = (1, 10, 50, 100, 150, 200, 250, 300)

APP = "patter_site.asgi:application"


def _uvicorn(*options: str, app: str = APP) -> list[str]:
    # --workers 1 is uvicorn's single process (no supervisor): today's server.
    return [
        *("-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}"),
        *("--lifespan", "off", "--no-access-log", "--log-level", "warning"),
        *("--workers", "{workers}"),
        *options,
    ]


def _daphne(app: str = APP) -> list[str]:
    return ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", app]


#: Server name -> command (PORT is filled in). ``uvicorn`` uses uvloop when it is installed.
SERVERS = {
    "daphne": _daphne(),
    "uvicorn": _uvicorn("--loop", "auto"),
    "uvicorn-asyncio": _uvicorn("--loop", "asyncio"),
    "uvicorn-sansio": _uvicorn("--loop", "auto", "--ws", "websockets-sansio"),
    #: A 0.5 ms GIL switch interval (bench/asgi_switch.py), a candidate setting.
    "uvicorn-switch": _uvicorn("--loop", "auto", app="bench.asgi_switch:application"),
    #: Logs its garbage collections to BENCH_GC_LOG (bench/asgi_gclog.py), a diagnostic.
    "uvicorn-gclog": _uvicorn("--loop", "auto", app="bench.asgi_gclog:application"),
    #: Profiles every thread by its CPU time into BENCH_CPROFILE (bench/asgi_cprofile.py).
    "uvicorn-cprofile": _uvicorn("--loop", "auto", app="bench.asgi_cprofile:application"),
    #: Charges each thread's CPU time to its Python stack into BENCH_SAMPLES (bench/asgi_sampler.py).
    "uvicorn-sampler": _uvicorn("--loop", "auto", app="bench.asgi_sampler:application"),
    #: The hot-path changes of docs/benchmarks.md undone (bench/asgi_before.py).
    "uvicorn-before": _uvicorn("--loop", "auto", app="bench.asgi_before:application"),
    "daphne-before": _daphne("bench.asgi_before:application"),
    #: Our launcher (voiceagents/serve.py): W worker processes, each with its own SO_REUSEPORT
    #: socket on the same port.
    "serve": [
        *("-m", "voiceagents.serve", APP, "--host", "127.0.0.1", "--port", "{port}"),
        *("--workers", "{workers}", "--log-level", "warning"),
    ],
}
#: The servers that take ``--workers W`` (the others run one process).
WORKER_SERVERS = {name for name, argv in SERVERS.items() if "{workers}" in argv}

#: Not a server under test: the minimal bridge of ``bench.reference``, as a floor to compare with.
SERVERS["reference"] = [
    "-m",
    "bench.reference",
    "--port",
    "{port}",
    "--provider",
    "ws://127.0.0.1:{fake_port}/v1/realtime",
    "--max-seconds",
    "900",
]
#: The same bridge on uvloop (when installed, as uvicorn's --loop auto) in W processes sharing
#: the port (SO_REUSEPORT): the floor of what W workers on one core cost against one, with no
#: Django, database or pacing.
SERVERS["reference-uvloop"] = [*SERVERS["reference"], "--uvloop", "--workers", "{workers}"]
WORKER_SERVERS.add("reference-uvloop")
#: The same bridge as an ASGI app under uvicorn (bench/reference_asgi.py): what the ASGI server
#: costs, without Django and the project.
SERVERS["reference-uvicorn"] = [
    *("-m", "bench.reference_asgi", "--port", "{port}"),
    *("--provider", "ws://127.0.0.1:{fake_port}/v1/realtime", "--workers", "{workers}"),
]
WORKER_SERVERS.add("reference-uvicorn")

MODES = ("echo", "duty", "sink")
#: Provider id -> the fake provider's ``--protocol``, and the short name of the one-line results.
PROTOCOLS = {
    "openai_realtime": "openai",
    "elevenlabs_convai": "elevenlabs",
    "pipeline": "pipeline",
}
#: The pipeline has no fake modes: its callers talk in turns and the fake answers each one.
PIPELINE_MODE = "turns"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Niceness of the bench's processes (``--nice``): other work on the machine yields to them.
NICE = 0


def pinned(core: str | None, argv: list[str]) -> list[str]:
    if core is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", core, *argv]
    if NICE and shutil.which("nice"):
        argv = ["nice", "-n", str(NICE), *argv]
    return argv


def wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers={"Host": "bench.example.test"}), timeout=2
            ) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def wait_workers(pid: int, workers: int, timeout: float = 60.0) -> None:
    """Wait until a server started with W > 1 workers has them all, and they have finished
    starting (the tree's CPU stops growing): the first worker answers /healthz/ while the
    others may still be importing Django on the same core."""
    if workers <= 1:
        return
    deadline = time.monotonic() + timeout
    while proctree.processes(pid) < workers + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    cpu = proctree.stat(pid)[0]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = proctree.stat(pid)[0]
        if now - cpu < 0.05:
            return
        cpu = now


def stop(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Bench:
    def __init__(self, args):
        self.args = args
        self.python = sys.executable
        self.tmp = Path(tempfile.mkdtemp(prefix="voiceagents-bench-"))
        self.fake_port = free_port()
        self.level_no = 0
        self.results: list[dict] = []
        self.stack = stack.make(
            args.stack,
            tmp=self.tmp,
            database_url=args.database_url,
            redis_url=args.redis_url,
            postgres_url=args.postgres_url,
        )
        self.env = dict(os.environ)
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "patter_site.settings",
                "DEBUG": "0",
                "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "VOICEAGENTS_PUBLIC_URL": PUBLIC_URL,
                "SECURE_SSL_REDIRECT": "0",
                "MEDIA_ROOT": str(self.tmp / "media"),
                "STATIC_ROOT": str(self.tmp / "static"),
                "VOICEAGENTS_RECORDING_TMP_DIR": str(self.tmp / "recordings"),
                "LOG_LEVEL": args.log_level,
                "PYTHONPATH": str(ROOT),
                # The sweep measures what one process can carry: its admission limits (50 calls,
                # 100 sockets from one address: the load generator's) would refuse the levels.
                "VOICEAGENTS_MAX_CALLS_PER_PROCESS": "0",
                "VOICEAGENTS_MEDIA_CONNECTIONS_PER_IP": "0",
                "VOICEAGENTS_WEBHOOK_RATE_PER_IP": "0",
            }
        )
        # The stack says which database and channel layer the server uses (bench.stack).
        for key in ("DATABASE_URL", "REDIS_URL"):
            self.env.pop(key, None)
        for extra in args.server_env:
            key, _, value = extra.partition("=")
            self.env[key] = value
        (self.tmp / "recordings").mkdir()

    # -- setup ----------------------------------------------------------------------------------

    def seed(self, stack_env: dict[str, str]) -> None:
        """One agent and number per provider, each pointed at the fake's port."""
        env = {**self.env, **stack_env}
        for provider in self.args.providers:
            cmd = [self.python, "-m", "bench.seed", "--provider", provider]
            if provider == "elevenlabs_convai":
                cmd += ["--elevenlabs-url", f"http://127.0.0.1:{self.fake_port}"]
            elif provider == "pipeline":
                cmd += ["--pipeline-url", f"http://127.0.0.1:{self.fake_port}"]
            else:
                cmd += ["--openai-url", f"ws://127.0.0.1:{self.fake_port}/v1/realtime"]
            if self.args.no_record:
                cmd.append("--no-record")
            subprocess.run(cmd, cwd=ROOT, env=env, check=True)

    # -- one server ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def serving(self, server: str, tag: str, fake_args: list[str]):
        """The fake provider (``fake_args``), then a fresh server on the stack's database for
        one level; yields ``(port, server process, fake process)`` and stops both after."""
        args = self.args
        port = free_port()
        log = open(self.tmp / f"server-{tag}.log", "wb")  # noqa: SIM115
        fake = server_proc = None
        try:
            # First in the try: a seed that fails still drops the level's scratch database.
            stack_env = self.stack.begin_level(self.seed)
            fake_cmd = [
                *(self.python, "-m", "bench.fakeprovider", "--port", str(self.fake_port)),
                *("--max-seconds", "900"),
                *fake_args,
            ]
            fake = subprocess.Popen(
                pinned(args.load_core, fake_cmd), cwd=ROOT, stdout=subprocess.PIPE, text=True
            )
            line = fake.stdout.readline()
            if not line.startswith("PORT"):
                raise RuntimeError(f"the fake provider did not start: {line!r}")
            argv = [
                self.python,
                *[
                    a.format(port=port, fake_port=self.fake_port, workers=args.workers)
                    for a in SERVERS[server]
                ],
            ]
            server_proc = subprocess.Popen(
                pinned(args.server_core, argv),
                cwd=ROOT,
                env={**self.env, **stack_env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if not wait_http(f"http://127.0.0.1:{port}/healthz/", 60):
                raise RuntimeError(f"{server} did not become healthy; see {log.name}")
            wait_workers(server_proc.pid, args.workers if server in WORKER_SERVERS else 1)
            time.sleep(0.5)
            yield port, server_proc, fake
        finally:
            stop(fake)
            stop(server_proc, signal.SIGINT)
            log.close()
            self.stack.end_level()
            if not args.keep:
                shutil.rmtree(self.tmp / "media", ignore_errors=True)

    def stack_facts(self) -> dict:
        """What a result says about the server's processes and stack."""
        return {
            "stack": self.stack.name,
            "workers": self.args.workers,
            "redis": bool(self.stack.env().get("REDIS_URL")),
        }

    # -- one level ----------------------------------------------------------------------------

    def level(self, server: str, mode: str, calls: int, provider: str = "openai_realtime") -> dict:
        args = self.args
        self.level_no += 1
        tag = f"{server}-{mode}-{PROTOCOLS[provider]}-{calls}"
        prefix = f"+1999{self.level_no:03d}"
        fake_out = self.tmp / f"fake-{tag}.pickle"
        gen_out = self.tmp / f"gen-{tag}.pickle"
        pipeline = provider == "pipeline"
        fake_args = [
            *("--protocol", PROTOCOLS[provider]),
            *("--mode", "sink" if pipeline else mode),
            *("--barge-in", str(args.barge_in if mode not in ("sink", PIPELINE_MODE) else 0)),
            *("--out", str(fake_out)),
        ]
        if pipeline:
            fake_args += [
                *("--stt-delay", str(args.stt_delay)),
                *("--llm-delay", str(args.llm_delay)),
                *("--tts-delay", str(args.tts_delay)),
            ]
        try:
            with self.serving(server, tag, fake_args) as (port, server_proc, fake):
                base_rss = proctree.stat(server_proc.pid)[1]
                profiler: list[subprocess.Popen] = []
                if args.profile:
                    self.profile(server_proc.pid, tag, calls, profiler)
                ramp = max(args.min_ramp, calls / args.ramp_rate)
                gen_cmd = [
                    self.python,
                    "-m",
                    "bench.loadgen",
                    "--target",
                    f"127.0.0.1:{port}",
                    "--public-url",
                    PUBLIC_URL,
                    "--auth-token",
                    AUTH_TOKEN,
                    "--to-number",
                    TO_NUMBERS[provider],
                    "--number-prefix",
                    prefix,
                    "--calls",
                    str(calls),
                    "--ramp",
                    f"{ramp:.2f}",
                    "--settle",
                    str(args.settle),
                    "--steady",
                    str(args.steady),
                    "--joiners",
                    str(args.joiners),
                    "--server-pid",
                    str(server_proc.pid),
                    "--fake-pid",
                    str(fake.pid),
                    "--out",
                    str(gen_out),
                ]
                if pipeline:
                    gen_cmd += ["--caller-talk", args.caller_talk]
                subprocess.run(
                    pinned(args.load_core, gen_cmd),
                    cwd=ROOT,
                    check=True,
                    timeout=ramp + args.steady + 180,
                )
                fake.send_signal(signal.SIGTERM)
                fake.wait(30)
                for proc in profiler:
                    proc.wait(60)
                # The rows are read before the level's scratch database (if any) is dropped.
                rows = self.stack.call_rows(prefix)
            with open(gen_out, "rb") as f:
                gen = pickle.load(f)
            with open(fake_out, "rb") as f:
                fake_data = pickle.load(f)
        finally:
            if not args.keep:
                for path in (fake_out, gen_out):
                    with contextlib.suppress(OSError):
                        path.unlink()
        result = analysis.analyse(gen, fake_data, out_margin=1.0 if pipeline else 0.0)
        if pipeline:
            analysis.analyse_pipeline(gen, fake_data, result)
        not_completed = {n: s for n, (s, _) in rows.items() if s != "completed"}
        result["db_not_completed"] = len(not_completed)
        if not_completed:
            result["failed"] += sum(1 for n in not_completed if n not in result["failures"])
            for n, status in list(not_completed.items())[:3]:
                result["failures"].setdefault(n, f"call row {status}")
        result.update(
            server=server,
            mode=mode,
            provider=provider,
            n=calls,
            base_rss=base_rss,
            ramp=ramp,
            worker_calls=stack.worker_shares(rows),
            **self.stack_facts(),
        )
        if pipeline:
            ok, why = analysis.passes_pipeline(result, added_ms=args.added_ms, p99_ms=args.p99_ms)
        else:
            ok, why = analysis.passes(result, p99_ms=args.p99_ms)
        result["pass"], result["why"] = ok, why
        return result

    def profile(self, pid: int, tag: str, calls: int, profiler: list) -> None:
        """py-spy records the steady window (it starts when the window does), or with
        --profile-phase ramp the calls' set-up, from the first call on."""
        args = self.args
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        ramp_s = max(args.min_ramp, calls / args.ramp_rate)
        if args.profile_phase == "ramp":
            delay, duration = 0.2, ramp_s + args.settle
        else:
            delay, duration = ramp_s + args.settle + 0.5, args.steady
        cmd = pinned(
            args.load_core,
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                *(["--subprocesses"] if args.workers > 1 else []),
                "--rate",
                "250",
                "--format",
                "raw",
                "--duration",
                str(max(1, round(duration))),
                *(["--native"] if args.profile_native else ["--nonblocking"]),
                "--output",
                str(Path(args.profile) / f"{tag}.txt"),
            ],
        )
        threading.Timer(
            delay,
            lambda: profiler.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ),
        ).start()

    # -- sweep --------------------------------------------------------------------------------

    def sweep(self) -> list[dict]:
        args = self.args
        self.stack.prepare(self.seed)
        try:
            for server in args.servers:
                for mode in args.modes:
                    self.sweep_one(server, mode)
        finally:
            self.stack.finish()
            if not args.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                print(f"(kept {self.tmp})")
        return self.results

    def sweep_one(self, server: str, mode: str) -> None:
        """The levels of one (server, mode), the providers' runs alternating at each level."""
        args = self.args
        held = dict.fromkeys(args.providers, 0)
        failed_at: dict[str, int | None] = dict.fromkeys(args.providers)
        for calls in args.levels:
            for provider in args.providers:
                if failed_at[provider] is not None:
                    continue
                if self.measure(server, mode, calls, provider):
                    held[provider] = calls
                else:
                    failed_at[provider] = calls
        # Narrow the gap between the last level held and the first failed one.
        narrowing = [p for p in args.providers if args.refine]
        while narrowing:
            for provider in list(narrowing):
                low, high = held[provider], failed_at[provider]
                mid = (
                    (low + high) // 2 // args.refine * args.refine or low + args.refine
                    if high is not None
                    else 0
                )
                if high is None or high - low <= args.refine or mid <= low or mid >= high:
                    narrowing.remove(provider)
                elif self.measure(server, mode, mid, provider):
                    held[provider] = mid
                else:
                    failed_at[provider] = mid
        for provider in args.providers:
            print(
                f"== {server} / {mode} / {provider}: largest N that holds: {held[provider]}",
                flush=True,
            )

    def measure(
        self, server: str, mode: str, calls: int, provider: str = "openai_realtime"
    ) -> bool:
        """One level: ``--repeat`` runs (fewer once a majority agrees), decided by the majority."""
        args = self.args
        runs: list[dict] = []
        while not decided(runs, args.repeat):
            runs.append(self.run_once(server, mode, calls, provider))
            if args.repeat > 1:
                print(
                    one_line(runs[-1]) + f"  (run {len(runs)} of up to {args.repeat})", flush=True
                )
        result = representative(runs)
        self.results.append(result)
        if len(runs) > 1:
            # The level's row: one of the runs above, standing for the majority.
            print(one_line(result) + "  (the level's row)", flush=True)
        else:
            print(one_line(result), flush=True)
        self.save()
        return result["pass"]

    def run_once(self, server: str, mode: str, calls: int, provider: str) -> dict:
        """One run (measured again once if another process disturbed a failing run)."""
        args = self.args
        started = time.monotonic()
        result = self.level(server, mode, calls, provider)
        result["seconds"] = round(time.monotonic() - started, 1)
        if not result["pass"] and disturbed(result) and args.retries:
            # Another process shared our cores during the window: measure again.
            print(one_line(result) + "  (disturbed: measuring again)", flush=True)
            first = {k: result[k] for k in ("why", "foreign0", "foreign1")}
            result = self.level(server, mode, calls, provider)
            result["seconds"] = round(time.monotonic() - started, 1)
            result["first_attempt"] = first
        return result

    def save(self) -> None:
        if self.args.json:
            path = Path(self.args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps(
                    {"argv": sys.argv, "machine": machine(), "levels": self.results},
                    indent=1,
                    default=str,
                )
            )


def decided(runs: list[dict], repeat: int) -> bool:
    """True once a majority of ``repeat`` runs passed, or a majority failed. An even ``repeat``
    that splits evenly is decided by one run more."""
    passed = sum(1 for r in runs if r["pass"])
    return max(passed, len(runs) - passed) > repeat // 2


def worst_p99(result: dict) -> float:
    p99s = [result[d]["p99"] for d in ("inbound", "outbound")]
    p99s = [x for x in p99s if x is not None and not math.isnan(x)]
    return max(p99s) if p99s else math.nan


def representative(runs: list[dict]) -> dict:
    """The run that stands for a level: of the runs with the majority's outcome, the median by
    worst p99. It carries how many runs passed, and the other runs' figures (``runs``)."""
    passed = sum(1 for r in runs if r["pass"])
    outcome = passed > len(runs) - passed
    group = sorted(
        (r for r in runs if r["pass"] == outcome),
        key=lambda r: (math.isnan(worst_p99(r)), worst_p99(r)),
    )
    chosen = dict(group[(len(group) - 1) // 2])
    chosen["runs_passed"] = f"{passed}/{len(runs)}"
    if len(runs) > 1:
        chosen["runs"] = [
            {k: r[k] for k in ("pass", "why", "cpu_per_call_minute", "server_core")}
            | {"inbound_p99": r["inbound"]["p99"], "outbound_p99": r["outbound"]["p99"]}
            for r in runs
        ]
    return chosen


def disturbed(result: dict) -> bool:
    """Other processes used ≥ 5 % of core 0 or ≥ 10 % of core 1 during the window."""
    f0, f1 = result.get("foreign0", math.nan), result.get("foreign1", math.nan)
    return (not math.isnan(f0) and f0 >= 0.05) or (not math.isnan(f1) and f1 >= 0.10)


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import platform

    from .loop import uvloop_available

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {model}, {mem:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, generator/fake loop: {'uvloop' if uvloop_available() else 'asyncio'}"
    )


def stack_text(args) -> str:
    if args.stack == "postgres+redis":
        redis = args.redis_url or stack.DEFAULT_REDIS
        return f"PostgreSQL (a scratch database per level, psycopg pool) and channels-redis on {redis}, no Celery worker"
    return (
        f"channel layer {'redis' if args.redis_url else 'in-memory'}; "
        f"DB {args.database_url or 'SQLite'}"
    )


def label(r: dict) -> str:
    """The server as a table names it: ``uvicorn``, ``uvicorn W=2 postgres+redis`` ..."""
    out = r["server"]
    if r.get("workers", 1) > 1:
        out += f" W={r['workers']}"
    if r.get("stack", "sqlite") != "sqlite":
        out += f" {r['stack']}"
    return out


def per_worker(r: dict) -> str:
    """``calls per worker 52 / 48`` when the server had several worker processes."""
    if r.get("workers", 1) <= 1 or "worker_calls" not in r:
        return ""
    return f"calls per worker {stack.shares_text(r['worker_calls'])}  "


def _f(x: float, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _verdict(r: dict, passed: str) -> str:
    """``passed`` or the reasons it failed, and how many runs passed when there were several."""
    verdict = passed if r["pass"] else "FAIL: " + "; ".join(r["why"])
    if "runs" in r:
        verdict += f" ({r['runs_passed']} runs passed)"
    return verdict


def provider_of(r: dict) -> str:
    """The level's provider (results saved before there was a choice are OpenAI's)."""
    return r.get("provider", "openai_realtime")


def one_line(r: dict) -> str:
    verdict = _verdict(r, "PASS")
    return (
        f"{label(r):>8} {PROTOCOLS.get(provider_of(r), provider_of(r)):>10} {r['mode']:>4} "
        f"N={r['n']:<4} in p50/p99/max {_f(r['inbound']['p50'])}/"
        f"{_f(r['inbound']['p99'])}/{_f(r['inbound']['max'])} ms  out {_f(r['outbound']['p50'])}/"
        f"{_f(r['outbound']['p99'])}/{_f(r['outbound']['max'])} ms  lost {r['in_lost']}/{r['out_lost']}  "
        f"cpu {_f(r['cpu_per_call_minute'], 3)} s/call-min ({_f(100 * r['server_core'], 0)}% core)  "
        f"rss {r['server_rss'] / 2**20:.0f} MB  health p99 {_f(r['health']['p99'])} ms  "
        f"set-up {_f(r.get('setup_s', math.nan))} s  {_first_audio(r)}  {_bargein(r)}{_added(r)}{per_worker(r)}core1 {_f(100 * r['core1'], 0)}%  other {_f(100 * r['foreign0'], 0)}/{_f(100 * r['foreign1'], 0)}%  "
        f"[{r.get('seconds', '?')} s]  {verdict}"
    )


def _bargein(r: dict) -> str:
    """Barge-in → clear, and the ElevenLabs fake's ping → pong, when the level had them."""
    out = ""
    clear = r.get("bargein_clear") or {}
    if clear.get("n"):
        out += (
            f"barge-in→clear p50/p99/max {_f(clear['p50'])}/{_f(clear['p99'])}/"
            f"{_f(clear['max'])} ms ({clear['n']}, missed {r.get('bargein_missed', 0)})  "
        )
    pong = r.get("pong") or {}
    if pong.get("n"):
        out += f"ping→pong p99 {_f(pong['p99'])} ms  "
    return out


def _added(r: dict) -> str:
    """The pipeline's added latency per caller turn, and where it went."""
    added = r.get("added") or {}
    if not added.get("n"):
        return ""
    parts = r.get("added_parts") or {}
    split = " + ".join(
        f"{name} {_f((parts.get(name) or {}).get('p50', math.nan))}"
        for name in ("inbound", "stt_to_llm", "llm_to_tts", "tts_to_caller")
    )
    late = (parts.get("fake_late") or {}).get("p99", math.nan)
    return (
        f"added p50/p99/max {_f(added['p50'])}/{_f(added['p99'])}/{_f(added['max'])} ms "
        f"({added['n']} turns, {r.get('turns_missing', 0)} unanswered; p50 {split}; "
        f"fake late p99 {_f(late)})  "
    )


def _first_audio(r: dict) -> str:
    return (
        f"first audio p50/max {_p50_max(r['first_audio'])} ms, "
        f"joining {_p50_max(r.get('first_audio_joining'))} ms"
    )


def _p50_max(summary: dict | None) -> str:
    summary = summary or {}
    return f"{_f(summary.get('p50', math.nan))} / {_f(summary.get('max', math.nan))}"


def rss_slope(levels: list[dict]) -> float:
    """MB of RSS per added call: least-squares slope over the levels with N ≥ 10."""
    points = [(r["n"], r["server_rss"] / 2**20) for r in levels if r["n"] >= 10 and r["server_rss"]]
    if len(points) < 2:
        return math.nan
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else math.nan


def held(levels: list[dict]) -> dict | None:
    """The last passing level before the first failing one."""
    best = None
    for r in levels:
        if not r["pass"]:
            break
        best = r
    return best


def tables(results: list[dict]) -> str:
    out = []
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in sorted(results, key=lambda r: r["n"]):
        groups.setdefault((label(r), r["mode"], provider_of(r)), []).append(r)
    groups = dict(
        sorted(groups.items(), key=lambda kv: [label(r) for r in results].index(kv[0][0]))
    )
    out.append(
        "\n| server | provider | mode | calls held (p99 ≤ 10 ms, 0 loss) | CPU-s per call-minute there | RSS per added call MB "
        "| barge-in → clear p99 ms | first audio p50 / max ms: the N calls starting 40 a second "
        "| first audio p50 / max ms: calls joining the N live ones |"
    )
    out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (server, mode, provider), levels in groups.items():
        best = held(levels)
        out.append(
            f"| {server} | {provider} | {mode} | {best['n'] if best else 0} | {_f(best['cpu_per_call_minute'], 3) if best else '–'} "
            f"| {_f(rss_slope(levels), 2)} | {_f(best['bargein_clear']['p99']) if best else '–'} "
            f"| {_p50_max(best['first_audio']) if best else '–'} "
            f"| {_p50_max(best.get('first_audio_joining')) if best else '–'} |"
        )
    for (server, mode, provider), levels in groups.items():
        if provider == "pipeline":
            out.append(pipeline_table(server, levels))
            continue
        best = held(levels)
        out.append(f"\n#### {server}, {provider}, {mode}: holds N = {best['n'] if best else 0}\n")
        out.append(
            "| N | in p50 / p95 / p99 / max ms | out p50 / p95 / p99 / max ms | lost in / out | dup | cleared "
            "| failed | CPU-s per call-min | server core | RSS MB | loop lag (healthz) p50 / p99 ms "
            "| barge-in → clear p50 / p99 / max ms | → truncate p99 ms | first audio p50 / max ms | all set up after s "
            "| first audio joining p50 / max ms | core 1 | other load core 0 / 1 | result |"
        )
        out.append("|" + " ---: |" * 18 + " --- |")
        for r in levels:
            i, o = r["inbound"], r["outbound"]
            out.append(
                f"| {r['n']} | {_f(i['p50'])} / {_f(i['p95'])} / {_f(i['p99'])} / {_f(i['max'])} "
                f"| {_f(o['p50'])} / {_f(o['p95'])} / {_f(o['p99'])} / {_f(o['max'])} "
                f"| {r['in_lost']} / {r['out_lost']} | {r['in_dup'] + r['out_dup']} | {r['out_cleared']} | {r['failed']} "
                f"| {_f(r['cpu_per_call_minute'], 3)} | {_f(100 * r['server_core'], 0)} % | {r['server_rss'] / 2**20:.0f} "
                f"| {_f(r['health']['p50'])} / {_f(r['health']['p99'])} "
                f"| {_f(r['bargein_clear']['p50'])} / {_f(r['bargein_clear']['p99'])} / {_f(r['bargein_clear']['max'])} "
                f"| {_f(r['bargein_truncate']['p99'])} "
                f"| {_p50_max(r['first_audio'])} | {_f(r.get('setup_s', math.nan))} "
                f"| {_p50_max(r.get('first_audio_joining'))} | {_f(100 * r['core1'], 0)} % "
                f"| {_f(100 * r['foreign0'], 0)} / {_f(100 * r['foreign1'], 0)} % "
                f"| {per_worker(r)}{_verdict(r, 'pass')} |"
            )
    return "\n".join(out)


def pipeline_table(server: str, levels: list[dict]) -> str:
    """The pipeline's levels: added latency per caller turn, and where it went (p99 of each
    step our code takes between the fake's fixed delays)."""
    best = held(levels)
    out = [
        f"\n#### {server}, pipeline: holds N = {best['n'] if best else 0} "
        "(added p99 ≤ the limit, every turn answered, caller audio p99 ≤ the relay limit)\n",
        "| N | added p50 / p99 / max ms (turns) | caller → STT p99 | results → LLM request p99 "
        "| sentence → TTS request p99 | TTS → caller p99 | fake late p99 | in p99 ms | lost in / out "
        "| failed | CPU-s per call-min | server core | RSS MB | first audio p50 / max ms "
        "| other load core 0 / 1 | result |",
        "|" + " ---: |" * 15 + " --- |",
    ]
    for r in levels:
        a, parts = r["added"], r["added_parts"]

        def p99(name, parts=parts):
            return _f(parts[name]["p99"])

        out.append(
            f"| {r['n']} | {_f(a['p50'])} / {_f(a['p99'])} / {_f(a['max'])} ({a['n']}"
            f"{', ' + str(r['turns_missing']) + ' unanswered' if r['turns_missing'] else ''}) "
            f"| {p99('inbound')} | {p99('stt_to_llm')} | {p99('llm_to_tts')} "
            f"| {p99('tts_to_caller')} | {p99('fake_late')} | {_f(r['inbound']['p99'])} "
            f"| {r['in_lost']} / {r['out_lost']} | {r['failed']} "
            f"| {_f(r['cpu_per_call_minute'], 3)} | {_f(100 * r['server_core'], 0)} % "
            f"| {r['server_rss'] / 2**20:.0f} | {_p50_max(r['first_audio'])} "
            f"| {_f(100 * r['foreign0'], 0)} / {_f(100 * r['foreign1'], 0)} % "
            f"| {_verdict(r, 'pass')} |"
        )
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Concurrent-call benchmark (see docs/benchmarks.md)")
    p.add_argument(
        "--servers",
        type=lambda s: s.split(","),
        default=["uvicorn", "daphne"],
        help=f"comma-separated, of {', '.join(SERVERS)}",
    )
    p.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    p.add_argument(
        "--providers",
        type=lambda s: s.split(","),
        default=["openai_realtime"],
        help=f"comma-separated, of {', '.join(PROVIDERS)}; their levels alternate",
    )
    p.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=list(DEFAULT_LEVELS)
    )
    p.add_argument("--steady", type=float, default=15.0, help="seconds of the measured window")
    p.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds between the last call start and the window",
    )
    p.add_argument("--ramp-rate", type=float, default=40.0, help="calls started per second")
    p.add_argument(
        "--joiners",
        type=int,
        default=-1,
        help="calls joining the N live ones one at a time in the window, each for 2 s "
        "(default: one per 3 s of window; 0: none)",
    )
    p.add_argument("--min-ramp", type=float, default=0.5)
    p.add_argument(
        "--barge-in", type=float, default=5.0, help="seconds between barge-ins per call (0: none)"
    )
    p.add_argument("--p99-ms", type=float, default=10.0)
    p.add_argument(
        "--added-ms",
        type=float,
        default=20.0,
        help="pipeline: the largest p99 added latency per caller turn that passes",
    )
    p.add_argument("--stt-delay", type=float, default=150.0, help="pipeline: the fake STT's ms")
    p.add_argument("--llm-delay", type=float, default=200.0, help="pipeline: the fake LLM's ms")
    p.add_argument("--tts-delay", type=float, default=100.0, help="pipeline: the fake TTS's ms")
    p.add_argument(
        "--caller-talk",
        default="1.5,3",
        help="pipeline: SPEAK,PAUSE seconds of each caller's turns",
    )
    p.add_argument(
        "--refine",
        type=int,
        default=10,
        help="after the first failing level, bisect down to this step (0: off)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per level; the level holds when most pass (3: stop after two that agree;"
        " an even number that splits evenly runs once more)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-measure a failed level once if other processes used our cores",
    )
    p.add_argument("--no-record", action="store_true", help="agent without call recording")
    p.add_argument(
        "--redis-url",
        default="",
        help="REDIS_URL of the server: channels-redis layer and Celery broker (default: in-memory "
        "layer and eager Celery; see docs/benchmarks.md)",
    )
    p.add_argument(
        "--database-url",
        default="",
        help="--stack sqlite: the server's DATABASE_URL (default: SQLite in a temporary directory)",
    )
    p.add_argument(
        "--stack",
        choices=stack.STACKS,
        default="sqlite",
        help="sqlite: SQLite, and the in-memory layer with eager Celery unless --redis-url; "
        "postgres+redis: a scratch PostgreSQL database per level and channels-redis on "
        f"--redis-url (default {stack.DEFAULT_REDIS}); see bench/stack.py",
    )
    p.add_argument(
        "--postgres-url",
        default=stack.DEFAULT_POSTGRES,
        help="--stack postgres+redis: where the scratch databases are created",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"worker processes of the server ({', '.join(sorted(WORKER_SERVERS))}); all pinned "
        "to --server-core, CPU and RSS summed over the process tree",
    )
    p.add_argument(
        "--server-env", action="append", default=[], help="KEY=VALUE for the server (repeatable)"
    )
    p.add_argument("--log-level", default="WARNING")
    p.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="niceness of the server, generator and fake (needs root; ignored otherwise)",
    )
    p.add_argument("--server-core", default="0")
    p.add_argument("--load-core", default="1")
    p.add_argument("--json", default=str(ROOT / "var" / "bench" / "calls.json"))
    p.add_argument(
        "--profile", default="", help="directory: record the server with py-spy (raw stacks)"
    )
    p.add_argument("--profile-native", action="store_true", help="py-spy --native (C frames too)")
    p.add_argument(
        "--profile-phase",
        choices=("window", "ramp"),
        default="window",
        help="what --profile records: the steady window, or the calls' set-up",
    )
    p.add_argument("--report", default="", help="print the tables of a saved --json file and exit")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, dumps)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        print(f"Call benchmark on {saved['machine']}")
        print(tables(saved["levels"]))
        return 0
    global NICE
    NICE = args.nice if os.geteuid() == 0 else 0
    for server in args.servers:
        if server not in SERVERS:
            raise SystemExit(f"unknown server {server!r}; choose from {', '.join(SERVERS)}")
        if args.workers > 1 and server not in WORKER_SERVERS:
            raise SystemExit(f"{server} runs one process: --workers needs one of {WORKER_SERVERS}")
    for provider in args.providers:
        if provider not in PROVIDERS:
            raise SystemExit(f"unknown provider {provider!r}; choose from {', '.join(PROVIDERS)}")
    if "pipeline" in args.providers:
        if len(args.providers) > 1:
            raise SystemExit("the pipeline runs alone (--providers pipeline): it has no modes")
        args.modes = [PIPELINE_MODE]
    if any(s.startswith("reference") for s in args.servers) and args.providers != [
        "openai_realtime"
    ]:
        raise SystemExit("the reference bridge speaks OpenAI Realtime only")
    print(f"Call benchmark on {machine()}")
    talk = f"barge-in every {args.barge_in} s"
    if args.providers == ["pipeline"]:
        talk = (
            f"callers talk {args.caller_talk} s; fake delays STT {args.stt_delay:g} + LLM "
            f"{args.llm_delay:g} + TTS {args.tts_delay:g} ms"
        )
    print(
        f"servers {','.join(args.servers)}; providers {','.join(args.providers)}; "
        f"modes {','.join(args.modes)}; levels {args.levels}; "
        f"steady {args.steady} s; {talk}; recording {'off' if args.no_record else 'on'}; "
        f"{stack_text(args)}; workers {args.workers}",
        flush=True,
    )
    results = Bench(args).sweep()
    print(tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
