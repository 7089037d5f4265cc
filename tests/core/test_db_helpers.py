"""pli.core.db: the hot-path helpers behave as the ORM does."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from pli.accounts.models import Mailbox, User
from pli.core.db import compiled_sql, hydrate, insert_rows, pipelined
from pli.core.models import DataKey
from pli.testing.accounts import make_user


def test_compiled_sql_checks_the_parameter_order(db: None) -> None:
    with pytest.raises(RuntimeError, match="not in the order"):
        compiled_sql("test.wrong_order", ["x", "Dr X"], lambda: Mailbox.objects.filter(Q(name="Dr X"), Q(address="x")))
    sql = compiled_sql("test.right_order", ["x", "Dr X"], lambda: Mailbox.objects.filter(address="x", name="Dr X"))
    # Compiled once: a later call with other values of the same shape reuses the SQL.
    assert compiled_sql("test.right_order", ["y", "Dr Y"], lambda: Mailbox.objects.none()) == sql


def test_hydrate_converts_columns_like_the_orm(db: None) -> None:
    user = make_user()
    mailbox = Mailbox.objects.filter(owner=user).first()
    assert mailbox is not None
    for model, pk in ((User, user.pk), (Mailbox, mailbox.pk)):
        columns = ", ".join(connection.ops.quote_name(f.column) for f in model._meta.concrete_fields)
        sql = f"SELECT {columns} FROM {model._meta.db_table} WHERE id = %s"  # noqa: S608 - names from the model
        with connection.cursor() as cursor:
            cursor.execute(sql, [model._meta.pk.get_db_prep_value(pk, connection)])
            row = cursor.fetchone()
        made = hydrate(model, row)
        expected = model.objects.get(pk=pk)
        for field in model._meta.concrete_fields:
            assert getattr(made, field.attname) == getattr(expected, field.attname), field.name
        assert not made._state.adding


def test_a_failing_statement_in_a_pipelined_transaction_raises_and_commits_nothing(db: None) -> None:
    first = DataKey.wrapping(b"\x00" * 32)
    twin = DataKey.wrapping(b"\x01" * 32)
    twin.id = first.id
    before = DataKey.objects.count()
    with pytest.raises(IntegrityError), transaction.atomic(), pipelined():
        insert_rows([first])
        insert_rows([twin])
    assert DataKey.objects.count() == before
    with transaction.atomic(), pipelined():
        insert_rows([first])
    assert DataKey.objects.filter(pk=first.pk).exists()
