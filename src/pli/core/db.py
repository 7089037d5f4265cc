"""Database helpers for the hot paths (every send, every audited action)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model, QuerySet
from django.db.models.fields import AutoFieldMixin

M = TypeVar("M", bound=Model)


def insert_rows(objects: Sequence[Model]) -> None:
    """INSERT new rows of one model in a single statement, without reading anything back.

    The values are prepared exactly as Django's own insert does (``pre_save``, which seals
    encrypted fields and fills ``auto_now_add``, then ``get_db_prep_save``), but without
    building a query object per call, which costs more than the insert itself. Rows with an
    automatic primary key get it from the database and don't learn it.
    """
    if not objects:
        return
    meta = objects[0]._meta
    fields = [f for f in meta.concrete_fields if not (f.primary_key and isinstance(f, AutoFieldMixin))]
    db = connections[DEFAULT_DB_ALIAS]  # the thread's connection itself, not the proxy
    quote = db.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 - names from the model, values bound
        quote(meta.db_table), ", ".join(quote(f.column) for f in fields), ", ".join(["%s"] * len(fields))
    )
    rows = [[f.get_db_prep_save(f.pre_save(obj, True), db) for f in fields] for obj in objects]
    with db.cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
    for obj in objects:
        obj._state.adding = False
        obj._state.db = db.alias


_COMPILED: dict[tuple[str, str, int], str] = {}


def compiled_sql(name: str, params: Sequence[Any], build: Callable[[], QuerySet[Any]]) -> str:
    """The SQL of the queryset ``build()`` returns, compiled once per database vendor, query
    ``name`` and number of ``params``; run it with ``params``.

    For queries every request runs: Django compiles a queryset's SQL on each evaluation,
    which costs several times more than running it. At compile time the queryset's own
    parameters must equal ``params``: the caller's order is checked, not assumed.
    """
    key = (connection.vendor, name, len(params))
    sql = _COMPILED.get(key)
    if sql is None:
        sql, built = build().query.sql_with_params()
        if list(built) != list(params):
            raise RuntimeError(f"compiled query {name}: parameters {built!r} are not in the order given")
        _COMPILED[key] = sql
    return sql


def hydrate(model: type[M], values: Sequence[Any]) -> M:
    """A saved instance of ``model`` from the values of its concrete columns, in order,
    converted as the ORM's compiler converts them (the backend's converters, then the
    field's ``from_db_value``)."""
    names, steps = _hydration(model, connection.vendor)
    converted = list(values)
    for index, col, converters in steps:
        value = converted[index]
        for converter in converters:
            value = converter(value, col, connection)
        converted[index] = value
    return model.from_db(connection.alias, names, converted)


_HYDRATION: dict[tuple[type[Model], str], tuple[list[str], list[tuple[int, Any, list[Any]]]]] = {}


def _hydration(model: type[Model], vendor: str) -> tuple[list[str], list[tuple[int, Any, list[Any]]]]:
    """The column names and, for the columns that need any, their converters: worked out
    once per model and database vendor."""
    key = (model, vendor)
    plan = _HYDRATION.get(key)
    if plan is None:
        steps = []
        for index, field in enumerate(model._meta.concrete_fields):
            col = field.get_col(model._meta.db_table)
            converters = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
            if converters:
                steps.append((index, col, converters))
        plan = ([f.attname for f in model._meta.concrete_fields], steps)
        _HYDRATION[key] = plan
    return plan


@contextlib.contextmanager
def pipelined() -> Iterator[None]:
    """On PostgreSQL, send the block's statements without waiting for each answer
    (psycopg's pipeline mode): a transaction of inserts then costs one round trip, not one
    per statement. Results are still read where the code fetches them, and errors still
    raise, at the latest when the block ends. Elsewhere it changes nothing."""
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    # An error the server reports at the pipeline's end is the driver's: make it Django's
    # (IntegrityError...), as if the statement had failed on its own.
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield
