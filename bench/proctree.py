"""CPU time and memory of a server and the worker processes it started, from ``/proc``.

A server run with W workers (``uvicorn --workers W``, ``voiceagents.serve``) is a parent and W
children. Its CPU is the sum over the tree: each live process's ``utime + stime``, plus the
``cutime + cstime`` its parent collected from children that already exited (so a worker that
exits during a window is still counted, once). Its RSS is the sum of each process's ``VmRSS``
(pages shared between workers after a fork count once per process: an upper bound).
"""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (those started by any of its threads)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += children(p)
    return seen


def _cpu(pid: int) -> float:
    """Seconds of CPU of ``pid`` and of its children it has reaped."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14–17 of proc(5) (utime stime cutime cstime) are 11–14 after the ")".
    return sum(int(x) for x in fields[11:15]) / _TICK


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of ``pid``'s process tree; (nan, 0) if ``pid`` is gone."""
    cpu, rss, found = 0.0, 0, False
    for p in tree(pid):
        try:
            cpu += _cpu(p)
            rss += _rss(p)
            found = True
        except (OSError, IndexError, ValueError):
            continue  # exited between the listing and the read
    return (cpu, rss) if found else (float("nan"), 0)


def processes(pid: int) -> int:
    """How many processes the tree has (a server with W workers: W + 1, or 1)."""
    return len([p for p in tree(pid) if os.path.exists(f"/proc/{p}")])
