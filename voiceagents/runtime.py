"""Process-level tuning for the ASGI processes that carry calls.

A full (generation 2) garbage collection walks every object the collector tracks. In a Django
process most of those are Django itself: the models, the URLconf, the admin, ~100,000 objects
that live as long as the process. Walking them took 60–70 ms of CPU on the benchmark machine,
and during that time every live call's audio stands still (docs/benchmarks.md). Python
collects generation 2 whenever enough new long-lived objects have piled up, which in a call
server means while calls start and end, i.e. while other calls are talking.

Work that Django and Celery do on first use belongs before that freeze too, and for a second
reason: done later, it runs while calls are live. Celery's first ``.delay()`` (at the first
call's end, ``finalize_call``) finalized the app and built its producer: ~35 ms of CPU in the
ORM thread, holding the GIL against the event loop, which delayed every live call's audio by up
to 40 ms for about 100 ms (docs/benchmarks.md, third round).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_startup_objects() -> int:
    """Load what is loaded lazily, then move everything alive out of the collector's walks.

    Call it once at the end of ``asgi.py``, after the application is built. Objects created
    later (calls, sessions, requests) are collected as usual; what is frozen is never freed,
    which is what the process would do with it anyway. Returns how many objects were frozen.
    """
    from django.urls import get_resolver

    # The URLconf (and with it the views and the admin) and its reverse tables load on the first
    # request otherwise, after the freeze, and would then be walked by every full collection.
    get_resolver().reverse_dict  # noqa: B018 - evaluated for its side effect
    load_celery()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("froze %d start-up objects out of full garbage collections", frozen)
    return frozen


def load_celery(app=None) -> None:
    """Do the work of Celery's first ``.delay()`` now, without touching the broker.

    Imports every installed app's tasks module (what ``autodiscover_tasks()`` defers), finalizes
    the app (builds the task classes), builds its routing and producer pool, and creates a broker
    connection object, which connects only when a task is sent. ``app`` defaults to the current
    Celery app (the project's, once it is imported).
    """
    from celery import current_app

    app = app if app is not None else current_app._get_current_object()
    app.loader.import_default_modules()
    app.finalize(auto=True)
    app.amqp  # noqa: B018 - evaluated for its side effect (routes, queues)
    app.producer_pool  # noqa: B018 - evaluated for its side effect
    try:
        connection = app.pool.acquire(block=False)
    except Exception:  # noqa: BLE001 - a warm-up must never stop the server from starting
        logger.warning("Celery: could not prepare a broker connection at start-up", exc_info=True)
    else:
        connection.release()
    import celery.app.trace  # noqa: F401 - runs every task, eager ones too
