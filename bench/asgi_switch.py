"""``patter_site.asgi`` with a shorter GIL switch interval: a candidate production setting.

The event loop shares the GIL with the thread that runs ORM work (call start and end, transcript
batches). When that thread holds the GIL, the loop waits up to ``sys.getswitchinterval()`` (5 ms
by default) before it gets it back, at every wake-up. The bench runs this as ``uvicorn-switch``.
"""

import sys

from patter_site.asgi import application

sys.setswitchinterval(0.0005)

__all__ = ["application"]
