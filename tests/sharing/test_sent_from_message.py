"""A letter's page says when its documents were already sent to the patient from it, to the
people who hold that letter (a shared mailbox's team), so that nobody sends them twice."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from messaging.factories import api_client, personal_mailbox, practitioner, shared_mailbox, web_client
from pli.accounts.models import Mailbox, MailboxMember, User
from pli.messaging.models import Attachment
from pli.sharing.models import PatientShare
from pli.testing.accounts import make_user
from sharing.helpers import pdf_bytes
from sharing.test_web import form

# The patient of the API's shares in these tests.
PATIENT = {
    "patient_given_name": "Élodie",
    "patient_family_name": "Durand",
    "patient_birth_date": "1984-02-15",
    "patient_mobile": "+33612345678",
}


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


def test_software_hands_a_letters_attachments_to_the_patient(db: None) -> None:
    """POST /api/v1/shares with forward_of and forward_attachments does what the letter's
    « Envoyer au patient » does: the chosen attachments become the patient's documents
    (nothing uploaded again), and the team sees on the letter that they went."""
    from pli.audit.models import AuditEvent
    from pli.sharing.services import open_document_blob

    doctor, lab = practitioner(), practitioner()
    inbox = personal_mailbox(doctor)
    response = api_client(lab).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(lab).address,
            "to": [inbox.address],
            "subject": "Résultats",
            "attachments": [
                SimpleUploadedFile("nfs.pdf", pdf_bytes("nfs"), "application/pdf"),
                SimpleUploadedFile("ionogramme.pdf", pdf_bytes("iono"), "application/pdf"),
            ],
        },
    )
    message_id = response.json()["id"]
    nfs, iono = (a["id"] for a in response.json()["attachments"])
    patient = PATIENT
    client = api_client(doctor)

    # Wrong: an attachment without its message, a message out of reach (another's letter,
    # a made-up id), an attachment of another message. Each named; nothing made.
    other_letter = send_letter(lab, [personal_mailbox(lab)])
    other_attachment = str(Attachment.objects.get(message_id=other_letter).pk)
    refusals = [
        ({"forward_attachments": [nfs]}, "forward_attachments"),
        ({"forward_of": other_letter, "forward_attachments": [other_attachment]}, "forward_of"),
        ({"forward_of": "not-an-id"}, "forward_of"),
        ({"forward_of": message_id, "forward_attachments": [other_attachment]}, "forward_attachments"),
        ({"forward_of": message_id, "forward_attachments": ["x"]}, "forward_attachments"),
        ({"forward_of": [message_id, message_id], "forward_attachments": [nfs]}, "forward_of"),
    ]
    for fields, named in refusals:
        refused = client.post("/api/v1/shares", {**patient, **fields})
        assert refused.status_code == 400, (fields, refused.content)
        assert named in refused.json(), (fields, refused.json())
    assert not PatientShare.objects.exists()
    # Someone else's letter, tried: audited as a refused access.
    assert AuditEvent.objects.filter(action="message.access_denied", target_id=other_letter).exists()

    created = client.post("/api/v1/shares", {**patient, "forward_of": message_id, "forward_attachments": [iono]})
    assert created.status_code == 201, created.content
    share = PatientShare.objects.get(pk=created.json()["id"])
    assert share.source_message_id is not None and str(share.source_message_id) == message_id
    detail = client.get(f"/api/v1/shares/{share.pk}").json()
    assert detail["forward_of"] == message_id and [f["name"] for f in detail["files"]] == ["ionogramme.pdf"]
    documents = list(share.documents.all())
    assert [d.name for d in documents] == ["ionogramme.pdf"]
    with open_document_blob(documents[0]) as reader:
        assert b"".join(reader) == pdf_bytes("iono")
    assert "Envoyé au patient par" in page(doctor, message_id, inbox)


def test_forwarded_attachments_keep_to_the_share_limits(db: None, settings: Any) -> None:
    doctor, lab = practitioner(), practitioner()
    message_id = send_letter(lab, [personal_mailbox(doctor)])
    attachment = str(Attachment.objects.get(message_id=message_id).pk)
    settings.PLI_SHARE_MAX_DOCUMENTS = 1
    refused = api_client(doctor).post(
        "/api/v1/shares",
        {
            **PATIENT,
            "forward_of": message_id,
            "forward_attachments": [attachment],
            "documents": [SimpleUploadedFile("autre.pdf", pdf_bytes("autre"), "application/pdf")],
        },
    )
    assert refused.status_code == 400 and "forward_attachments" in refused.json()
    assert not PatientShare.objects.exists()


def test_a_letters_documents_do_not_go_to_another_patient(db: None) -> None:
    """The letter names its patient by INS; a share of its attachments naming another INS is
    refused, on the web and through the API (identity vigilance), and nothing is made."""
    from messaging.factories import patient_fields, valid_ins

    doctor, lab = practitioner(), practitioner()
    inbox = personal_mailbox(doctor)
    letter = (
        api_client(lab)
        .post(
            "/api/v1/messages",
            {
                "sender": personal_mailbox(lab).address,
                "to": [inbox.address],
                "subject": "Bilan",
                "attachments": [SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf")],
                **patient_fields(),
            },
        )
        .json()
    )
    message_id, attachment = letter["id"], letter["attachments"][0]["id"]
    theirs, another = valid_ins(), valid_ins("2840299123457")
    shared = {
        **PATIENT,
        "forward_of": message_id,
        "forward_attachments": [attachment],
    }
    client = api_client(doctor)
    refused = client.post("/api/v1/shares", {**shared, "patient_ins": another})
    assert refused.status_code == 400
    assert list(refused.json()) == ["patient_ins"]
    assert "n\u2019est pas celui du patient du message" in refused.json()["patient_ins"][0]
    web = web_client(doctor).post(
        f"/shares/new?message={message_id}",
        {**form(documents=None, patient_ins=another), "attachments": [attachment]},
    )
    assert web.status_code == 400 and "n\u2019est pas celui du patient du message" in web.content.decode()
    assert not PatientShare.objects.exists()

    # The same INS, written with spaces; or none given: the letter's patient, as far as Pli can tell.
    spaced = " ".join([theirs[:1], theirs[1:3], theirs[3:5], theirs[5:7], theirs[7:10], theirs[10:13], theirs[13:]])
    assert client.post("/api/v1/shares", {**shared, "patient_ins": spaced}).status_code == 201
    assert client.post("/api/v1/shares", shared).status_code == 201


def test_a_wrong_forward_of_is_the_only_error_named(db: None) -> None:
    """Not also « add a document »: the documents were the forwarded ones."""
    client = api_client(practitioner())
    refused = client.post(
        "/api/v1/shares",
        {
            **PATIENT,
            "forward_of": "6b1c6d59-8a8e-4b8b-9d3e-1d1a0e4f5f10",
        },
    )
    assert refused.status_code == 400 and list(refused.json()) == ["forward_of"]
