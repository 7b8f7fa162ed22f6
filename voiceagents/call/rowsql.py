"""A row's narrow read and narrow update by primary key, as SQL built once per database.

The ORM builds every query anew (a ``Query``, its clone for each filter, a compiler, the SQL
text). For the few statements each call runs at its start and at its end (read the call's own
columns under a lock, write the columns that changed) that building cost more CPU than the
round trip itself. ``read`` and ``update`` build their statement once per model, column list
and database alias, with the backend's own quoting and ``FOR UPDATE``; the values go through
the fields exactly as the ORM sends them (``pre_save``, ``get_db_prep_save``) and come back
through the same converters (the backend's, then the field's), so every backend Django supports
works. As with ``QuerySet.update``, no model signal is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import NOT_PROVIDED, Model
from django.db.models.constants import OnConflict
from django.db.transaction import TransactionManagementError

M = TypeVar("M", bound=Model)

Converter = Callable[[Any, Any, Any], Any]
#: ``(unique_fields, update_fields)`` of an upsert, by field name.
Upsert = tuple[tuple[str, ...], tuple[str, ...]]


class _Read:
    """``SELECT <columns> FROM <table> WHERE <pk> = %s [FOR UPDATE]`` and how to read it back."""

    def __init__(self, model: type[Model], names: Sequence[str], connection, lock: bool):
        meta = model._meta
        wanted = {meta.get_field(name).attname for name in names} | {meta.pk.attname}
        # In the model's field order: ``Model.from_db`` pairs values with fields in that order.
        self.fields = [f for f in meta.concrete_fields if f.attname in wanted]
        self.attnames = [f.attname for f in self.fields]
        quote = connection.ops.quote_name
        columns = ", ".join(f"{quote(meta.db_table)}.{quote(f.column)}" for f in self.fields)
        self.sql = (
            f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s"
        )
        if lock and connection.features.has_select_for_update:
            self.sql += " " + connection.ops.for_update_sql()
        self.pk = meta.pk
        self.converters: list[tuple[Any, list[Converter]]] = []
        for field in self.fields:
            col = field.get_col(meta.db_table)
            # The compiler's own order: the backend's converters, then the field's.
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            self.converters.append((col, found))


class _Update:
    """``UPDATE <table> SET <column> = %s, ... WHERE <pk> = %s``."""

    def __init__(self, model: type[Model], names: Sequence[str], connection):
        meta = model._meta
        self.fields = [meta.get_field(name) for name in names]
        for field in self.fields:
            if field.primary_key or not field.concrete or hasattr(field, "get_placeholder"):
                raise ValueError(f"{model.__name__}.{field.name} cannot be updated here")
        quote = connection.ops.quote_name
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in self.fields)
        self.sql = (
            f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
        )
        self.pk = meta.pk


class _Insert:
    """``INSERT INTO <table> (<columns>) VALUES (%s, ...)[, (%s, ...) ...]`` of every concrete
    field but an auto-incremented primary key (which the database assigns and this does not read
    back), for ``rows`` rows; with ``upsert`` (unique fields, fields to update) the backend's own
    conflict clause, as ``bulk_create(update_conflicts=True)`` writes it."""

    def __init__(self, model: type[Model], connection, rows: int = 1, upsert: Upsert | None = None):
        meta = model._meta
        self.fields = [f for f in meta.concrete_fields if f is not meta.auto_field]
        for field in self.fields:
            if hasattr(field, "get_placeholder") or field.db_default is not NOT_PROVIDED:
                raise ValueError(f"{model.__name__}.{field.name} cannot be inserted here")
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in self.fields)
        placeholders = [["%s"] * len(self.fields)] * rows
        self.sql = (
            f"INSERT INTO {quote(meta.db_table)} ({columns}) "
            + connection.ops.bulk_insert_sql(self.fields, placeholders)
        )
        if upsert is not None:
            unique, updated = upsert
            suffix = connection.ops.on_conflict_suffix_sql(
                self.fields,
                OnConflict.UPDATE,
                [meta.get_field(name).column for name in updated],
                [meta.get_field(name).column for name in unique],
            )
            self.sql += " " + suffix


#: Most rows ``insert_many`` puts in one statement.
MAX_BATCH = 100

_plans: dict[tuple, _Read | _Update | _Insert] = {}
_plans_lock = threading.Lock()


def _plan(key: tuple, build: Callable[[], _Read | _Update | _Insert]):
    plan = _plans.get(key)
    if plan is None:
        with _plans_lock:
            plan = _plans.setdefault(key, build())
    return plan


def read(
    model: type[M], pk, names: Sequence[str], *, lock: bool = False, using: str = DEFAULT_DB_ALIAS
) -> M | None:
    """The row ``pk`` of ``model`` with only the fields ``names`` loaded (the rest deferred, as
    ``.only()`` leaves them), or None; ``lock``: ``SELECT ... FOR UPDATE`` where the database has
    it, inside the caller's transaction."""
    connection = connections[using]
    if lock and connection.get_autocommit():
        raise TransactionManagementError("read(lock=True) must run inside a transaction")
    plan = _plan(
        ("read", model, tuple(names), lock, using, connection.vendor),
        lambda: _Read(model, names, connection, lock),
    )
    with connection.cursor() as cursor:
        cursor.execute(plan.sql, [plan.pk.get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for value, (col, converters) in zip(row, plan.converters, strict=True):
        for convert in converters:
            value = convert(value, col, connection)
        values.append(value)
    return model.from_db(using, plan.attnames, values)


def update(instance: Model, names: Sequence[str], *, using: str | None = None) -> None:
    """Write the fields ``names`` of ``instance`` to its row; DatabaseError if it has none (as
    ``save(update_fields=...)`` raises)."""
    using = using or instance._state.db or DEFAULT_DB_ALIAS
    connection = connections[using]
    model = type(instance)
    plan = _plan(
        ("update", model, tuple(names), using, connection.vendor),
        lambda: _Update(model, names, connection),
    )
    params = [f.get_db_prep_save(f.pre_save(instance, False), connection) for f in plan.fields]
    params.append(plan.pk.get_db_prep_value(instance.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(plan.sql, params)
        updated = cursor.rowcount
    if not updated:
        raise DatabaseError(f"{model.__name__} {instance.pk}: the update affected no row")


def insert(instance: Model, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Insert ``instance`` as a new row, its values prepared as ``save()`` prepares them
    (``auto_now_add`` included). An auto-incremented primary key is left to the database and
    not read back; no model signal is sent. For rows nothing reacts to, such as a call's events.
    """
    insert_many([instance], using=using)


def insert_many(
    instances: Sequence[Model], *, upsert: Upsert | None = None, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Insert ``instances`` (of one model) as ``insert`` does, in as few statements as the
    backend's limit on parameters allows (``bulk_batch_size``, as ``bulk_create`` batches).
    ``upsert=(unique_fields, update_fields)``: a row that collides on ``unique_fields`` gets
    those ``update_fields`` instead, as with ``bulk_create(update_conflicts=True, ...)``."""
    if not instances:
        return
    connection = connections[using]
    model = type(instances[0])
    if any(type(instance) is not model for instance in instances):
        raise TypeError("insert_many takes instances of one model")
    one = _plan(
        ("insert", model, 1, upsert, using, connection.vendor),
        lambda: _Insert(model, connection, 1, upsert),
    )
    # Capped so that the statements built once stay few (one per batch size).
    size = max(1, min(MAX_BATCH, connection.ops.bulk_batch_size(one.fields, instances)))
    for start in range(0, len(instances), size):
        batch = instances[start : start + size]
        rows = len(batch)
        plan = _plan(
            ("insert", model, rows, upsert, using, connection.vendor),
            lambda: _Insert(model, connection, rows, upsert),  # noqa: B023 - called at once
        )
        params = [
            f.get_db_prep_save(f.pre_save(instance, True), connection)
            for instance in batch
            for f in plan.fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, params)
        for instance in batch:
            instance._state.adding = False
            instance._state.db = using
