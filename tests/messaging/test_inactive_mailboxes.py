"""CNIL: a mailbox unused for a year is deleted after a warning. Its people are warned a month
before by e-mail, any use cancels the warning, and at the end its messages are deleted for
good (a shared mailbox is also closed)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from messaging.factories import api_client, personal_mailbox, practitioner, shared_mailbox, web_client
from pli.accounts import journal
from pli.accounts import services as accounts
from pli.accounts.models import Mailbox, Membership, User
from pli.audit.models import AuditEvent
from pli.messaging import services
from pli.messaging.models import Delivery, Message

DAY = datetime.timedelta(days=1)


def send(sender: User, box: Mailbox, to: Mailbox, subject: str) -> str:
    response = api_client(sender).post(
        "/api/v1/messages", {"sender": box.address, "to": [to.address], "subject": subject}
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def unused_since(box: Mailbox, days: int, now: datetime.datetime) -> None:
    """Nothing happened in ``box`` (nor did its owner sign in) for ``days`` days."""
    then = now - days * DAY
    Mailbox.objects.filter(pk=box.pk).update(created_at=then, last_used_at=then)
    if box.owner_id is not None:
        User.objects.filter(pk=box.owner_id).update(last_login=then)


def test_an_unused_personal_mailbox_is_warned_then_emptied(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    received = send(bob, b_box, a_box, "Compte rendu confidentiel")
    own = send(alice, a_box, a_box, "Note pour moi")
    now = timezone.now()
    unused_since(a_box, 340, now)
    unused_since(b_box, 10, now)

    run = services.handle_inactive_mailboxes(now)
    assert (run.warned, run.emptied) == (1, 0)
    (warning,) = mail.outbox
    assert warning.to == [alice.email] and warning.subject == "Votre boîte Pli va être vidée"
    assert a_box.address in warning.body and "CNIL" in warning.body
    assert "confidentiel" not in warning.body and "Note" not in warning.body
    a_box.refresh_from_db()
    assert a_box.inactivity_warned_at == now
    assert AuditEvent.objects.filter(action="mailbox.inactivity_warned", target_id=str(a_box.pk)).count() == 1
    # Warned once; nothing goes before the month is over.
    assert services.handle_inactive_mailboxes(now + 10 * DAY).warned == 0
    assert len(mail.outbox) == 1 and Delivery.objects.filter(mailbox=a_box).count() == 3

    run = services.handle_inactive_mailboxes(now + 31 * DAY)
    assert run.emptied == 1 and run.copies_deleted == 3
    assert not Delivery.objects.filter(mailbox=a_box).exists()
    # Bob's copy of what he sent stays; Alice's note to herself is shredded with its copies.
    assert Delivery.objects.filter(mailbox=b_box, message_id=received).exists()
    assert not Message.objects.filter(pk=own).exists()
    deletions = AuditEvent.objects.filter(action="message.delete")
    assert {e.details["reason"] for e in deletions} == {"mailbox_inactive"} and deletions.count() == 2
    # In the organisation's access journal, the shredded note's deletion too.
    found = journal.events(a_box.organisation, journal.Filters()).filter(action="message.delete")
    assert {e.target_id for e in found} == {received, own}
    emptied = AuditEvent.objects.get(action="mailbox.emptied")
    assert emptied.details == {"reason": "inactive", "closed": False, "organisation": a_box.organisation_id}
    # A personal mailbox stays open, empty, its year starting again.
    a_box.refresh_from_db()
    assert a_box.is_active and a_box.inactivity_warned_at is None
    assert services.handle_inactive_mailboxes(now + 32 * DAY).warned == 0


def test_a_sign_in_or_an_opened_folder_cancels_the_warning(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    send(bob, b_box, a_box, "Résultats")
    now = timezone.now()
    unused_since(a_box, 340, now)
    assert services.handle_inactive_mailboxes(now).warned == 1
    # Alice signs in a week later: the warning no longer holds.
    User.objects.filter(pk=alice.pk).update(last_login=now + 7 * DAY)
    assert services.handle_inactive_mailboxes(now + 31 * DAY).emptied == 0
    a_box.refresh_from_db()
    assert a_box.inactivity_warned_at is None and Delivery.objects.filter(mailbox=a_box).exists()
    # Opening a folder counts as well (and clears a warning at once).
    unused_since(a_box, 340, now)
    Mailbox.objects.filter(pk=a_box.pk).update(inactivity_warned_at=now - 20 * DAY)
    a_box.refresh_from_db()
    services.record_listing(alice, a_box, "inbox", 1, None)
    a_box.refresh_from_db()
    assert a_box.inactivity_warned_at is None and a_box.last_used_at is not None
    assert a_box.last_used_at > now - DAY
    # And so does a send from it.
    unused_since(a_box, 340, now)
    Mailbox.objects.filter(pk=a_box.pk).update(inactivity_warned_at=now - 20 * DAY)
    send(alice, a_box, b_box, "Merci")
    a_box.refresh_from_db()
    assert a_box.inactivity_warned_at is None and a_box.last_used_at > now - DAY


def test_an_unused_shared_mailbox_warns_its_members_and_admins_then_closes(db: None, settings: Any) -> None:
    admin = practitioner(role=Membership.Role.ADMIN)
    organisation = Membership.objects.get(user=admin).organisation
    secretary = practitioner(organisation)
    box = shared_mailbox(organisation, [secretary], name="Accueil")
    outsider = practitioner()
    send(outsider, personal_mailbox(outsider), box, "Demande de rendez-vous")
    now = timezone.now()
    unused_since(box, 400, now)
    # Its members sign in, but never open it: it is unused all the same.
    User.objects.filter(pk__in=[admin.pk, secretary.pk]).update(last_login=now)
    assert services.handle_inactive_mailboxes(now).warned == 1
    assert sorted(m.to[0] for m in mail.outbox) == sorted([admin.email, secretary.email])
    assert services.handle_inactive_mailboxes(now + 31 * DAY).emptied == 1
    box.refresh_from_db()
    assert not box.is_active and not Delivery.objects.filter(mailbox=box).exists()
    assert AuditEvent.objects.get(action="mailbox.emptied").details["closed"] is True


def test_nothing_happens_when_the_rule_is_off_or_the_mailbox_in_use(db: None, settings: Any) -> None:
    alice = practitioner()
    box = personal_mailbox(alice)
    now = timezone.now()
    unused_since(box, 300, now)  # 65 days before its year is over
    assert services.handle_inactive_mailboxes(now).warned == 0
    unused_since(box, 500, now)
    settings.PLI_MAILBOX_INACTIVE_DAYS = 0
    assert services.handle_inactive_mailboxes(now).warned == 0
    settings.PLI_MAILBOX_INACTIVE_DAYS = 365
    User.objects.filter(pk=alice.pk).update(last_login=now - DAY)  # she signs in, sends nothing
    assert services.handle_inactive_mailboxes(now).warned == 0
    assert mail.outbox == []


def test_the_upgrade_starts_every_mailboxs_year_afresh(transactional_db: None) -> None:
    """Before this release a mailbox only read (never sent from) recorded no use: on the
    first run after the upgrade, a shared mailbox read daily would have been warned."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    admin = practitioner(role=Membership.Role.ADMIN)
    box = shared_mailbox(Membership.objects.get(user=admin).organisation, [admin])
    now = timezone.now()
    MigrationExecutor(connection).migrate([("accounts", "0002_invitation")])
    Mailbox.objects.filter(pk=box.pk).update(created_at=now - 700 * DAY, last_used_at=None)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    box.refresh_from_db()
    assert box.last_used_at is not None and box.last_used_at >= now
    assert services.handle_inactive_mailboxes(timezone.now()).warned == 0


