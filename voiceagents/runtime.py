"""Process-level tuning for the ASGI processes that carry calls.

A full (generation 2) garbage collection walks every object the collector tracks. In a Django
process most of those are Django itself: the models, the URLconf, the admin, ~100,000 objects
that live as long as the process. Walking them took 60–70 ms of CPU on the benchmark machine,
and during that time every live call's audio stands still (docs/benchmarks.md). Python
collects generation 2 whenever enough new long-lived objects have piled up, which in a call
server means while calls start and end, i.e. while other calls are talking.
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
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("froze %d start-up objects out of full garbage collections", frozen)
    return frozen
