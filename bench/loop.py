"""Event loop choice for the bench's own processes: uvloop when installed (the ``bench`` extra)."""

from __future__ import annotations

import asyncio


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(coro, *, uvloop: bool = True):
    if uvloop and uvloop_available():
        import uvloop as _uvloop

        return _uvloop.run(coro)
    return asyncio.run(coro)
