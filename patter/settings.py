"""Django settings for ``phone.serve()``: the example project's, with the script's data directory.

Everything is ``patter_site.settings`` (the project ``make demo`` runs) except where the data
lives and what runs beside the server:

* the SQLite database, media (call recordings) and collected static files go under
  ``PATTER_DATA_DIR`` (default ``./patter-data``), unless ``DATABASE_URL``, ``MEDIA_ROOT`` or
  ``STATIC_ROOT`` say otherwise;
* ``SECRET_KEY``, unless set, is generated once and kept in ``<data dir>/secret_key``: it derives
  the key that encrypts the stored credentials, so it must neither be a published default nor
  change between runs;
* the channel layer is the in-memory one and Celery runs tasks eagerly, even when ``REDIS_URL``
  is set: a script is one process, with no worker beside it to pick tasks up.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

try:
    import patter_site  # noqa: F401
except ModuleNotFoundError:
    # patter_site ships in the repository, not in the installed package. A script started from
    # a checkout (``python examples/bot.py``) has the script's folder on sys.path, not the
    # checkout's root: add the root when this package sits in a checkout next to patter_site.
    _checkout = Path(__file__).resolve().parent.parent
    if not (_checkout / "patter_site" / "settings.py").is_file():
        raise ImproperlyConfigured(
            "phone.serve() runs the example project patter_site, which comes with a checkout "
            "of django-voiceagents (it is not in the installed package). Install from a "
            "checkout (pip install -e .) or set DJANGO_SETTINGS_MODULE to your own project."
        ) from None
    sys.path.append(str(_checkout))

from patter_site.settings import *  # noqa: E402, F403
from patter_site.settings import DATABASES  # noqa: E402

DATA_DIR = Path(os.environ.get("PATTER_DATA_DIR", "patter-data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

if "DATABASE_URL" not in os.environ:
    # patter_site's SQLite options (WAL, IMMEDIATE transactions) stay; only the file moves.
    DATABASES["default"]["NAME"] = str(DATA_DIR / "db.sqlite3")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or DATA_DIR / "media")
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or DATA_DIR / "static")


def _secret_key(path: Path) -> str:
    """The data directory's own secret key, created (readable by the owner only) on first use."""
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(key + "\n")
    return key


if "SECRET_KEY" not in os.environ:
    SECRET_KEY = _secret_key(DATA_DIR / "secret_key")

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CELERY_BROKER_URL = "memory://localhost/"  # a host named, or kombu warns on every start
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
