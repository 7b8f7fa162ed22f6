"""One long-lived thread per process for the call path's database work.

A call's set-up and end touch the database a few times (the voice webhook, the stream's start,
the transcript batches, the heartbeat, the final write). Through ``database_sync_to_async`` each
of those hops closes its thread's connection before and after the work (``CONN_MAX_AGE`` 0),
and Django under ASGI runs each request's sync code in a new thread with a new connection. On
SQLite a connection costs its open, its ``init_command`` pragmas and, in WAL mode, a checkpoint
when the last one closes: about a millisecond a hop, a large part of a call's set-up when 40
calls a second arrive (docs/benchmarks.md).

``run(fn, *args)`` runs ``fn`` in this process's database thread and awaits its result. That
thread is asgiref's process-wide one for thread-sensitive code (where ``database_sync_to_async``
runs outside a request), also inside a Django request: a request's own thread would get a
connection of its own. Work nested in an ``async_to_sync`` goes to its outer thread, as with
``sync_to_async``. The thread keeps its connections between jobs:

* **SQLite**: the connection stays open for the life of the process (a local file cannot go
  away; ``CONN_MAX_AGE`` is not consulted). It is dropped after a job that left it unusable or
  with autocommit changed, and opened again by the next job.
* **Any other database** (PostgreSQL): the connection is kept while jobs keep coming, and given
  back (closed, or returned to the psycopg pool) once it has idled ``KEEP_IDLE_S``, or sooner
  by Django's own rule when ``CONN_MAX_AGE`` is set (``close_if_unusable_or_obsolete``). Taking
  it from the pool and setting it up for each job cost ~0.2 ms a job, four or five jobs a call.
  A database that restarted costs the job that found out, as it would in a request: the
  connection is dropped after an error leaves it unusable, and the next job connects again.

Jobs run one at a time, in order: the call path's ORM work already queued behind one thread
(``database_sync_to_async`` is thread-sensitive), and SQLite takes one writer at a time anyway.
A job whose awaiting task was cancelled before it started is skipped; one that started finishes
(never cancelled halfway through a transaction). The audio path never waits on this thread.

At interpreter exit (``atexit``, after the thread has finished its queue) the SQLite
connections it kept are closed, so SQLite checkpoints its WAL.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

from asgiref.sync import SyncToAsync, sync_to_async
from django.db import connections

__all__ = ["run", "close_kept_connections"]

logger = logging.getLogger(__name__)

#: A connection to a database server that no job used for this long is given back before the
#: next job (a server-side idle timeout, a proxy or a failover may have ended it meanwhile).
KEEP_IDLE_S = 30.0

#: When the last job ended (monotonic seconds).
_last_job_end = 0.0

#: The connections kept open between jobs, to close at exit.
_kept: set = set()
_kept_lock = threading.Lock()


async def run(fn, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` in this process's database thread; its result or exception."""
    # Not the request's own thread (Django gives each request a thread-sensitive context).
    token = SyncToAsync.thread_sensitive_context.set(None)
    try:
        return await sync_to_async(_job, thread_sensitive=True)(fn, args, kwargs)
    finally:
        SyncToAsync.thread_sensitive_context.reset(token)


def _job(fn, args, kwargs):
    global _last_job_end
    if time.monotonic() - _last_job_end > KEEP_IDLE_S:
        _give_back_idle_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        _tidy_connections()
        _last_job_end = time.monotonic()


def _give_back_idle_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.vendor != "sqlite" and connection.connection is not None:
            try:
                connection.close()
            except Exception:
                logger.exception(
                    "closing the database thread's %s connection failed", connection.alias
                )


def _tidy_connections() -> None:
    """After each job: keep a usable connection (Django's rule where ``CONN_MAX_AGE`` is set)."""
    for connection in connections.all(initialized_only=True):
        try:
            if connection.vendor != "sqlite" and connection.settings_dict["CONN_MAX_AGE"]:
                connection.close_if_unusable_or_obsolete()  # the site chose its own rule
            elif connection.connection is not None and (
                connection.in_atomic_block
                or connection.get_autocommit() != connection.settings_dict["AUTOCOMMIT"]
                or (connection.errors_occurred and not connection.is_usable())
            ):
                logger.warning("dropping the database thread's %s connection", connection.alias)
                connection.close()
            else:
                connection.errors_occurred = False
                if connection.connection is not None and connection not in _kept:
                    with _kept_lock:
                        _kept.add(connection)
        except Exception:
            logger.exception("tidying the database thread's %s connection failed", connection.alias)


def close_kept_connections() -> None:
    """Close the connections kept between jobs (at exit, when its thread has stopped; a test
    run's end, before it drops its database)."""
    with _kept_lock:
        kept = list(_kept)
        _kept.clear()
    for connection in kept:
        try:
            connection.inc_thread_sharing()  # closed from this thread, once its own is done
            try:
                connection.close()
            finally:
                connection.dec_thread_sharing()
        except Exception:
            logger.exception("closing the database thread's %s connection failed", connection.alias)


atexit.register(close_kept_connections)
