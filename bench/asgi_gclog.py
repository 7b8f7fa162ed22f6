"""``patter_site.asgi`` that logs its garbage collections: a diagnostic server (``uvicorn-gclog``).

Every collection of generation 1 or 2 is appended to ``BENCH_GC_LOG`` (default
``var/bench/gc.log``) as ``monotonic_s generation ms collected``, with CLOCK_MONOTONIC like the
bench's other timestamps, so that a stall seen by the generator can be matched to a collection.
Generation-0 collections are only counted (they are frequent and short); their total goes in
the line of the next older collection.
"""

import gc
import os
import time

from patter_site.asgi import application

_path = os.environ.get("BENCH_GC_LOG", "var/bench/gc.log")
_started = [0.0]
_young = [0, 0.0]  # generation-0 collections since the last logged one, and their seconds


def _log(phase: str, info: dict) -> None:
    now = time.perf_counter()
    if phase == "start":
        _started[0] = now
        return
    took = now - _started[0]
    if info["generation"] == 0:
        _young[0] += 1
        _young[1] += took
        return
    with open(_path, "a") as f:
        f.write(
            f"{time.monotonic():.4f} {info['generation']} {took * 1000:.2f} {info['collected']} "
            f"young {_young[0]} {_young[1] * 1000:.1f}\n"
        )
    _young[0], _young[1] = 0, 0.0


gc.callbacks.append(_log)

__all__ = ["application"]
