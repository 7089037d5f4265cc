"""The practitioner's share list at scale: the shares of the whole instance are not scanned
to find one practitioner's (timings are measured by hand, never asserted)."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from pli.sharing import services
from pli.testing.accounts import make_user
from sharing.helpers import make_share


def test_a_practitioners_share_list_is_a_range_of_their_own_shares(db: None) -> None:
    doctor, colleague = make_user(), make_user()
    for user in (doctor, doctor, colleague):
        make_share(user)
    with CaptureQueriesContext(connection) as captured:
        shares = list(services.shares_for(doctor).order_by("-created_at")[:50])
        assert services.shares_for(doctor).count() == len(shares) == 2
    share_queries = [q["sql"] for q in captured.captured_queries if "pli_patient_share" in q["sql"]]
    assert share_queries
    for sql in share_queries:
        plan = _plan(sql)
        if connection.vendor == "sqlite":
            assert "(created_by_id=?)" in plan, plan
            # Not an "or" over the organisation's shares either: with statistics of a
            # full table, SQLite scans the whole table for it.
            assert "SCAN pli_patient_share" not in plan, plan
            assert "MULTI-INDEX OR" not in plan, plan
        else:
            # The planner may walk the creation-time index for the page rather than the
            # creator's: what matters is that one's own shares are the outer condition.
            assert sql.split(" WHERE ", 1)[1].startswith('("pli_patient_share"."created_by_id" = '), sql
            assert "BitmapOr" not in plan, plan


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            return " ".join(str(row[-1]) for row in cursor.fetchall())
        # A table this small is scanned whatever the condition: asked to avoid scans, the
        # planner shows which index the condition allows.
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute(f"EXPLAIN {sql}")
            return " ".join(str(row[0]) for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")
