import gc
import weakref

import pytest
from django.urls import get_resolver

from voiceagents.runtime import freeze_startup_objects, load_celery


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freeze_takes_django_out_of_full_collections(unfrozen):
    tracked_before = len(gc.get_objects())

    frozen = freeze_startup_objects()

    assert frozen > 10_000 and gc.get_freeze_count() > 10_000
    assert get_resolver()._populated  # the URLconf was loaded before the freeze
    # What a full collection walks now is a small fraction of what it walked.
    assert len(gc.get_objects()) < tracked_before / 4


def test_objects_created_after_the_freeze_are_still_collected(unfrozen):
    freeze_startup_objects()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector can free it
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None


def test_load_celery_finalizes_the_app_without_connecting_to_the_broker():
    from celery import Celery

    # Nothing listens on port 1: connecting would fail, so the warm-up must not connect.
    app = Celery("warm", set_as_current=False, broker="redis://127.0.0.1:1/0")

    @app.task(name="warm.noop")  # registered lazily, when the app is finalized
    def noop():
        return None

    assert not app.finalized

    load_celery(app)

    assert app.finalized and "warm.noop" in app.tasks
    connection = app.pool.acquire(block=False)  # the pool exists and hands out an idle object
    assert not connection.connected
    connection.release()


def test_the_start_up_freeze_loads_the_current_celery_app(unfrozen):
    from celery import Celery, current_app

    # A fresh current app: the project's one is already finalized by earlier tests, so it
    # could not show whether the freeze loads it.
    previous = current_app._get_current_object()
    app = Celery("fresh", broker="memory://", set_as_current=True)

    @app.task(name="fresh.noop")
    def noop():
        return None

    try:
        assert not app.finalized
        freeze_startup_objects()
        assert app.finalized and "fresh.noop" in app.tasks
    finally:
        previous.set_current()
