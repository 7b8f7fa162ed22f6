"""The database thread (voiceagents.dbthread): one thread for the call path's ORM work."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import ThreadSensitiveContext
from django.db import connection

from voiceagents import dbthread
from voiceagents.models import Agent

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_job_returns_its_result_and_raises_its_error():
    assert await dbthread.run(lambda a, b=0: a + b, 2, b=3) == 5

    def fails():
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        await dbthread.run(fails)


async def test_jobs_run_in_one_thread_also_inside_a_request():
    # Django gives each request a thread-sensitive context: sync_to_async would run the work in
    # that request's own thread (and connection); the database thread is the same for all.
    outside = await dbthread.run(threading.get_ident)
    async with ThreadSensitiveContext():
        inside = await dbthread.run(threading.get_ident)
        request_thread = await _plain_sync_to_async(threading.get_ident)
    assert inside == outside != threading.get_ident()
    assert request_thread != inside


async def _plain_sync_to_async(fn):
    from asgiref.sync import sync_to_async

    return await sync_to_async(fn)()


async def test_the_orm_works_there_and_the_connection_stays_usable():
    await dbthread.run(Agent.objects.create, name="A", slug="a")
    assert await dbthread.run(Agent.objects.filter(slug="a").count) == 1

    def broken_query():
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(Exception, match="no_such_table"):
        await dbthread.run(broken_query)
    # The next job still works (an unusable connection would be dropped and opened again).
    assert await dbthread.run(Agent.objects.filter(slug="a").exists)


async def test_a_job_cancelled_before_it_started_does_not_run():
    started, release = threading.Event(), threading.Event()
    ran = []

    def block():
        started.set()
        return release.wait(10)

    blocker = asyncio.ensure_future(dbthread.run(block))
    while not started.is_set():  # the blocker holds the thread
        await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(dbthread.run(ran.append, "queued"))
    await asyncio.sleep(0.05)
    queued.cancel()
    while not queued.done():  # the cancellation reaches the executor before the thread is free
        await asyncio.sleep(0.01)
    release.set()
    assert await blocker is True
    with pytest.raises(asyncio.CancelledError):
        await queued
    await dbthread.run(ran.append, "after")
    assert ran == ["after"]


@pytest.fixture
def connects():
    """Each time Django opens (or, with a pool, takes) a connection: its alias."""
    from django.db.backends.signals import connection_created

    opened: list[str] = []

    def created(sender, connection, **kwargs):
        opened.append(connection.alias)

    connection_created.connect(created, weak=False)
    yield opened
    connection_created.disconnect(created)


async def test_the_connection_is_kept_from_one_job_to_the_next(connects):
    await dbthread.run(Agent.objects.exists)  # opens it, if no earlier test left it open
    connects.clear()
    for _ in range(3):
        await dbthread.run(Agent.objects.exists)
    # PostgreSQL too: taking it from the pool and setting it up again cost ~0.2 ms a job.
    assert connects == []


async def test_a_server_connection_idle_too_long_is_given_back_first(connects, monkeypatch):
    if connection.vendor == "sqlite":
        pytest.skip("a local SQLite file is kept for the process's life")
    monkeypatch.setattr(dbthread, "KEEP_IDLE_S", 0.05)
    await dbthread.run(Agent.objects.exists)
    connects.clear()
    await dbthread.run(Agent.objects.exists)
    assert connects == []
    await asyncio.sleep(0.1)
    await dbthread.run(Agent.objects.exists)
    assert connects == ["default"]
