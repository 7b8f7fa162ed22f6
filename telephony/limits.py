"""Abuse limits of one server process: webhooks per client IP, media connections per client IP,
live calls per process (docs/security.md#denial-of-service).

The counters are this process's memory: nothing here touches the database or the channel layer,
and each is consulted once per request or per connection, never per media frame. With several
processes each keeps its own counts, so the limits are per process (as the capacity figures of
docs/benchmarks.md are).

The client IP is the socket's peer. Behind a proxy every request would then share the proxy's
address, so ``VOICEAGENTS['TRUSTED_PROXY_HEADER']`` names the header the proxy sets
(``X-Forwarded-For``); it is read only when set, since any client can send that header.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

from voiceagents.conf import get_setting

logger = logging.getLogger(__name__)

#: ``Call.end_reason`` of a call refused because the process was at ``MAX_CALLS_PER_PROCESS``.
AT_CAPACITY = "at_capacity"
AT_CAPACITY_ERROR = (
    "The server was running as many calls as MAX_CALLS_PER_PROCESS allows; the caller got a busy "
    "signal."
)

#: The window of ``WEBHOOK_RATE_PER_IP``, in seconds.
RATE_WINDOW = 60.0


def _limit(name: str) -> int:
    """A limit setting as an int; 0 or less turns the limit off."""
    return int(get_setting(name, cast=int) or 0)


def client_ip(peer: str | None, headers: Iterable[tuple[str, str]]) -> str:
    """The client's address: the peer's, or the last entry of the trusted proxy header.

    The last entry is the one the proxy itself added; earlier ones come from the client and can
    say anything. ``headers`` are ``(name, value)`` pairs, names in any case.
    """
    trusted = get_setting("TRUSTED_PROXY_HEADER")
    if trusted:
        wanted = str(trusted).lower()
        for name, value in headers:
            if name.lower() == wanted and value.strip():
                return value.split(",")[-1].strip()
    return peer or "?"


def request_ip(request) -> str:
    """``client_ip`` of a Django request."""
    headers = (
        (key[5:].replace("_", "-"), value)
        for key, value in request.META.items()
        if key.startswith("HTTP_")
    )
    return client_ip(request.META.get("REMOTE_ADDR"), headers)


def scope_ip(scope: dict) -> str:
    """``client_ip`` of an ASGI connection scope."""
    client = scope.get("client")
    headers = (
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope.get("headers", ())
    )
    return client_ip(client[0] if client else None, headers)


class RequestRate:
    """Requests per client IP over the last ``RATE_WINDOW`` seconds."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # sync views may run in several threads (WSGI)
        self._last_sweep = 0.0

    def allow(self, ip: str, per_window: int) -> bool:
        """Count a request from ``ip``; False (and not counted) once it had ``per_window``."""
        now = self._clock()
        with self._lock:
            self._sweep(now)
            seen = self._seen.setdefault(ip, deque())
            while seen and seen[0] <= now - RATE_WINDOW:
                seen.popleft()
            if len(seen) >= per_window:
                return False
            seen.append(now)
            return True

    def _sweep(self, now: float) -> None:
        # Forget quiet addresses once a window, so that many one-off clients do not pile up.
        if now - self._last_sweep < RATE_WINDOW:
            return
        self._last_sweep = now
        for ip in [
            ip for ip, seen in self._seen.items() if not seen or seen[-1] <= now - RATE_WINDOW
        ]:
            del self._seen[ip]

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


class Slots:
    """Concurrent holders, in total or per key; only the event loop's thread uses it."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    def acquire(self, key: str, limit: int) -> bool:
        """Take a slot for ``key`` unless ``limit`` (> 0) are held; release it once when done."""
        held = self._held.get(key, 0)
        if limit > 0 and held >= limit:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def reset(self) -> None:
        self._held.clear()


_webhooks = RequestRate()
_connections = Slots()
_calls = Slots()
_CALLS = "calls"


def allow_webhook(ip: str) -> bool:
    """Count a webhook request from ``ip``: False once over ``WEBHOOK_RATE_PER_IP`` a minute."""
    limit = _limit("WEBHOOK_RATE_PER_IP")
    return limit <= 0 or _webhooks.allow(ip, limit)


def open_connection(ip: str) -> bool:
    """Take a media-connection slot of ``ip`` (``MEDIA_CONNECTIONS_PER_IP``); False if full."""
    return _connections.acquire(ip, _limit("MEDIA_CONNECTIONS_PER_IP"))


def close_connection(ip: str) -> None:
    _connections.release(ip)


def start_call() -> bool:
    """Take one of this process's ``MAX_CALLS_PER_PROCESS`` call slots; False if all are taken.

    A process that runs calls drains them when told to stop (``draining.install``)."""
    from . import draining

    draining.install()
    return _calls.acquire(_CALLS, _limit("MAX_CALLS_PER_PROCESS"))


def end_call() -> None:
    _calls.release(_CALLS)


def live_calls() -> int:
    return _calls.held(_CALLS)


def at_capacity() -> bool:
    """True when this process runs as many calls as it may: new calls get a busy refusal."""
    limit = _limit("MAX_CALLS_PER_PROCESS")
    return limit > 0 and live_calls() >= limit


#: ``Call.end_reason`` of a call refused because the process was draining (stopping).
DRAINING = "draining"
DRAINING_ERROR = (
    "The server process was stopping (draining its live calls) when the call came; the caller "
    "got a busy signal."
)


def refusal() -> tuple[str, str] | None:
    """Why this process takes no new call now (``end_reason``, error), or ``None``: it is
    draining, or at ``MAX_CALLS_PER_PROCESS``."""
    from .draining import draining

    if draining():
        return DRAINING, DRAINING_ERROR
    if at_capacity():
        return AT_CAPACITY, AT_CAPACITY_ERROR
    return None


def reset() -> None:
    """Forget every count (tests)."""
    from . import draining

    _webhooks.reset()
    _connections.reset()
    _calls.reset()
    draining.reset()
