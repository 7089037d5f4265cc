"""A letter's page says when its documents were already sent to the patient from it, to the
people who hold that letter (a shared mailbox's team), so that nobody sends them twice."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from messaging.factories import api_client, personal_mailbox, practitioner, shared_mailbox, web_client
from pli.accounts.models import Mailbox, MailboxMember, User
from pli.messaging.models import Attachment
from pli.sharing.models import PatientShare
from pli.testing.accounts import make_user
from sharing.helpers import pdf_bytes
from sharing.test_web import form


def send_letter(sender: User, to: list[Mailbox]) -> str:
    response = api_client(sender).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(sender).address,
            "to": [m.address for m in to],
            "subject": "Compte rendu",
            "attachments": [SimpleUploadedFile("cr.pdf", pdf_bytes("cr"), "application/pdf")],
        },
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def share_from(user: User, message_id: str) -> PatientShare:
    """The patient share ``user`` makes, on the web, from the letter's attachment."""
    attachment = Attachment.objects.get(message_id=message_id)
    created = web_client(user).post(
        f"/shares/new?message={message_id}", {**form(documents=None), "attachments": [str(attachment.pk)]}
    )
    assert created.status_code == 303
    return PatientShare.objects.get()


def page(user: User, message_id: str, mailbox: Mailbox) -> str:
    response = web_client(user).get(f"/messages/m/{message_id}/?mailbox={mailbox.pk}", HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 200
    return str(response.content.decode())


def test_the_team_sees_the_documents_already_went_to_the_patient(db: None) -> None:
    doctor = practitioner()
    organisation = doctor.memberships.get().organisation
    assistant = practitioner(organisation)
    team = shared_mailbox(organisation, [doctor, assistant])
    outsider = practitioner()  # another practice, also a recipient of the letter
    lab = practitioner()
    message_id = send_letter(lab, [team, personal_mailbox(outsider)])
    assert "Envoyé au patient" not in page(doctor, message_id, team)

    share = share_from(assistant, message_id)

    seen = page(doctor, message_id, team)
    assert f"Envoyé au patient par {assistant.display_name} le" in seen
    assert 'data-status="sent"' in seen
    # The share's own page is its author's: a colleague is not sent to a page refused to them.
    assert f"/shares/{share.pk}" not in seen
    assert f"/shares/{share.pk}" in page(assistant, message_id, team)
    # Another practice holding the same letter learns nothing of this team's patient share.
    assert "Envoyé au patient" not in page(outsider, message_id, personal_mailbox(outsider))


def test_the_owner_of_a_personal_mailbox_sees_what_she_sent_to_the_patient(db: None) -> None:
    # Pli gives a new account its personal mailbox without any member row: its owner is its
    # reader all the same.
    doctor = make_user()
    inbox = personal_mailbox(doctor)
    assert not MailboxMember.objects.filter(mailbox=inbox).exists()
    lab = practitioner()
    message_id = send_letter(lab, [inbox])
    share = share_from(doctor, message_id)

    seen = page(doctor, message_id, inbox)
    assert f"Envoyé au patient par {doctor.display_name} le" in seen
    assert f"/shares/{share.pk}" in seen
    # The lab, whose letter it is, learns nothing of it.
    assert "Envoyé au patient" not in page(lab, message_id, personal_mailbox(lab))
