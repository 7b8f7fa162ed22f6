"""``python -m bench`` (``make bench``): the audio-core table, the provider leg's framing table,
the truncate-error matrix (what the caller heard at a barge-in under network delay and a jitter
buffer; bench/heard.py, about six and a half minutes), then a short call sweep.

The short sweep runs the production server recommended in the README (uvicorn) over the three
fake-provider modes at N = 10, 100 and 200 concurrent calls with a 5 s steady window; it takes
three to four minutes. Then one short ElevenLabs Conversational AI row: uvicorn, duty mode with
barge-ins, N = 10 and 100 (under a minute; its raw results go to ``var/bench/calls-elevenlabs.json``
so that they do not replace the OpenAI ones). Last, a short pipeline row (Deepgram → LLM → ElevenLabs
TTS fakes with fixed delays; uvicorn, N = 10 and 50, 8 s windows, about 40 s; its added latency per
caller turn goes to ``var/bench/calls-pipeline.json``). The full sweep of docs/benchmarks.md is ``python -m bench.calls`` (both
servers, N = 1 … 300, 15 s windows; about 20 minutes).
"""

from __future__ import annotations

import sys

from . import audio, calls, heard, wsframes

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
    return status or calls.main(PIPELINE_ROW + argv + ["--json", json_path])


if __name__ == "__main__":
    sys.exit(main())
