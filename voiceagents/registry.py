"""Small name → object registries, filled at import time (or in ``AppConfig.ready()``).

Vendors, providers, pipeline stages and carriers are plugins: each registers one spec in its
registry under its snake_case id, and model and admin choices are callables that read the
registry, so registering a new entry needs no migration. Registries are the only module-level mutable
state the apps allow, and they are not mutated while calls run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered registry of objects that have an ``id`` and a display ``name``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        entry_id = entry.id
        existing = self._entries.get(entry_id)
        if existing is not None and existing is not entry:
            raise ValueError(f"{self.kind} {entry_id!r} is already registered")
        self._entries[entry_id] = entry
        return entry

    def unregister(self, entry_id: str) -> None:
        """Remove an entry (a test's dummy vendor); unknown ids are ignored."""
        self._entries.pop(entry_id, None)

    def find(self, entry_id: object) -> T | None:
        """The entry, or None for an unknown id (or a blank or non-string value)."""
        return self._entries.get(entry_id) if isinstance(entry_id, str) else None

    def get(self, entry_id: str) -> T:
        try:
            return self._entries[entry_id]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise LookupError(f"Unknown {self.kind} {entry_id!r}; registered: {known}") from None

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries.values())

    def choices(self) -> list[tuple[str, str]]:
        return [(e.id, e.name) for e in self._entries.values()]