def test_reading_its_messages_is_a_use_of_the_mailbox(db: None) -> None:
    organisation = Membership.objects.get(user=practitioner(role=Membership.Role.ADMIN)).organisation
    secretary = practitioner(organisation)
    box = shared_mailbox(organisation, [secretary], name="Accueil")
    outsider = practitioner()
    out_box = personal_mailbox(outsider)
    now = timezone.now()
    # The team opens each message from its notification, never the folder: the mailbox is used.
    first = send(outsider, out_box, box, "Demande de rendez-vous")
    unused_since(box, 400, now)
    assert web_client(secretary).get(f"/messages/m/{first}/").status_code == 200
    # A practitioner whose software reads each message through the API only (no sign-in).
    doctor = practitioner()
    d_box = personal_mailbox(doctor)
    second = send(outsider, out_box, d_box, "Résultats")
    unused_since(d_box, 400, now)
    assert api_client(doctor).get(f"/api/v1/messages/{second}").status_code == 200
    assert services.handle_inactive_mailboxes(now).warned == 0
    assert Delivery.objects.filter(mailbox=box).exists() and Delivery.objects.filter(mailbox=d_box).exists()


def test_a_departed_owners_mailbox_is_emptied_after_its_admins_are_warned(db: None) -> None:
    admin = practitioner(role=Membership.Role.ADMIN)
    organisation = Membership.objects.get(user=admin).organisation
    alice, bob = practitioner(organisation), practitioner()
    a_box = personal_mailbox(alice)
    send(bob, personal_mailbox(bob), a_box, "Compte rendu")
    # Alice leaves the practice, her last organisation: her account and mailbox are switched off.
    accounts.remove_member(Membership.objects.get(user=alice), actor=admin)
    a_box.refresh_from_db()
    assert not a_box.is_active
    now = timezone.now()
    unused_since(a_box, 400, now)
    assert services.handle_inactive_mailboxes(now).warned == 1
    assert [m.to for m in mail.outbox] == [[admin.email]]
    assert services.handle_inactive_mailboxes(now + 31 * DAY).emptied == 1
    assert not Delivery.objects.filter(mailbox=a_box).exists()
    # Still switched off: emptying it does not open it again.
    a_box.refresh_from_db()
    assert not a_box.is_active


