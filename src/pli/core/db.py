"""Database helpers for the hot paths (every send, every audited action)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin


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
