"""``patter_site.asgi`` with a CPU sampler: a diagnostic server (``uvicorn-sampler``).

Every ``BENCH_SAMPLE_US`` (default 1000) microseconds of the process's CPU time (``SIGPROF``),
each thread's CPU time since the last sample is charged to the Python stack it is in, and at exit
the totals are written to ``BENCH_SAMPLES`` (default ``var/bench/samples.txt``) as collapsed
stacks (``frame;frame;... microseconds``, the format flame-graph tools read). Unlike a wall-clock
sampler it charges nothing to a thread that waits, and unlike cProfile it does not slow each
call. Python runs the handler on the main thread between bytecodes, so a sample can come late:
the CPU of a thread is charged to where it is when the handler runs.
"""

import atexit
import collections
import os
import signal
import sys
import threading
import time

from patter_site.asgi import application

_path = os.environ.get("BENCH_SAMPLES", "var/bench/samples.txt")
_interval = int(os.environ.get("BENCH_SAMPLE_US", "1000")) / 1e6
_totals: collections.Counter = collections.Counter()
_last: dict[int, float] = {}


def _stack(frame) -> str:
    names = []
    while frame is not None:
        code = frame.f_code
        names.append(f"{code.co_qualname} ({code.co_filename.rsplit('site-packages/', 1)[-1]})")
        frame = frame.f_back
    return ";".join(reversed(names))


def _sample(_signum, _frame) -> None:
    frames = sys._current_frames()
    for thread in threading.enumerate():
        ident = thread.ident
        if ident is None or ident not in frames:
            continue
        try:
            used = time.clock_gettime(time.pthread_getcpuclockid(ident))
        except OSError:
            continue
        spent = used - _last.get(ident, used)
        _last[ident] = used
        if spent > 0:
            _totals[f"{thread.name};{_stack(frames[ident])}"] += spent


def _dump() -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)
    with open(_path, "w") as out:
        for stack, seconds in _totals.items():
            out.write(f"{stack} {round(seconds * 1e6)}\n")


signal.signal(signal.SIGPROF, _sample)
signal.setitimer(signal.ITIMER_PROF, _interval, _interval)
atexit.register(_dump)

__all__ = ["application"]