@pytest.mark.parametrize(
    ("warned_on", "last_day"),
    [
        # Warned on 10 June at 10:00 (Paris, 12:00): emptied from 10 July at 10:00 on.
        (datetime.date(2026, 6, 10), "le 9 juillet 2026"),
        # French writes the first of a month « le 1er juillet » (Django's format: « le 1 »).
        (datetime.date(2026, 6, 2), "le 1er juillet 2026"),
    ],
)
def test_the_warning_names_the_last_day_before_the_mailbox_is_emptied(
    db: None, warned_on: datetime.date, last_day: str
) -> None:
    alice, bob = practitioner(), practitioner()
    a_box = personal_mailbox(alice)
    send(bob, personal_mailbox(bob), a_box, "Compte rendu")
    now = datetime.datetime.combine(warned_on, datetime.time(10, 0), tzinfo=datetime.UTC)
    unused_since(a_box, 400, now)
    assert services.handle_inactive_mailboxes(now).warned == 1
    (warning,) = mail.outbox
    assert f"d\u2019ici {last_day}" in warning.body and "10 juillet" not in warning.body
    assert services.handle_inactive_mailboxes(now + 30 * DAY).emptied == 1


def test_a_relay_that_fails_holds_the_run_for_one_mailbox_only(db: None, monkeypatch: Any) -> None:
    """Each e-mail to a relay that does not answer takes 20 s: warning hundreds of mailboxes
    one after the other held the periodic run (and the reminders behind it) for hours."""
    from pli.notify import email

    boxes = [personal_mailbox(practitioner()) for _ in range(3)]
    bob = practitioner()
    for box in boxes:
        send(bob, personal_mailbox(bob), box, "Compte rendu")
    now = timezone.now()
    for box in boxes:
        unused_since(box, 400, now)
    tried: list[str] = []
    monkeypatch.setattr(email, "send_templated", lambda **kwargs: tried.append(kwargs["to"]) or False)
    assert services.handle_inactive_mailboxes(now).warned == 1 and len(tried) == 1
    # The next run goes on with the others.
    monkeypatch.setattr(email, "send_templated", lambda **kwargs: tried.append(kwargs["to"]) or True)
    assert services.handle_inactive_mailboxes(now).warned == 2 and len(tried) == 3
    assert Mailbox.objects.filter(inactivity_warned_at__isnull=False).count() == 3


def test_an_empty_personal_mailbox_is_not_warned(db: None) -> None:
    """Nothing in it to delete: its owner (or, once they left, the admins, every year) was
    told that its messages would be deleted for good."""
    box = personal_mailbox(practitioner())
    now = timezone.now()
    unused_since(box, 400, now)
    assert services.handle_inactive_mailboxes(now).warned == 0
    assert mail.outbox == []
