"""Which server process runs which call, proven by a heartbeat.

A process killed mid-call (``kill -9``, an out-of-memory kill, a lost machine) writes nothing
about its calls. So every process that runs calls says so: when a call starts here it is
claimed (``Call.worker``, this process's id) and, while the process has live calls, its
``WorkerHeartbeat`` row is updated every ``HEARTBEAT_INTERVAL`` seconds. A process whose row
went quiet for ``HEARTBEAT_TIMEOUT`` seconds, or whose pid is gone from this host, is dead:
``services.recover_lost_calls`` closes its calls as ``lost`` and keeps their partial recordings.

One task per event loop does the beating, like the transcript writer: one database write every
few seconds whatever the number of calls, never anything on the audio path. A new call is
claimed within ``CLAIM_BATCH_S``, together with the calls that started with it. The first beat of
a process also runs the recovery once, so a restarted server closes what its predecessor left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading

from django.utils import timezone

from .. import dbthread
from ..conf import get_setting

__all__ = ["hold", "release", "worker_id"]

logger = logging.getLogger(__name__)

_ids: dict[int, str] = {}

#: A call's claim waits this long for the calls that start with it (a burst: one write for all).
CLAIM_BATCH_S = 0.25


def worker_id() -> str:
    """This process's id: host, pid and a random part (a restarted process may get the same
    pid: in a container it is often 1)."""
    pid = os.getpid()
    if pid not in _ids:  # computed per pid, so a forked child does not pass for its parent
        _ids[pid] = f"{socket.gethostname()[:60]}:{pid}:{secrets.token_hex(4)}"
    return _ids[pid]


def beat(worker: str, calls: int, claim: list) -> None:
    """Say (in the database) that ``worker`` is alive with ``calls`` calls; claim ``claim``."""
    from ..models import Call, WorkerHeartbeat

    fields = {
        "host": socket.gethostname()[:255],
        "pid": os.getpid(),
        "beat_at": timezone.now(),
        "calls": calls,
    }
    # One UPDATE for every beat but the first (update_or_create is a transaction, a locked read
    # and a whole-row save each time); the first, or one after the row was swept away, creates it.
    if not WorkerHeartbeat.objects.filter(worker=worker).update(**fields):
        WorkerHeartbeat.objects.update_or_create(worker=worker, defaults=fields)
    if claim:
        Call.objects.filter(pk__in=claim).update(worker=worker)


class _Heartbeat:
    """The heartbeat of one event loop's calls; gone (its task finished) with its last call."""

    _registry: dict[asyncio.AbstractEventLoop, _Heartbeat] = {}
    _lock = threading.Lock()
    #: Whether this process has looked for calls its predecessors left (once per process).
    _recovered_pid: int | None = None

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.calls: set[str] = set()
        self.unclaimed: set[str] = set()
        self.wake = asyncio.Event()
        self.task = loop.create_task(self._run(), name="voiceagents-heartbeat")

    @classmethod
    def of_running_loop(cls) -> _Heartbeat:
        loop = asyncio.get_running_loop()
        with cls._lock:
            heartbeat = cls._registry.get(loop)
            if heartbeat is None or heartbeat.task.done():
                for stale in [k for k in cls._registry if k.is_closed()]:
                    del cls._registry[stale]
                heartbeat = cls._registry[loop] = cls(loop)
            return heartbeat

    async def _run(self) -> None:
        interval = float(get_setting("HEARTBEAT_INTERVAL", cast=float))
        failures = 0
        while self.calls:
            claim = list(self.unclaimed)
            try:
                await dbthread.run(beat, worker_id(), len(self.calls), claim)
            except Exception:
                if not failures:
                    logger.exception("the heartbeat of this process's calls failed; retrying")
                failures += 1
            else:
                if failures:
                    logger.info("heartbeat written again after %d failures", failures)
                failures = 0
                self.unclaimed.difference_update(claim)
                await self._recover_once()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), interval)
            except TimeoutError:
                pass
            else:
                if self.calls and self.unclaimed:
                    # Woken by a new call: the calls starting with it are claimed in one write.
                    await asyncio.sleep(CLAIM_BATCH_S)
        with self._lock:
            if self._registry.get(self.loop) is self:
                del self._registry[self.loop]

    async def _recover_once(self) -> None:
        cls = type(self)
        if cls._recovered_pid == os.getpid():
            return
        cls._recovered_pid = os.getpid()
        from .. import services

        try:
            closed = await dbthread.run(services.recover_lost_calls)
        except Exception:
            logger.exception("looking for calls a stopped server left live failed")
        else:
            if closed:
                logger.warning("closed %d call(s) a stopped server process left live", closed)


def hold(call_id) -> None:
    """The call runs in this process from now on: claim it and keep the heartbeat going."""
    heartbeat = _Heartbeat.of_running_loop()
    heartbeat.calls.add(str(call_id))
    heartbeat.unclaimed.add(str(call_id))
    heartbeat.wake.set()  # claim it now rather than at the next beat


def release(call_id) -> None:
    """The call is over (its end is written): the heartbeat stops with the last call."""
    heartbeat = _Heartbeat._registry.get(asyncio.get_running_loop())
    if heartbeat is None:
        return
    heartbeat.calls.discard(str(call_id))
    heartbeat.unclaimed.discard(str(call_id))
    if not heartbeat.calls:
        heartbeat.wake.set()
