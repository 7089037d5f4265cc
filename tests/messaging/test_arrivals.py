"""Software that files each new letter: every copy is numbered in its mailbox (`uid`) in the
order it arrived, and `after_uid` lists what came after the last number the software saw,
whatever people read or filed meanwhile."""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

import requests
from django.db import connection, transaction
from django.utils import timezone

from messaging.factories import api_client, personal_mailbox, practitioner, shared_mailbox
from messaging.live import Server, own_database, server_env, setup_users
from pli.accounts.models import Mailbox, User
from pli.audit.models import AuditEvent
from pli.messaging import services
from pli.messaging.models import Delivery, ExternalSender


def send(sender: User, box: Mailbox, to: list[Mailbox], subject: str = "Résultats", **extra: Any) -> str:
    data = {"sender": box.address, "to": [m.address for m in to], "subject": subject, "body": "Texte", **extra}
    response = api_client(sender).post("/api/v1/messages", data)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def arrivals(user: User, box: Mailbox, query: str) -> Any:
    response = api_client(user).get(f"/api/v1/mailboxes/{box.pk}/messages?{query}")
    assert response.status_code == 200, response.content
    return response.json()


def test_software_sees_each_letter_once_whatever_people_did_with_it(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first, second, third = (send(alice, a_box, [b_box], f"Lettre {n}") for n in range(3))
    people = api_client(bob)
    # Before the software comes by, Bob opened one letter, archived another, binned the third.
    assert people.get(f"/api/v1/messages/{first}").status_code == 200
    assert people.post(f"/api/v1/messages/{second}/move", {"folder": "archive"}).status_code == 200
    assert people.post(f"/api/v1/messages/{third}/move", {"folder": "trash"}).status_code == 200

    page = arrivals(bob, b_box, "after_uid=0&limit=2")
    assert [(r["id"], r["uid"], r["folder"], r["unread"]) for r in page["results"]] == [
        (first, 1, "inbox", False),
        (second, 2, "archive", True),
    ]
    assert page["next"].endswith(f"/api/v1/mailboxes/{b_box.pk}/messages?after_uid=2&limit=2")
    rest = arrivals(bob, b_box, "after_uid=2&limit=2")
    assert [(r["id"], r["uid"], r["folder"]) for r in rest["results"]] == [(third, 3, "trash")]
    assert rest["next"] is None
    assert arrivals(bob, b_box, "after_uid=3") == {"next": None, "results": []}
    fourth = send(alice, a_box, [b_box], "Lettre 3")
    assert [(r["id"], r["uid"]) for r in arrivals(bob, b_box, "after_uid=3")["results"]] == [(fourth, 4)]
    # Listing by arrival shows subjects: recorded as any listing.
    event = AuditEvent.objects.filter(action="mailbox.list", target_id=str(b_box.pk)).latest("id")
    assert event.details == {"folder": "arrivals", "count": 1}
    # The folder lists show them too.
    inbox = api_client(bob).get(f"/api/v1/mailboxes/{b_box.pk}/messages").json()
    assert [(r["id"], r["uid"]) for r in inbox["results"]] == [(fourth, 4), (first, 1)]
    # The numbers are the mailbox's own: Alice's sent copies are 1 to 4 in hers.
    assert [r["uid"] for r in arrivals(alice, a_box, "after_uid=0")["results"]] == [1, 2, 3, 4]


def test_a_mailbox_tells_the_last_number_to_start_from(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)

    def last_uid(user: User, box: Mailbox) -> int:
        boxes = api_client(user).get("/api/v1/mailboxes").json()
        return int(next(b["last_uid"] for b in boxes if b["id"] == str(box.pk)))

    assert last_uid(bob, b_box) == 0
    send(alice, a_box, [b_box])
    send(alice, a_box, [b_box])
    start = last_uid(bob, b_box)
    assert start == 2
    later = send(alice, a_box, [b_box], "Nouvelle lettre")
    assert [r["id"] for r in arrivals(bob, b_box, f"after_uid={start}")["results"]] == [later]


def test_every_way_a_letter_arrives_numbers_it(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    team = shared_mailbox(bob.memberships.get().organisation, [bob])
    # Written to oneself: the sent copy and the received one, two numbers in one mailbox.
    to_self = send(alice, a_box, [a_box], "Note")
    assert sorted(Delivery.objects.filter(message_id=to_self).values_list("uid", flat=True)) == [1, 2]
    # To a person and a team at once: each mailbox numbers its own copy.
    both = send(alice, a_box, [b_box, team])
    assert {c.mailbox_id: c.uid for c in Delivery.objects.filter(message_id=both)} == {
        a_box.pk: 3,
        b_box.pk: 1,
        team.pk: 1,
    }
    # A patient's answer through a secure link.
    answer = services.receive_external_message(
        b_box,
        sender_kind=ExternalSender.PATIENT_LINK,
        sender_name="Élodie Durand",
        subject="Réponse",
        body="Merci.",
        actor=("patient", ""),
    )
    assert Delivery.objects.get(message=answer).uid == 2
    # Seeded in bulk (demo data, benchmarks).
    services.seed_messages(a_box, b_box, ["Un", "Deux"])
    assert list(Delivery.objects.filter(mailbox=b_box).order_by("uid").values_list("uid", flat=True)) == [1, 2, 3, 4]
    assert Mailbox.objects.get(pk=b_box.pk).last_uid == 4
    assert Mailbox.objects.get(pk=a_box.pk).last_uid == 5


def test_after_uid_goes_alone_and_is_a_number(db: None) -> None:
    bob = practitioner()
    b_box = personal_mailbox(bob)
    client = api_client(bob)
    listing = f"/api/v1/mailboxes/{b_box.pk}/messages"
    clash = client.get(f"{listing}?after_uid=0&folder=archive&unread=true")
    assert clash.status_code == 400
    message = (
        "after_uid liste tous les messages dans l\u2019ordre de leur arrivée\u00a0: "
        "il ne se combine qu\u2019avec limit."
    )
    assert clash.json() == {"folder": [message], "unread": [message]}
    assert set(client.get(f"{listing}?after_uid=-1").json()) == {"after_uid"}
    assert set(client.get(f"{listing}?after_uid=deux").json()) == {"after_uid"}
    assert set(client.get(f"{listing}?after_uid=").json()) == {"after_uid"}
    assert set(client.get(f"{listing}?after_uid=0&limit=0").json()) == {"limit"}
    assert set(client.get(f"{listing}?after_uid=1&after_uid=2").json()) == {"after_uid"}
    assert client.get(f"{listing}?after_uid={2**63}").status_code == 400
    # Someone else's mailbox is not found, by number or not.
    other = practitioner()
    assert api_client(other).get(f"{listing}?after_uid=0").status_code == 404


def test_a_number_is_taken_only_once_the_one_before_is_committed(transactional_db: None) -> None:
    """The mailbox's counter stays locked until COMMIT: a second send to the same mailbox
    waits, then takes the next number, so numbers appear in increasing order."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    numbered = threading.Event()
    second: dict[str, Any] = {}

    def other_send() -> None:
        try:
            numbered.wait(10)
            second["id"] = send(alice, a_box, [b_box], "Seconde")
            second["at"] = time.monotonic()
        finally:
            connection.close()

    thread = threading.Thread(target=other_send)
    thread.start()
    with transaction.atomic():
        first = send(alice, a_box, [b_box], "Première")
        numbered.set()
        time.sleep(0.5)
        released = time.monotonic()
    thread.join(30)
    assert second["at"] > released, "the second send numbered its copy while the first held number 1"
    assert Delivery.objects.get(message_id=first, mailbox=b_box).uid == 1
    assert Delivery.objects.get(message_id=second["id"], mailbox=b_box).uid == 2


def test_a_poller_against_a_real_server_misses_no_letter(transactional_db: None, tmp_path: Path) -> None:
    """Four clients send to one mailbox at once through `pli serve` (several workers, on the
    test's database engine) while software polls it by `after_uid`: at the end it has seen
    every letter once, numbers increasing, none appearing behind a number already passed."""
    with own_database() as url:
        env = server_env(tmp_path / "data", url)
        users = setup_users(env, 5)
        server = Server(env, tmp_path / "server.log", workers=2, threads=4)
        server.start()
        try:
            _poll_while_sending(server, users)
        finally:
            server.stop()


def _poll_while_sending(server: Server, users: dict[str, Any]) -> None:
    reader = users["user4"]
    sent: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def sender(n: int) -> None:
        user = users[f"user{n}"]
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {user['token']}"
            while not stop.is_set():
                data = {"sender": user["address"], "to": [reader["address"]], "subject": "Lettre", "body": "."}
                response = session.post(f"{server.url}/api/v1/messages", data=data, timeout=30)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    return
                sent.append(response.json()["id"])

    seen: list[tuple[int, str]] = []
    with requests.Session() as poller:
        poller.headers["Authorization"] = f"Bearer {reader['token']}"

        def poll() -> None:
            after = seen[-1][0] if seen else 0
            url = f"{server.url}/api/v1/mailboxes/{reader['mailbox']}/messages?after_uid={after}&limit=7"
            while url:
                page = poller.get(url, timeout=30).json()
                seen.extend((item["uid"], item["id"]) for item in page["results"])
                url = page["next"]

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            poll()
        stop.set()
        for thread in threads:
            thread.join(60)
        poll()
    assert failures == []
    assert len(sent) > 20
    uids = [uid for uid, _ in seen]
    assert uids == list(range(1, len(sent) + 1)), "a number was skipped, repeated or seen out of order"
    assert sorted(message for _, message in seen) == sorted(sent)


def test_the_upgrade_numbers_the_letters_already_there(transactional_db: None) -> None:
    """Migration 0011: every copy filed before it gets its number, in the order it arrived,
    and each mailbox's counter goes on from the last."""
    from django.db.migrations.executor import MigrationExecutor

    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    letters = [send(alice, a_box, [b_box], f"Lettre {n}") for n in range(3)]
    to_self = send(alice, a_box, [a_box], "Note")
    MigrationExecutor(connection).migrate(
        [("messaging", "0010_delivery_first_read_at"), ("accounts", "0006_mailbox_new_mail_notified")]
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    in_b = Delivery.objects.filter(mailbox=b_box).order_by("uid").values_list("message_id", "uid")
    assert [(str(m), uid) for m, uid in in_b] == [(letters[0], 1), (letters[1], 2), (letters[2], 3)]
    in_a = Delivery.objects.filter(mailbox=a_box).order_by("uid")
    assert [c.uid for c in in_a] == [1, 2, 3, 4, 5]
    assert {str(c.message_id) for c in in_a[3:]} == {to_self}
    assert (Mailbox.objects.get(pk=a_box.pk).last_uid, Mailbox.objects.get(pk=b_box.pk).last_uid) == (5, 3)
    # And the next letter follows.
    later = send(alice, a_box, [b_box], "Après la mise à jour")
    assert Delivery.objects.get(message_id=later, mailbox=b_box).uid == 4


def test_a_reading_through_two_mailboxes_and_a_send_to_both_both_succeed(transactional_db: None) -> None:
    """Claire opens a letter filed in her own mailbox and in her team's, both unused for a
    day (the reading records a use of each), as a letter to both is sent: the send locks
    the two mailboxes' rows in key order to number its copies, so the reading must touch
    them in that order too, or each holds the row the other waits for (a deadlock on
    PostgreSQL, one of them a 500)."""
    from pli.accounts.models import Membership

    alice, claire = practitioner(), practitioner()
    organisation = Membership.objects.get(user=claire).organisation
    own, team = personal_mailbox(claire), shared_mailbox(organisation, [claire])
    # The copies are read in the order of their mailboxes' names: the higher key first.
    high, low = sorted([own, team], key=lambda m: m.pk, reverse=True)
    Mailbox.objects.filter(pk=high.pk).update(name="A")
    Mailbox.objects.filter(pk=low.pk).update(name="Z")
    letter = send(alice, personal_mailbox(alice), [own, team], "Lettre")
    Mailbox.objects.update(last_used_at=timezone.now() - datetime.timedelta(days=2))

    real = services.touch_mailbox
    touched, failures, done = threading.Event(), [], threading.Event()

    def touch(mailbox: Mailbox, now: Any = None) -> None:
        real(mailbox, now)
        if threading.current_thread() is threading.main_thread() and not touched.is_set():
            touched.set()
            done.wait(1.5)  # the send is waiting for a row by now, if it waits

    def other_send() -> None:
        try:
            touched.wait(10)
            send(alice, personal_mailbox(alice), [own, team], "Pendant la lecture")
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()
            connection.close()

    thread = threading.Thread(target=other_send)
    thread.start()
    try:
        with patch.object(services, "touch_mailbox", touch):
            services.open_message(claire, letter)
    finally:
        touched.set()
        thread.join(30)
    assert failures == []
    assert [c.uid for c in Delivery.objects.filter(mailbox=team).order_by("uid")] == [1, 2]


def test_the_inactivity_run_and_a_send_to_two_mailboxes_both_succeed(transactional_db: None, settings: Any) -> None:
    """The daily run lifts the warnings of mailboxes used since: if it locks their rows in
    any order but the key's (one UPDATE of several rows goes in the table's order), a send
    to two of them, which locks them in key order to number its copies, can hold the one it
    waits for (a deadlock on PostgreSQL)."""
    settings.PLI_MAILBOX_INACTIVE_DAYS = 365
    alice, bob, claire = practitioner(), practitioner(), practitioner()
    low, high = sorted([personal_mailbox(bob), personal_mailbox(claire)], key=lambda m: m.pk)
    now = timezone.now()
    # Both warned, then used; the lower key's row rewritten last, so a table scan meets it last.
    Mailbox.objects.filter(pk__in=[low.pk, high.pk]).update(
        inactivity_warned_at=now - datetime.timedelta(days=2), last_used_at=now - datetime.timedelta(days=1)
    )
    Mailbox.objects.filter(pk=high.pk).update(name="Haut")
    Mailbox.objects.filter(pk=low.pk).update(name="Bas")
    failures: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        try:
            started.set()
            services.handle_inactive_mailboxes(now=now)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    try:
        with transaction.atomic():
            # A send numbering copies in both: the lower key's row first...
            send(alice, personal_mailbox(alice), [low], "Première")
            thread.start()
            started.wait(10)
            time.sleep(0.5)  # the run has taken what it could by now, and waits
            # ... then the higher key's.
            send(alice, personal_mailbox(alice), [high], "Seconde")
    finally:
        thread.join(30)
    assert failures == []
    assert not Mailbox.objects.filter(inactivity_warned_at__isnull=False).exists()


def test_a_number_not_given_yet_is_refused_as_after_a_restore(db: None) -> None:
    """A database restored from a backup numbers again from its older count: software that
    saw numbers up to n would skip the letters now given numbers below n, without a word.
    Asking for what came after a number the mailbox has not given yet is a 400 that says
    so, not an empty page; the mailbox's own last number is fine."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    send(alice, a_box, [b_box], "Lettre")
    assert arrivals(bob, b_box, "after_uid=1") == {"next": None, "results": []}
    response = api_client(bob).get(f"/api/v1/mailboxes/{b_box.pk}/messages?after_uid=2")
    assert response.status_code == 400
    (message,) = response.json()["after_uid"]
    assert "1" in message and "after_uid=0" in message and "restaur" in message
