"""``python -m bench.heard``: the truncate-error matrix (what the caller heard at a barge-in).

Runs the ``-m bench`` cases of tests/calls/test_heard_accounting.py (Twilio and Telnyx framing; a
fake carrier with one-way delay D and jitter buffer J playing in real time; 30 barge-ins per row
against the fake OpenAI Realtime) and prints, per carrier and row, the p95 and the mean of
``audio_end_ms`` (the ``conversation.item.truncate``) minus what had played when the ``clear``
reached the carrier. The bar is p95 ≤ 20 ms in every row. About six and a half minutes; its raw
figures go to ``var/bench/heard.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = "tests/calls/test_heard_accounting.py::test_truncate_error_matrix"
BAR_MS = 20.0


def table(rows: list[dict]) -> str:
    lines = [
        "Truncate error (audio_end_ms − heard at the carrier), ms; 30 barge-ins per row",
        "(20–80: random walk of the one-way delay, up to 1 ms a step every 100 ms; fast: 3 ms)",
        f"{'carrier':<8} {'D/J (ms)':<14} {'n':>3} {'p95 |err|':>10} {'mean':>7} {'max |err|':>10}",
    ]
    for row in rows:
        name = {"walk/80": "20–80/80", "fastwalk/80": "20–80 fast/80"}.get(row["row"], row["row"])
        lines.append(
            f"{row['carrier']:<8} {name:<14} {row['n']:>3} {row['p95_abs_ms']:>10.1f} "
            f"{row['mean_ms']:>7.1f} {row['max_abs_ms']:>10.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    out = ROOT / "var" / "bench" / "heard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    env = {**os.environ, "HEARD_JSON": str(out)}
    status = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-m", "bench", TESTS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,
    ).returncode
    rows = json.loads(out.read_text()) if out.exists() else []
    print(table(rows))
    worst = max((row["p95_abs_ms"] for row in rows), default=float("inf"))
    verdict = "ok" if worst <= BAR_MS else "over the bar"
    print(f"worst p95: {worst:.1f} ms (bar {BAR_MS:.0f} ms): {verdict}")
    return status


if __name__ == "__main__":
    sys.exit(main())
