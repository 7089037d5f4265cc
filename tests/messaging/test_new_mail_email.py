"""A member is e-mailed when messages arrive in their mailboxes: a notice without any
content, at most every PLI_NEW_MAIL_EMAIL_MINUTES per mailbox, that each person can turn off."""

from __future__ import annotations

import datetime
from typing import Any, cast

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from messaging.factories import (
    api_client,
    patient_fields,
    personal_mailbox,
    practitioner,
    shared_mailbox,
    unique_marker,
    web_client,
)
from pli.accounts.models import Mailbox, MailboxMember, User
from pli.audit.models import AuditEvent
from pli.messaging import services
from pli.messaging.models import Delivery
from sharing.helpers import run_tasks

MINUTE = datetime.timedelta(minutes=1)


def send(sender: User, box: Mailbox, to: list[Mailbox], subject: str = "Résultats", **fields: Any) -> str:
    response = api_client(sender).post(
        "/api/v1/messages",
        {"sender": box.address, "to": [m.address for m in to], "subject": subject, "body": "Texte", **fields},
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def later(minutes: float) -> datetime.datetime:
    return timezone.now() + minutes * MINUTE


def test_a_message_that_waits_unread_is_announced_without_its_content(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    subject, patient = unique_marker("objet"), unique_marker("patient")
    send(bob, b_box, [a_box], subject, **patient_fields(patient_family_name=patient))
    # Not at once: whoever is signed in reads it first.
    assert services.notify_new_mail(later(1)) == 0
    assert services.notify_new_mail(later(3)) == 1
    (notice,) = mail.outbox
    assert notice.to == [alice.email]
    # In French, for the one message: « le lire », not « les lire ».
    assert notice.subject == f"Nouveau message dans votre boîte Pli {a_box.name}"
    assert "1 message non lu" in notice.body and a_box.address in notice.body
    assert "Pour le lire, connectez-vous à Pli\u00a0:" in notice.body
    assert f"/messages/{a_box.pk}/inbox/" in notice.body
    # Nothing of the message: not its subject, its patient, its sender or its text.
    for secret in (subject, patient, bob.display_name, b_box.address, "Texte"):
        assert secret not in notice.subject and secret not in notice.body
    # The sender is not told about their own copy.
    assert all(m.to != [bob.email] for m in mail.outbox)
    # Told once: nothing new, no second notice.
    assert services.notify_new_mail(later(40)) == 0


def test_at_most_one_notice_per_mailbox_per_period_and_only_for_new_arrivals(db: None, settings: Any) -> None:
    settings.PLI_NEW_MAIL_EMAIL_MINUTES = 30
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    send(bob, b_box, [a_box])
    first = later(3)
    assert services.notify_new_mail(first) == 1
    second = send(bob, b_box, [a_box])
    Delivery.objects.filter(message_id=second, mailbox=a_box).update(delivered_at=first + 5 * MINUTE)
    # A second message ten minutes later: within the period, no second e-mail.
    assert services.notify_new_mail(first + 10 * MINUTE) == 0
    # Once the period is over, one notice for both.
    assert services.notify_new_mail(first + 31 * MINUTE) == 1
    assert "2 messages non lus" in mail.outbox[-1].body
    assert "Pour les lire, connectez-vous à Pli\u00a0:" in mail.outbox[-1].body
    assert mail.outbox[-1].subject.startswith("Nouveaux messages dans votre boîte Pli ")
    assert services.notify_new_mail(first + 70 * MINUTE) == 0
    assert len(mail.outbox) == 2


def test_a_message_read_in_time_is_not_announced(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(bob, b_box, [a_box])
    assert api_client(alice).get(f"/api/v1/messages/{message_id}").status_code == 200
    assert services.notify_new_mail(later(3)) == 0
    # Filed away unread (archived): not waiting in the inbox either.
    other = send(bob, b_box, [a_box])
    moved = api_client(alice).post(f"/api/v1/messages/{other}/move", {"folder": "archive"})
    assert moved.status_code == 200
    Delivery.objects.filter(message_id=other, mailbox=a_box).update(read_at=None)
    assert services.notify_new_mail(later(3)) == 0
    assert mail.outbox == []


def test_a_letter_marked_read_then_unread_in_the_list_is_not_announced_to_who_did_it(db: None, settings: Any) -> None:
    settings.PLI_NEW_MAIL_EMAIL_MINUTES = 30
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(bob, b_box, [a_box])
    # Ticked in her list, marked read, then unread again (to come back to it): she has seen
    # it arrive; it is no news to e-mail her about.
    services.mark_read(alice, message_id)
    services.mark_unread(alice, message_id)
    assert services.notify_new_mail(later(3)) == 0
    assert mail.outbox == []
    # Nobody opened it: the sender still has no receipt.
    assert Delivery.objects.get(message_id=message_id, mailbox=a_box).first_read_at is None
    # A letter arriving afterwards is news all the same.
    second = send(bob, b_box, [a_box])
    Delivery.objects.filter(message_id=second, mailbox=a_box).update(delivered_at=later(5))
    assert services.notify_new_mail(later(40)) == 1
    assert "2 messages non lus" in mail.outbox[0].body


def test_a_team_member_who_marked_a_letter_unread_is_not_told_but_the_others_are(db: None) -> None:
    doctor = practitioner()
    assistant = practitioner(doctor.memberships.get().organisation)
    team = shared_mailbox(doctor.memberships.get().organisation, [doctor, assistant])
    colleague = practitioner()
    message_id = send(colleague, personal_mailbox(colleague), [team])
    services.mark_read(doctor, message_id, mailbox_id=team.pk)
    services.mark_unread(doctor, message_id, mailbox_id=team.pk)
    assert services.notify_new_mail(later(3)) == 1
    assert [m.to for m in mail.outbox] == [[assistant.email]]


def test_each_member_of_a_shared_mailbox_is_told_unless_they_turned_it_off(db: None) -> None:
    doctor = practitioner()
    assistant = practitioner(doctor.memberships.get().organisation)
    quiet = practitioner(doctor.memberships.get().organisation)
    departed = practitioner(doctor.memberships.get().organisation)
    team = shared_mailbox(doctor.memberships.get().organisation, [doctor, assistant, quiet, departed])
    User.objects.filter(pk=quiet.pk).update(new_mail_email=False)
    User.objects.filter(pk=departed.pk).update(is_active=False)
    colleague = practitioner()
    send(colleague, personal_mailbox(colleague), [team])
    assert services.notify_new_mail(later(3)) == 2
    assert sorted(m.to[0] for m in mail.outbox) == sorted([doctor.email, assistant.email])
    assert all(team.name in m.subject for m in mail.outbox)


def test_nothing_is_sent_when_the_instance_turns_notices_off(db: None, settings: Any) -> None:
    settings.PLI_NEW_MAIL_EMAIL_MINUTES = 0
    alice, bob = practitioner(), practitioner()
    send(bob, personal_mailbox(bob), [personal_mailbox(alice)])
    assert services.notify_new_mail(later(60)) == 0
    assert mail.outbox == []
    # The account page no longer offers the choice.
    page = web_client(alice).get("/account/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "M\u2019avertir par e-mail" not in page


class RefusingBackend(EmailBackend):
    """A relay that refuses the connection."""

    def send_messages(self, messages: Any) -> int:
        raise ConnectionRefusedError


def test_a_relay_that_fails_costs_one_notice_not_one_a_run(db: None, settings: Any) -> None:
    alice, bob, carol = practitioner(), practitioner(), practitioner()
    b_box = personal_mailbox(bob)
    send(bob, b_box, [personal_mailbox(alice), personal_mailbox(carol)])
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    assert services.notify_new_mail(later(3)) == 0
    # The first member's notice is spent; the other waits for the next run.
    # (A personal mailbox keeps its owner's last notice.)
    told = Mailbox.objects.filter(new_mail_notified_at__isnull=False).count()
    assert told == 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert services.notify_new_mail(later(4)) == 1
    assert services.notify_new_mail(later(5)) == 0


def test_an_address_the_relay_refuses_costs_that_notice_only(db: None, smtp_server: Any) -> None:
    alice, bob, carol = practitioner(), practitioner(), practitioner()
    boxes = [personal_mailbox(alice), personal_mailbox(carol)]
    send(bob, personal_mailbox(bob), boxes)
    # The first person of the run has an address the relay refuses (550: no such user).
    first, second = sorted(boxes, key=lambda box: str(box.pk))
    refused, told = cast(User, first.owner), cast(User, second.owner)
    smtp_server.refuse_rcpt_to[refused.email.lower()] = "550 5.1.1 User unknown"
    # The others are still told in the same run.
    assert services.notify_new_mail(later(3)) == 1
    (notice,) = smtp_server.wait_for(1)
    assert notice.recipients == [told.email]
    # The refused one's notice is spent (not tried again every run).
    assert Mailbox.objects.filter(new_mail_notified_at__isnull=False).count() == 2
    assert services.notify_new_mail(later(4)) == 0


def test_the_account_page_turns_notices_off_and_on(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    client = web_client(alice)
    page = client.get("/account/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "M\u2019avertir par e-mail à l\u2019arrivée de messages" in page and "checked" in page
    response = client.post("/account/notifications/", {}, HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.new_mail_email is False
    assert AuditEvent.objects.get(action="account.new_mail_email").details == {"on": False}
    send(bob, personal_mailbox(bob), [personal_mailbox(alice)])
    assert services.notify_new_mail(later(3)) == 0
    client.post("/account/notifications/", {"new_mail_email": "on"})
    alice.refresh_from_db()
    assert alice.new_mail_email is True
    assert services.notify_new_mail(later(3)) == 1
    assert client.get("/account/notifications/").status_code == 405


def test_the_worker_sends_the_notices_in_its_periodic_run(db: None) -> None:
    from pli.sharing import tasks

    alice, bob = practitioner(), practitioner()
    send(bob, personal_mailbox(bob), [personal_mailbox(alice)])
    Delivery.objects.update(delivered_at=timezone.now() - 5 * MINUTE)
    tasks.schedule_periodic()
    job = DBTaskResult.objects.get(task_path=tasks.periodic_jobs.module_path, status="READY")
    DBTaskResult.objects.filter(pk=job.pk).update(run_after=timezone.now() - MINUTE)
    run_tasks(limit=1)
    job.refresh_from_db()
    assert job.return_value["new_mail_emails"] == 1
    assert [m.to for m in mail.outbox] == [[alice.email]]


def test_the_owner_of_a_personal_mailbox_made_by_pli_is_told(db: None) -> None:
    # Pli gives a new account its personal mailbox without any member row (the owner is
    # its reader): the owner must be told all the same.
    from pli.accounts import services as accounts_services

    bob = practitioner()
    organisation = bob.memberships.get().organisation
    alice = accounts_services.create_user(
        email=f"{unique_marker('alice')}@example.org".lower(),
        password="correct horse battery staple 42",
        organisation=organisation,
        role="practitioner",
        first_name="Alice",
        last_name="Martin",
    )
    a_box = personal_mailbox(alice)
    assert not MailboxMember.objects.filter(mailbox=a_box).exists()
    send(bob, personal_mailbox(bob), [a_box])
    assert services.notify_new_mail(later(3)) == 1
    assert [m.to for m in mail.outbox] == [[alice.email]]
    assert services.notify_new_mail(later(40)) == 0
    # A second arrival after the period: told again, once.
    second = send(bob, personal_mailbox(bob), [a_box])
    Delivery.objects.filter(message_id=second, mailbox=a_box).update(delivered_at=later(20))
    assert services.notify_new_mail(later(60)) == 1
    assert services.notify_new_mail(later(100)) == 0
    assert len(mail.outbox) == 2


def test_a_member_who_left_the_organisation_is_not_told_about_its_shared_mailbox(db: None) -> None:
    doctor = practitioner()
    organisation = doctor.memberships.get().organisation
    former = practitioner(organisation)
    practitioner(organisation, role="admin")
    team = shared_mailbox(organisation, [doctor, former])
    # Still in another practice, and a row left behind in the shared mailbox (leaving an
    # organisation takes its shared mailboxes away, even if a row lingers).
    elsewhere = practitioner()
    former.memberships.create(organisation=elsewhere.memberships.get().organisation, role="practitioner")
    former.memberships.filter(organisation=organisation).delete()
    assert MailboxMember.objects.filter(mailbox=team, user=former).exists()
    colleague = practitioner()
    send(colleague, personal_mailbox(colleague), [team])
    assert services.notify_new_mail(later(3)) == 1
    assert [m.to for m in mail.outbox] == [[doctor.email]]


def test_a_member_is_not_told_about_the_message_they_wrote_to_their_shared_mailbox(db: None) -> None:
    doctor = practitioner()
    organisation = doctor.memberships.get().organisation
    assistant = practitioner(organisation)
    team = shared_mailbox(organisation, [doctor, assistant])
    # The GP writes to a colleague with a copy to her practice's shared mailbox.
    colleague = practitioner()
    send(doctor, personal_mailbox(doctor), [personal_mailbox(colleague), team])
    assert services.notify_new_mail(later(3)) == 2
    assert sorted(m.to[0] for m in mail.outbox) == sorted([colleague.email, assistant.email])
    # Someone else's message afterwards: now the GP is told too.
    other = send(colleague, personal_mailbox(colleague), [team])
    Delivery.objects.filter(message_id=other).update(delivered_at=later(10))
    assert services.notify_new_mail(later(45)) == 2
    assert sorted(m.to[0] for m in mail.outbox[2:]) == sorted([doctor.email, assistant.email])


def test_arrivals_are_gathered_a_batch_of_messages_at_a_time(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The day's messages are looked up by batches of ids (so that the copies' message index
    is used); arrivals spread over several batches, in several mailboxes, all count."""
    monkeypatch.setattr(services, "NEW_MAIL_BATCH", 1)
    alice, bob, carol = practitioner(), practitioner(), practitioner()
    a_box, b_box, c_box = personal_mailbox(alice), personal_mailbox(bob), personal_mailbox(carol)
    send(bob, b_box, [a_box])
    send(carol, c_box, [a_box, b_box])
    send(alice, a_box, [c_box])
    assert services.notify_new_mail(later(3)) == 3
    assert sorted(m.to[0] for m in mail.outbox) == sorted([alice.email, bob.email, carol.email])
    assert "2 messages non lus" in next(m.body for m in mail.outbox if m.to == [alice.email])


class ReadingBackend(EmailBackend):
    """A relay slow enough that the other person reads her message while the first notice
    goes: every copy is read by the time the next notice is written."""

    def send_messages(self, messages: Any) -> int:
        Delivery.objects.update(read_at=timezone.now())
        return int(super().send_messages(messages))


def test_no_notice_says_there_is_nothing_unread(db: None, settings: Any) -> None:
    # The arrivals are gathered at the start of the run; one read before her notice is
    # written is no reason to e-mail her « 0 message non lu ».
    alice, bob, carol = practitioner(), practitioner(), practitioner()
    send(bob, personal_mailbox(bob), [personal_mailbox(alice), personal_mailbox(carol)])
    settings.EMAIL_BACKEND = f"{__name__}.ReadingBackend"
    assert services.notify_new_mail(later(3)) == 1
    (notice,) = mail.outbox
    assert "1 message non lu" in notice.body
