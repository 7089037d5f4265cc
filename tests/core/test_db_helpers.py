"""pli.core.db: the hot-path helpers behave as the ORM does."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Count, Q

from pli.accounts.models import Mailbox, MailboxMember, User
from pli.core.db import commit_may_have_happened, db_value, fetch, hydrate, insert_rows, pipelined, unsynced
from pli.core.models import DataKey
from pli.testing.accounts import make_user
from pli.testing.faults import connection_lost_error, database_full_error


def test_fetch_checks_the_parameter_order(db: None) -> None:
    make_user(email="x@example.fr")
    with pytest.raises(RuntimeError, match="not in the order"):
        fetch("test.wrong_order", ["x", "Dr X"], lambda: Mailbox.objects.filter(Q(name="Dr X"), Q(address="x")))
    address = Mailbox.objects.get().address
    found = fetch("test.right_order", [address, ""], lambda: Mailbox.objects.filter(address=address, name__gt=""))
    assert [m.address for m in found] == [address]
    # Compiled once: a later call with other values of the same shape reuses the SQL.
    assert fetch("test.right_order", ["nobody@pli.localhost", ""], lambda: Mailbox.objects.none()) == []


def test_fetch_loads_select_related_objects_like_the_orm(db: None, django_assert_num_queries: Any) -> None:
    user = make_user()
    mailbox = Mailbox.objects.select_related("owner", "organisation").get(owner=user)
    params = [db_value(Mailbox, "id", mailbox.pk)]
    found = fetch(
        "test.with_related",
        params,
        lambda: Mailbox.objects.select_related("owner", "organisation").filter(pk=mailbox.pk),
    )
    assert len(found) == 1
    with django_assert_num_queries(0):
        assert found[0].owner == user
        assert found[0].owner.email == user.email
        assert found[0].organisation.name == mailbox.organisation.name
    # A null foreign key comes back as None, as the ORM's outer join gives it.
    Mailbox.objects.filter(pk=mailbox.pk).update(kind=Mailbox.Kind.ORGANISATIONAL, owner=None)
    again = fetch("test.with_related", params, lambda: Mailbox.objects.none())
    with django_assert_num_queries(0):
        assert again[0].owner is None


def test_fetch_loads_nested_select_related_objects_like_the_orm(db: None, django_assert_num_queries: Any) -> None:
    user = make_user()
    personal = Mailbox.objects.get(owner=user)
    shared = Mailbox.objects.create(
        address="accueil@pli.localhost",
        name="Accueil",
        kind=Mailbox.Kind.ORGANISATIONAL,
        organisation=personal.organisation,
    )
    MailboxMember.objects.create(mailbox=personal, user=user)
    MailboxMember.objects.create(mailbox=shared, user=user)

    def build() -> Any:
        return (
            MailboxMember.objects.select_related("mailbox__owner", "mailbox__organisation", "user")
            .filter(user=user)
            .order_by("mailbox__name")
        )

    found = fetch("test.nested", [db_value(User, "id", user.pk)], build)
    expected = list(build())
    assert [m.pk for m in found] == [m.pk for m in expected]
    with django_assert_num_queries(0):
        for got, want in zip(found, expected, strict=True):
            assert got.user.email == want.user.email
            assert got.mailbox.address == want.mailbox.address
            # Two levels down, and None behind a null foreign key, as the ORM gives them.
            assert (got.mailbox.owner and got.mailbox.owner.email) == (want.mailbox.owner and want.mailbox.owner.email)
            assert got.mailbox.organisation.name == want.mailbox.organisation.name
    assert {m.mailbox.owner is None for m in found} == {True, False}


def test_fetch_refuses_what_it_cannot_load(db: None) -> None:
    with pytest.raises(RuntimeError, match="plain columns"):
        fetch("test.only", [], lambda: Mailbox.objects.only("address"))
    with pytest.raises(RuntimeError, match="more than model columns"):
        fetch("test.annotated", [], lambda: Mailbox.objects.annotate(n=Count("members")))


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


def test_insert_rows_writes_every_row_across_statements(db: None) -> None:
    # More rows than one statement takes (1,000), and not a multiple of it.
    keys = [DataKey.wrapping(i.to_bytes(32, "big")) for i in range(2_345)]
    before = DataKey.objects.count()
    with transaction.atomic(), pipelined():
        insert_rows(keys)
    assert DataKey.objects.count() == before + len(keys)
    assert set(DataKey.objects.filter(pk__in=[k.pk for k in keys]).values_list("pk", flat=True)) == {k.pk for k in keys}
    assert all(not k._state.adding for k in keys)


def test_which_failures_leave_a_commit_outcome_unknown(db: None) -> None:
    """Only a lost connection (or SQLite's I/O error) may hide a commit that happened; a
    refused statement, a full disk, a busy database or any other error certainly did not
    commit, and the request's uploads can go at once."""
    assert commit_may_have_happened(connection_lost_error())
    assert not commit_may_have_happened(database_full_error())
    assert not commit_may_have_happened(IntegrityError("duplicate key"))
    assert not commit_may_have_happened(OSError(5, "Input/output error"))
    assert not commit_may_have_happened(None)
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    locked = OperationalError("database is locked")
    locked.__cause__ = busy
    assert not commit_may_have_happened(locked)


def _sync_setting() -> Any:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA synchronous")
        else:
            cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_unsynced_commits_without_waiting_for_the_disk_then_syncs_again(transactional_db: None) -> None:
    synced = _sync_setting()
    with unsynced():
        assert connection.in_atomic_block
        assert _sync_setting() == (1 if connection.vendor == "sqlite" else "off")  # NORMAL: no sync at commit
        make_user(email="counted@example.fr")
    assert User.objects.filter(email="counted@example.fr").exists()
    assert _sync_setting() == synced
    # A failing block rolls back, and the next transactions are synced again.
    with pytest.raises(IntegrityError), unsynced():
        make_user(email="other@example.fr")
        insert_rows([User(email="counted@example.fr", password="!")])
    assert not User.objects.filter(email="other@example.fr").exists()
    assert _sync_setting() == synced


def test_unsynced_inside_a_transaction_leaves_the_outer_commit_synced(transactional_db: None) -> None:
    synced = _sync_setting()
    with transaction.atomic():
        with unsynced():
            make_user(email="inner@example.fr")
        assert _sync_setting() == synced
    assert User.objects.filter(email="inner@example.fr").exists()
