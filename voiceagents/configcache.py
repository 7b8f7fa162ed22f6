"""A per-process cache of the configuration a call's set-up reads: numbers, agents, credentials.

Every call reads the same rows: the dialled number with its agent and carrier credential (voice
webhook), the carrier's auth tokens or webhook keys (signature checks), the agent and its
credentials (``callsetup.start_call``). A warm process answers these from memory.

How long an entry is trusted:

* In this process, at once: saving or deleting a ``PhoneNumber``, ``Agent`` or ``Credential``
  (``post_save``/``post_delete``) empties the whole cache, and again when that transaction
  commits (a read between the save and the commit would have cached the old row).
* Elsewhere (another server process, a ``QuerySet.update()``, raw SQL: no signal here), for at
  most ``VOICEAGENTS["CONFIG_CACHE_SECONDS"]`` (default 2.0; 0 turns the cache off).

Entries are immutable: tuples of strings and frozen dataclasses, or model instances kept
pickled (``models``), so each caller gets a private copy it may change (about 10 µs, against a
fraction of a millisecond for the query). The cache holds configuration only; a call's own row
is always read and written in the database.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.db import transaction

from .conf import get_setting
from .exceptions import ConfigurationError

__all__ = ["MISS", "clear", "get", "models", "peek", "seconds"]

T = TypeVar("T")

#: ``peek``'s answer when nothing valid is cached (None is a value: "no such number").
MISS: Any = object()
#: Entries kept at most; past it, expired ones go, then all (keys come from signed webhooks, but
#: a carrier account can dial any number of unknown ones).
MAX_ENTRIES = 4096

_lock = threading.Lock()
#: key → (monotonic expiry, value)
_entries: dict[Hashable, tuple[float, Any]] = {}
#: Bumped by ``clear``: a load that started before it must not store what it read.
_generation = 0


def seconds() -> float:
    """``CONFIG_CACHE_SECONDS``: how long an entry is trusted (0: no cache)."""
    value = get_setting("CONFIG_CACHE_SECONDS", cast=float)
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"VOICEAGENTS['CONFIG_CACHE_SECONDS'] must be a number of seconds, not {value!r}"
        ) from None


def peek(key: Hashable) -> Any:
    """The value cached under ``key`` and still valid, else ``MISS``. Never reads the database
    (safe on the event loop)."""
    now = time.monotonic()
    with _lock:
        entry = _entries.get(key)
    if entry is None or entry[0] <= now:
        return MISS
    return entry[1]


def get(key: Hashable, load: Callable[[], T]) -> T:
    """The value under ``key``; on a miss ``load()`` (sync, may query) and keep what it returns.

    The value must be immutable: every caller gets the same object.
    """
    ttl = seconds()
    if ttl <= 0:
        return load()
    return _get(key, load, ttl)


def _get(key: Hashable, load: Callable[[], T], ttl: float) -> T:
    value = peek(key)
    if value is not MISS:
        return value
    with _lock:
        generation = _generation
    value = load()
    expires = time.monotonic() + ttl
    with _lock:
        if generation == _generation:  # nothing was saved meanwhile
            if len(_entries) >= MAX_ENTRIES:
                _evict(time.monotonic())
            _entries[key] = (expires, value)
    return value


def models(key: Hashable, load: Callable[[], T]) -> T:
    """Like ``get`` for a graph of model instances (or None): kept pickled, and each caller
    gets its own unpickled copy, never an instance another call may have changed."""
    ttl = seconds()
    if ttl <= 0:
        return load()
    fresh = []

    def load_pickled() -> bytes:
        fresh.append(load())
        return pickle.dumps(fresh[0], pickle.HIGHEST_PROTOCOL)

    raw = _get(key, load_pickled, ttl)
    # The instances just loaded are this caller's alone: no need to unpickle them.
    return fresh[0] if fresh else pickle.loads(raw)


def _evict(now: float) -> None:
    """With ``_lock`` held: drop expired entries, and everything if that is not enough."""
    for key in [key for key, (expires, _) in _entries.items() if expires <= now]:
        del _entries[key]
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()


def clear() -> None:
    """Forget everything this process cached (and any load in progress)."""
    global _generation
    with _lock:
        _generation += 1
        _entries.clear()


def configuration_changed(sender, **kwargs) -> None:
    """``post_save``/``post_delete`` of a configuration model: clear now and after the commit."""
    clear()
    # A load between now and the commit reads the old row; it must not outlive the commit.
    transaction.on_commit(clear, using=kwargs.get("using"))


def connect_signals() -> None:
    """Clear on every save or delete of a ``PhoneNumber``, ``Agent`` or ``Credential``."""
    from django.db.models.signals import post_delete, post_save

    from .models import Agent, Credential, PhoneNumber

    for model in (PhoneNumber, Agent, Credential):
        for signal in (post_save, post_delete):
            signal.connect(
                configuration_changed,
                sender=model,
                dispatch_uid=f"voiceagents.configcache.{signal is post_save}.{model.__name__}",
            )
