"""The optional packages of the offline stages, imported only when such a stage is used."""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

from ..exceptions import ImproperlyInstalled

#: The extra that installs both packages.
EXTRA = "offline"


def require(module: str, package: str) -> ModuleType:
    """Import ``module``; when it is missing, ``ImproperlyInstalled`` names ``package`` and the
    ``offline`` extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImproperlyInstalled(package, EXTRA) from err


def worker(name: str) -> ThreadPoolExecutor:
    """One dedicated thread: the engines are C libraries that are neither thread-safe nor quick,
    so every call's work for one engine queues on a single thread, away from the event loop."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
