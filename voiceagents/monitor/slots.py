"""At most a few monitor sockets per user, counted in Django's default cache.

Each open socket holds one of its user's numbered slots (a cache key added atomically, so two
processes cannot take the same one) and renews it while open; a socket that dies without
releasing its slot (a killed process) frees it after ``SLOT_TTL_S``. With a cache shared by every
process (Redis, Memcached, the database) the limit holds across them; with the default local
memory cache it holds per process.
"""

from __future__ import annotations

from django.core.cache import cache

#: Seconds a slot lives without being renewed; open sockets renew it every third of that.
SLOT_TTL_S = 60


def _key(user_id, slot: int) -> str:
    return f"voiceagents:monitor-socket:{user_id}:{slot}"


async def claim(user_id, limit: int) -> str | None:
    """A free slot of ``user_id``'s ``limit`` (its cache key), or ``None`` if all are taken."""
    for slot in range(limit):
        key = _key(user_id, slot)
        if await cache.aadd(key, 1, SLOT_TTL_S):
            return key
    return None


async def renew(key: str) -> None:
    if not await cache.atouch(key, SLOT_TTL_S):
        # Expired meanwhile (the cache was cleared or evicted it): hold it again.
        await cache.aset(key, 1, SLOT_TTL_S)


async def release(key: str) -> None:
    await cache.adelete(key)
