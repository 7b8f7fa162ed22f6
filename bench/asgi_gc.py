"""``patter_site.asgi`` with the garbage collector tuned: a candidate production setting.

A full (generation 2) collection walks every object the collector tracks. In a Django process
that is most of Django, and with a hundred calls it took 60–100 ms of CPU here, during which
every call's audio stands still. ``gc.freeze()`` once the application is loaded moves what exists
by then (the code, Django, the URLconf) out of the collector's sight for good, so later full
collections only walk what the calls created. The bench runs it as the server ``uvicorn-gc``.
"""

import gc

from django.urls import get_resolver

from patter_site.asgi import application

# Load the URLconf (and with it the views and the admin) now rather than on the first request.
_ = get_resolver().url_patterns
gc.collect()
gc.freeze()

__all__ = ["application"]
