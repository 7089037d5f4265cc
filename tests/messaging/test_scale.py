"""The web pages at a busy practice's scale: the number of SQL queries a page costs must not
grow with the data (messages in a thread, attachments, members of a team, pages). Timings
are measured by hand, never asserted (see docs/operations.md)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.factories import OrganisationFactory, api_client, personal_mailbox, practitioner, web_client
from pli.accounts.models import Mailbox, User
from pli.audit import services as audit
from pli.audit.models import AuditEvent
from pli.messaging import services
from pli.messaging.models import Delivery, Folder


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured.captured_queries)


def _send(sender: User, recipient: User, **extra: Any) -> str:
    data = {
        "sender": personal_mailbox(sender).address,
        "to": [personal_mailbox(recipient).address],
        "subject": "Suivi",
        "body": "Texte",
        **extra,
    }
    response = api_client(sender).post("/api/v1/messages", data)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def _thread(alice: User, bob: User, length: int) -> str:
    """A thread of ``length`` messages between them; the id of its last message."""
    last = _send(alice, bob)
    for n in range(1, length):
        last = _send(bob, alice, in_reply_to=last) if n % 2 else _send(alice, bob, in_reply_to=last)
    return last


@pytest.fixture
def pair(db: None) -> tuple[User, User]:
    organisation = OrganisationFactory()
    return practitioner(organisation), practitioner(organisation)


def test_a_long_thread_costs_the_queries_of_a_short_one(pair: tuple[User, User]) -> None:
    """Each message shown is a read, recorded in the audit trail: one event per message, but
    appended together (one lock of the chain's head), not three statements per message."""
    alice, bob = pair
    short, long = _thread(alice, bob, 2), _thread(alice, bob, 12)
    client = web_client(bob)
    client.get(f"/messages/m/{short}/")
    client.get(f"/messages/m/{long}/")
    before = AuditEvent.objects.filter(action="message.read").count()
    assert _queries(client, f"/messages/m/{long}/") == _queries(client, f"/messages/m/{short}/")
    # Still one event per message read.
    assert AuditEvent.objects.filter(action="message.read").count() == before + 12 + 2
    assert audit.verify().ok


def _search_sql(box: Mailbox, query: services.SearchQuery) -> tuple[list[str], str]:
    """The subjects a search finds, and the SQL of its page query (the last one)."""
    with CaptureQueriesContext(connection) as captured:
        page = services.folder_page(box, None, query=query)
    return [str(item.message.subject) for item in page.items], captured.captured_queries[-1]["sql"]


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return " ".join(str(row[-1]) for row in cursor.fetchall())


def test_a_common_word_is_searched_newest_first_by_index(pair: tuple[User, User], monkeypatch: Any) -> None:
    """A word in many messages of the instance is not listed message by message: the
    mailbox's copies are walked newest first by an index, and the walk stops with the page,
    across folders. A rare word is still looked up from its messages; both find the same."""
    alice, bob = pair
    for n in range(6):
        _send(alice, bob, subject=f"Bilan sanguin {n}")
    _send(alice, bob, subject="Radiographie")
    box = personal_mailbox(bob)
    query = services.SearchQuery(text="bilan")
    rare, _ = _search_sql(box, query)
    monkeypatch.setattr(services, "RARE_WORD_MESSAGES", 3)
    common, sql = _search_sql(box, query)
    assert common == rare == [f"Bilan sanguin {n}" for n in reversed(range(6))]
    if connection.vendor == "sqlite":  # PostgreSQL's plans for tables this small say little
        plan = _plan(sql)
        assert "delivery_mailbox_page" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        # A date range is one range of the same index.
        _, dated = _search_sql(box, services.SearchQuery(date_from=datetime.date.today()))
        assert "delivery_mailbox_page (mailbox_id=? AND sent_at>?)" in _plan(dated)


def test_the_unread_alone_are_paged_by_index(pair: tuple[User, User]) -> None:
    """Software polling a big, mostly read inbox for its unread letters reads a range of an
    index of the unread alone, newest first, on every page: not the read copies (a full
    index with read_at as a column was left for the folder's index after the first page)."""
    alice, bob = pair
    for n in range(40):
        _send(alice, bob, subject=f"Lettre {n}")
    box = personal_mailbox(bob)
    copies = Delivery.objects.filter(mailbox=box).order_by("sent_at")
    Delivery.objects.filter(pk__in=list(copies.values_list("pk", flat=True))).update(read_at=timezone.now())
    Delivery.objects.filter(pk__in=list(copies.values_list("pk", flat=True))[::10]).update(read_at=None)
    with CaptureQueriesContext(connection) as captured:
        page = services.folder_page(box, Folder.INBOX, unread=True, limit=2)
    assert [str(item.message.subject) for item in page.items] == ["Lettre 30", "Lettre 20"] and page.next_cursor
    with CaptureQueriesContext(connection) as later:
        rest = services.folder_page(box, Folder.INBOX, unread=True, cursor=page.next_cursor)
    assert [str(item.message.subject) for item in rest.items] == ["Lettre 10", "Lettre 0"]
    if connection.vendor == "sqlite":
        for sql in (captured.captured_queries[-1]["sql"], later.captured_queries[-1]["sql"]):
            plan = _plan(sql)
            assert "delivery_unread_only" in plan and "TEMP B-TREE" not in plan, plan
        with CaptureQueriesContext(connection) as counted:
            assert services.unread_counts([box.pk]) == {box.pk: 4}
        assert "delivery_unread_only" in _plan(counted.captured_queries[-1]["sql"])


def test_what_arrived_after_a_number_is_one_range_of_an_index(pair: tuple[User, User]) -> None:
    """Software fetching what arrived after the last number it saw reads from that number
    on, in order: not the mailbox's copies before it, nor a sort of them."""
    alice, bob = pair
    for n in range(30):
        _send(alice, bob, subject=f"Lettre {n}")
    box = personal_mailbox(bob)
    with CaptureQueriesContext(connection) as captured:
        page = services.arrivals_page(box, 25, limit=3)
    assert [(item.uid, str(item.message.subject)) for item in page.items] == [
        (26, "Lettre 25"),
        (27, "Lettre 26"),
        (28, "Lettre 27"),
    ]
    assert page.next_cursor == "28"
    if connection.vendor == "sqlite":
        plan = _plan(captured.captured_queries[-1]["sql"])
        # The unique constraint (mailbox, uid) is the index (SQLite names it sqlite_autoindex_…).
        assert "(mailbox_id=? AND uid>?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
