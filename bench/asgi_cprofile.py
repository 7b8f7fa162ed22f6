"""``patter_site.asgi`` under cProfile, every thread, by thread CPU time: a diagnostic server
(``uvicorn-cprofile``).

Each thread gets its own ``cProfile.Profile`` timed by ``time.thread_time`` (so the database
thread's work is not charged to the event loop's functions, as a process clock would), and at
exit their stats are merged into ``BENCH_CPROFILE`` (default ``var/bench/cprofile.pstats``).
Profiling slows every Python call, so read the shares and the call counts, not the absolute
times.
"""

import atexit
import cProfile
import os
import pstats
import threading
import time

from patter_site.asgi import application

_path = os.environ.get("BENCH_CPROFILE", "var/bench/cprofile.pstats")
_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


#: ``BENCH_CPROFILE_CLOCK=wall``: the event loop's thread only, timed by cProfile's own (wall)
#: clock, which costs far less per call than ``thread_time``'s system call and so distorts less.
_wall = os.environ.get("BENCH_CPROFILE_CLOCK") == "wall"


def _new_profile() -> cProfile.Profile:
    profile = cProfile.Profile() if _wall else cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(profile)
    return profile


def _thread_start(*_args) -> None:
    # The first profile event of a new thread replaces this hook with the thread's own profiler.
    _new_profile().enable()


def _dump() -> None:
    with _lock:
        profiles = list(_profiles)
    for profile in profiles:
        profile.disable()
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    stats.dump_stats(_path)


if not _wall:
    threading.setprofile(_thread_start)
_new_profile().enable()
atexit.register(_dump)

__all__ = ["application"]
