"""``python -m bench`` (``make bench``): the audio-core table, the provider leg's framing table,
the truncate-error matrix (what the caller heard at a barge-in under network delay and a jitter
buffer; bench/heard.py, about six and a half minutes), then a short call sweep.

The short sweep runs the production server recommended in the README (uvicorn) over the three
fake-provider modes at N = 10, 100 and 200 concurrent calls with a 5 s steady window; it takes
three to four minutes. Then one short ElevenLabs Conversational AI row: uvicorn, duty mode with
barge-ins, N = 10 and 100 (under a minute; its raw results go to ``var/bench/calls-elevenlabs.json``
so that they do not replace the OpenAI ones). Last, a short pipeline row (Deepgram → LLM → ElevenLabs
TTS fakes with fixed delays; uvicorn, N = 10 and 50, 8 s windows, about 40 s; its added latency per
caller turn goes to ``var/bench/calls-pipeline.json``). Then the scale-out rows (about two
minutes): a set-up burst (``bench.setup``: 40 calls a second for 5 s) on SQLite with one process,
the same burst against the reference bridge under uvicorn (the floor without Django), the same burst and a duty N = 100 level on PostgreSQL + Redis (skipped, with the reason, when
those services are not reachable on 127.0.0.1), and both with two worker processes (our
launcher, ``serve``; ``uvicorn --workers 2`` where ``voiceagents.serve`` is missing). The full sweep of docs/benchmarks.md is ``python -m bench.calls``
(both servers, N = 1 … 300, 15 s windows; about 20 minutes).
"""

from __future__ import annotations

import sys

from . import audio, calls, heard, setup, stack, wsframes

SHORT_SWEEP = [
    "--servers",
    "uvicorn",
    "--modes",
    "echo,duty,sink",
    "--levels",
    "10,100,200",
    "--steady",
    "5",
    "--retries",
    "0",
    "--refine",
    "0",
]


#: The ElevenLabs row: barge-in → clear is its figure to watch (the sweep's default barge-in
#: every 5 s applies, as in the OpenAI rows).
ELEVENLABS_ROW = [
    "--servers",
    "uvicorn",
    "--providers",
    "elevenlabs_convai",
    "--modes",
    "duty",
    "--levels",
    "10,100",
    "--steady",
    "5",
    "--retries",
    "0",
    "--refine",
    "0",
]


#: The pipeline row: the added latency per caller turn is its figure (docs/benchmarks.md,
#: "Pipeline"). 8 s windows: a caller turn every 4.5 s per call, so each call has one or two.
PIPELINE_ROW = [
    "--servers",
    "uvicorn",
    "--providers",
    "pipeline",
    "--levels",
    "10,50",
    "--steady",
    "8",
    "--retries",
    "0",
    "--refine",
    "0",
]


#: The W = 2 rows' server: our launcher (voiceagents/serve) when this checkout has it, else
#: uvicorn's own --workers (the same process tree: a parent and W workers). The checkout's files
#: decide, not the import system: an editable install may resolve voiceagents.serve elsewhere.
SCALE_SERVER = (
    "serve" if (calls.ROOT / "voiceagents" / "serve" / "__main__.py").is_file() else "uvicorn"
)
#: The scale-out rows: duty N = 100 with a 5 s window, and a set-up burst of 5 s at 40 a second.
SCALE_DUTY = [
    "--modes",
    "duty",
    "--levels",
    "100",
    "--steady",
    "5",
    "--retries",
    "0",
    "--refine",
    "0",
]
SCALE_BURST = ["--rate", "40", "--seconds", "5"]


def scale_rows(argv: list[str]) -> int:
    """Set-up burst on SQLite and its floor (``reference-uvicorn``); burst and duty N = 100 on
    PostgreSQL + Redis; both with W = 2."""
    out = str(calls.ROOT / "var" / "bench")
    failed = bool(setup.main([*SCALE_BURST, "--json", f"{out}/setup-sqlite.json"])[0]["failed"])
    print()
    # The floor to read it against: the reference bridge as an ASGI app under uvicorn.
    floor = [*SCALE_BURST, "--server", "reference-uvicorn", "--json", f"{out}/setup-floor.json"]
    failed |= bool(setup.main(floor)[0]["failed"])
    print()
    why = stack.unreachable(stack.DEFAULT_POSTGRES, stack.DEFAULT_REDIS)
    if why:
        print(f"Skipping the PostgreSQL + Redis rows: {why} (.ci/run starts both).")
    else:
        pg = ["--stack", "postgres+redis"]
        runs = setup.main([*SCALE_BURST, *pg, "--json", f"{out}/setup-postgres.json"])
        failed |= bool(runs[0]["failed"])
        print()
        duty = [*SCALE_DUTY, "--servers", "uvicorn", *pg, *argv]
        failed |= bool(calls.main([*duty, "--json", f"{out}/calls-postgres.json"]))
    print()
    w2 = ["--workers", "2"]
    burst = [*SCALE_BURST, "--server", SCALE_SERVER, *w2]
    failed |= bool(setup.main([*burst, "--json", f"{out}/setup-w2.json"])[0]["failed"])
    print()
    duty = [*SCALE_DUTY, "--servers", SCALE_SERVER, *w2, *argv]
    failed |= bool(calls.main([*duty, "--json", f"{out}/calls-w2.json"]))
    return int(failed)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    status = audio.main([])
    print()
    status = status or wsframes.main([])
    print()
    status = status or heard.main([])
    print()
    status = status or calls.main(SHORT_SWEEP + argv)
    print()
    json_path = str(calls.ROOT / "var" / "bench" / "calls-elevenlabs.json")
    status = status or calls.main(ELEVENLABS_ROW + argv + ["--json", json_path])
    print()
    json_path = str(calls.ROOT / "var" / "bench" / "calls-pipeline.json")
    status = status or calls.main(PIPELINE_ROW + argv + ["--json", json_path])
    print()
    return status or scale_rows(argv)


if __name__ == "__main__":
    sys.exit(main())
