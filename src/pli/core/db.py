"""Database helpers for the hot paths (every send, every audited action)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Field, Model, QuerySet
from django.db.models.fields import AutoFieldMixin

M = TypeVar("M", bound=Model)


def insert_rows(objects: Sequence[Model], computed: Computed | None = None) -> None:
    """INSERT new rows of one model, many rows to a statement, without reading anything back.

    The values are prepared exactly as Django's own insert does (``pre_save``, which seals
    encrypted fields and fills ``auto_now_add``, then ``get_db_prep_save``), but without
    building a query object per call, which costs more than the insert itself. Rows with an
    automatic primary key get it from the database and don't learn it.

    ``computed``: for one column, an SQL expression the database evaluates for each row,
    and a function giving each object's parameters for it (already prepared for the
    database); the object's own value for that column is ignored and not learnt.
    """
    if not objects:
        return
    db = connections[DEFAULT_DB_ALIAS]  # the thread's connection itself, not the proxy
    fields, head, placeholders = _insert_plan(type(objects[0]), db.vendor, computed)
    if computed is None:
        rows = [[f.get_db_prep_save(f.pre_save(obj, True), db) for f in fields] for obj in objects]
    else:
        name, _, params = computed
        rows = [
            [
                value
                for f in fields
                for value in (params(obj) if f.name == name else [f.get_db_prep_save(f.pre_save(obj, True), db)])
            ]
            for obj in objects
        ]
    # As many rows to a statement as the backend takes parameters (PostgreSQL's protocol
    # counts them in 16 bits; Django knows SQLite's limit), up to a thousand rows.
    batch = max(1, min(db.ops.bulk_batch_size(fields, objects), 65535 // len(fields), 1000))
    with db.cursor() as cursor:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            cursor.execute(head + ", ".join([placeholders] * len(chunk)), [v for row in chunk for v in row])
    for obj in objects:
        obj._state.adding = False
        obj._state.db = db.alias


# (field name, SQL expression with %s placeholders, the parameters of an object for it)
Computed = tuple[str, str, Callable[[Any], Sequence[Any]]]
_INSERTS: dict[tuple[type[Model], str, str, str], tuple[list[Any], str, str]] = {}


def _insert_plan(model: type[Model], vendor: str, computed: Computed | None) -> tuple[list[Any], str, str]:
    """The columns an insert writes, the statement's head and one row's placeholders:
    worked out once per model, database vendor and computed column."""
    name, expression = (computed[0], computed[1]) if computed else ("", "")
    plan = _INSERTS.get((model, vendor, name, expression))
    if plan is None:
        meta = model._meta
        fields = [f for f in meta.concrete_fields if not (f.primary_key and isinstance(f, AutoFieldMixin))]
        quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
        head = "INSERT INTO {} ({}) VALUES ".format(  # noqa: S608 - names from the model, values bound
            quote(meta.db_table), ", ".join(quote(f.column) for f in fields)
        )
        row = ", ".join(f"({expression})" if f.name == name else "%s" for f in fields)
        plan = (fields, head, f"({row})")
        _INSERTS[(model, vendor, name, expression)] = plan
    return plan


def fetch(name: str, params: Sequence[Any], build: Callable[[], QuerySet[M]]) -> list[M]:
    """The objects ``build()``'s queryset yields, with the ones it ``select_related``, from
    SQL compiled once per database vendor, ``name`` and number of ``params``. When it is
    compiled, the queryset's own parameters must equal ``params``: the caller's order is
    checked, not assumed.

    For the lookups every request of a hot path makes (the link a patient opens, a
    download's access check): compiling a queryset with joins and subqueries costs the ORM
    a millisecond or more, several times what running it costs. ``params`` are database
    values (:func:`db_value`). Only plain columns and forward ``select_related`` (nested
    too: ``"message__sender"``) are supported; anything else is refused when the SQL is
    compiled.
    """
    key = (connection.vendor, name, len(params))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(name, params, build())
        _PLANS[key] = plan
    with connection.cursor() as cursor:
        cursor.execute(plan.sql, params)
        rows = cursor.fetchall()
    return [plan.load(row) for row in rows]


def db_value(model: type[Model], field: str, value: Any) -> Any:
    """``value`` as the ORM passes it to the database for ``model.field`` (a UUID is a
    ``uuid.UUID`` on PostgreSQL and hex text on SQLite, a datetime text on SQLite...)."""
    column = model._meta.get_field(field)
    if not isinstance(column, Field):
        raise TypeError(f"{model.__name__}.{field} is not a concrete field")
    return column.get_db_prep_value(value, connection, prepared=False)


class _Plan:
    """A compiled query and how its columns become objects: ``(model, start, stop)`` for
    the main model, then one ``(parent, field, model, start, stop, pk index)`` per related
    object, ``parent`` being the index of the object it hangs from (0: the main one, then
    the related ones in this order)."""

    def __init__(self, sql: str, model: type[Model], span: tuple[int, int], related: list[tuple[Any, ...]]) -> None:
        self.sql = sql
        self.model = model
        self.span = span
        self.related = related

    def load(self, row: Sequence[Any]) -> Any:
        obj = hydrate(self.model, row[self.span[0] : self.span[1]])
        loaded: list[Any] = [obj]
        for parent_index, field, model, start, stop, pk in self.related:
            parent = loaded[parent_index]
            values = row[start:stop]
            # An outer join that found nothing: a null foreign key (and nothing beyond it).
            target = hydrate(model, values) if parent is not None and values[pk] is not None else None
            if parent is not None:
                # As the ORM's RelatedPopulator: cache the object (or None) on the field.
                field.set_cached_value(parent, target)
                if target is not None and field.unique:
                    field.remote_field.set_cached_value(target, parent)
            loaded.append(target)
        return obj


_PLANS: dict[tuple[str, str, int], _Plan] = {}


def _plan(name: str, params: Sequence[Any], queryset: QuerySet[Any]) -> _Plan:
    compiler = queryset.query.get_compiler(using=connection.alias)
    sql, built = compiler.as_sql()
    if list(built) != list(params):
        raise RuntimeError(f"compiled query {name}: parameters {built!r} are not in the order given")

    def span(model: type[Model], fields: list[int]) -> tuple[int, int]:
        targets = [getattr(compiler.select[i][0], "target", None) for i in fields]
        columns = list(model._meta.concrete_fields)
        if not fields or fields != list(range(fields[0], fields[-1] + 1)) or targets != columns:
            raise RuntimeError(f"compiled query {name}: {model.__name__} is not selected as its plain columns")
        return fields[0], fields[-1] + 1

    info = compiler.klass_info
    if info is None:
        raise RuntimeError(f"compiled query {name}: not a query of model instances")
    related: list[tuple[Any, ...]] = []
    base = span(info["model"], info["select_fields"])
    covered = base[1] - base[0]

    def add(parent_index: int, infos: list[dict[str, Any]]) -> None:
        nonlocal covered
        for sub in infos:
            if sub["reverse"]:
                raise RuntimeError(f"compiled query {name}: only forward select_related is supported")
            start, stop = span(sub["model"], sub["select_fields"])
            pk = list(sub["model"]._meta.concrete_fields).index(sub["model"]._meta.pk)
            related.append((parent_index, sub["field"], sub["model"], start, stop, pk))
            covered += stop - start
            # The objects loaded so far are the main one and those in ``related``.
            add(len(related), sub.get("related_klass_infos", []))

    add(0, info.get("related_klass_infos", []))
    if covered != len(compiler.select):
        raise RuntimeError(f"compiled query {name}: it selects more than model columns")
    return _Plan(sql, info["model"], base, related)


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


@contextlib.contextmanager
def unsynced() -> Iterator[None]:
    """A transaction whose commit does not wait for the disk, for writes whose loss after a
    power cut or a crash of the machine does no harm (an API rate counter), on paths where
    a sync per request costs more than the request's own work.

    Atomic all the same, and a crash of Pli's processes loses nothing: only the machine
    going down can take back its last such commits. The next synced commit makes them
    durable too (SQLite's WAL and PostgreSQL's are written in order). On SQLite the sync
    also happens under the writers' lock (pli.core.sqlite3), so skipping it shortens
    every other writer's wait. Inside an outer transaction it is a savepoint, and the outer
    commit is synced as usual.
    """
    if connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous")
            level = int(cursor.fetchone()[0])
            cursor.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction.atomic():
                yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA synchronous={level}")
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


# SQLite's primary result code for an I/O error (the extended codes keep it in the low byte).
_SQLITE_IOERR = 10
# PostgreSQL's SQLSTATE classes for a lost connection and for a server shutting down.
_CONNECTION_LOST = ("08", "57")


def commit_may_have_happened(exc: BaseException | None) -> bool:
    """Whether ``exc``, raised out of a transaction, leaves its outcome unknown: the
    connection broke (PostgreSQL restarted, the network was cut, SQLite's disk failed) and
    the database may have committed before it could say so. False when the transaction
    certainly did not commit: a statement or constraint refused, a full disk, a busy SQLite,
    any error that is not the database's."""
    from django.db import DatabaseError, DataError, IntegrityError, NotSupportedError, ProgrammingError

    from pli.core import storage

    if not isinstance(exc, DatabaseError) or storage.is_full(exc):
        return False
    if isinstance(exc, IntegrityError | DataError | ProgrammingError | NotSupportedError):
        return False
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return not isinstance(code, int) or code & 0xFF == _SQLITE_IOERR
    sqlstate = getattr(cause, "sqlstate", None)
    return not isinstance(sqlstate, str) or sqlstate[:2] in _CONNECTION_LOST
