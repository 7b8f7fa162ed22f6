"""The database and channel layer behind the server under test (``--stack``).

``sqlite``: what the call sweep always used. One SQLite file in the bench's temporary directory,
migrated and seeded once for the whole run (each level's calls have their own numbers), the
in-memory channel layer and eager Celery, unless ``--redis-url`` / ``--database-url`` say
otherwise.

``postgres+redis``: the services ``.ci/run`` starts on 127.0.0.1. Each level gets a scratch
PostgreSQL database of its own (``va_bench_<random>``: created, migrated and seeded by
``bench.seed``, dropped after the level) and starts from an empty Redis database (default
``redis://127.0.0.1:6379/13``): the channels-redis layer and Celery's broker. The server runs with
the settings' PostgreSQL defaults, so with Django's psycopg pool (``patter_site/settings.py``
turns it on when ``CONN_MAX_AGE`` is 0). No Celery worker runs: the post-call task
(``finalize_call``) is queued in Redis and deleted with the level's keys; the call's row is
final before it is queued, so the bench's checks do not wait for it, and the server's CPU
includes queueing it but not running it (under eager Celery, the ``sqlite`` stack, the server
runs it itself).
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

STACKS = ("sqlite", "postgres+redis")
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
FINAL = frozenset({"completed", "busy", "no_answer", "failed", "canceled"})
#: Keys of the channel layer and Celery in the bench's Redis database.
REDIS_PATTERNS = ("asgi*", "celery*", "_kombu*", "unacked*")


def flush_redis(url: str) -> None:
    """Drop the channel layer's and Celery's keys from the Redis database ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for pattern in REDIS_PATTERNS:
            for key in client.scan_iter(pattern):
                client.delete(key)
    finally:
        client.close()


def unreachable(postgres_url: str, redis_url: str) -> str:
    """Why the PostgreSQL + Redis stack cannot run here ('' when it can)."""
    try:
        import psycopg

        with psycopg.connect(postgres_url, connect_timeout=3):
            pass
    except Exception as err:  # noqa: BLE001
        return f"PostgreSQL at {postgres_url} is not reachable ({type(err).__name__}: {err})"
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as err:  # noqa: BLE001
        return f"Redis at {redis_url} is not reachable ({type(err).__name__}: {err})"
    return ""


class SqliteStack:
    """One SQLite database for the whole run (``url``), optionally a Redis layer."""

    name = "sqlite"

    def __init__(self, url: str, redis_url: str = ""):
        self.url = url
        self.redis_url = redis_url

    def env(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.url}
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    def prepare(self, seed: Callable[[dict[str, str]], None]) -> None:
        seed(self.env())
        self._flush()

    def begin_level(self, seed: Callable[[dict[str, str]], None]) -> dict[str, str]:
        """The server's environment for one level (seeded once, in ``prepare``)."""
        return self.env()

    def end_level(self) -> None:
        self._flush()

    def finish(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self.redis_url:
            try:
                flush_redis(self.redis_url)
            except Exception as err:  # noqa: BLE001
                print(f"  (cannot clean Redis: {err})")

    def call_rows(self, prefix: str) -> dict[str, tuple[str, str]]:
        """Caller number -> (status, worker) of the calls from numbers starting with ``prefix``."""
        if not self.url.startswith("sqlite:///"):
            return {}
        path = self.url[len("sqlite:///") :]
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            rows = db.execute(
                "SELECT from_number, status, worker FROM voiceagents_call WHERE from_number LIKE ?",
                (prefix + "%",),
            ).fetchall()
        return {number: (status, worker) for number, status, worker in rows}


class PostgresRedisStack:
    """A scratch PostgreSQL database per level, an emptied Redis database per level."""

    name = "postgres+redis"

    def __init__(self, postgres_url: str = DEFAULT_POSTGRES, redis_url: str = DEFAULT_REDIS):
        self.postgres_url = postgres_url
        self.redis_url = redis_url or DEFAULT_REDIS
        self.database = ""

    def _url(self, database: str) -> str:
        parts = urlsplit(self.postgres_url)
        return urlunsplit(parts._replace(path="/" + database))

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.postgres_url, autocommit=True) as db:
            db.execute(sql)

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self._url(self.database), "REDIS_URL": self.redis_url}

    def prepare(self, seed: Callable[[dict[str, str]], None]) -> None:
        why = unreachable(self.postgres_url, self.redis_url)
        if why:
            raise SystemExit(f"--stack postgres+redis: {why}")

    def begin_level(self, seed: Callable[[dict[str, str]], None]) -> dict[str, str]:
        self.database = "va_bench_" + secrets.token_hex(6)
        self._admin(f'CREATE DATABASE "{self.database}"')
        flush_redis(self.redis_url)
        seed(self.env())
        return self.env()

    def end_level(self) -> None:
        if self.database:
            try:
                self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            except Exception as err:  # noqa: BLE001
                print(f"  (cannot drop the scratch database {self.database}: {err})")
            self.database = ""
        with contextlib.suppress(Exception):
            flush_redis(self.redis_url)

    def finish(self) -> None:
        self.end_level()

    def call_rows(self, prefix: str) -> dict[str, tuple[str, str]]:
        import psycopg

        with psycopg.connect(self._url(self.database)) as db:
            rows = db.execute(
                "SELECT from_number, status, worker FROM voiceagents_call WHERE from_number LIKE %s",
                (prefix + "%",),
            ).fetchall()
        return {number: (status, worker) for number, status, worker in rows}


def make(name: str, *, tmp: Path, database_url: str, redis_url: str, postgres_url: str):
    if name == "sqlite":
        return SqliteStack(database_url or f"sqlite:///{tmp / 'db.sqlite3'}", redis_url)
    if name == "postgres+redis":
        if database_url:
            raise SystemExit("--stack postgres+redis makes its own databases: use --postgres-url")
        return PostgresRedisStack(postgres_url or DEFAULT_POSTGRES, redis_url or DEFAULT_REDIS)
    raise SystemExit(f"unknown stack {name!r}; choose from {', '.join(STACKS)}")


def worker_shares(rows: dict[str, tuple[str, str]]) -> dict[str, int]:
    """Calls per server process (``Call.worker``; '' for a call never claimed by a worker)."""
    shares: dict[str, int] = {}
    for _, worker in rows.values():
        shares[worker or ""] = shares.get(worker or "", 0) + 1
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def shares_text(shares: dict[str, int]) -> str:
    """``52 / 48`` (largest first), with unclaimed calls named apart."""
    claimed = [n for w, n in shares.items() if w]
    text = " / ".join(str(n) for n in claimed) or "–"
    if shares.get(""):
        text += f" (+{shares['']} unclaimed)"
    return text
