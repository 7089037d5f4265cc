"""The patient's reply: a short message and files (JPEG, PNG, PDF ≤ 10 MB, recognised by
their first bytes) arriving in the practitioner's mailbox as a message linked to the share."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from pli.messaging import services as messaging
from pli.messaging.models import Attachment, Delivery, Folder
from pli.messaging.uploads import blob_store as message_blob_store
from pli.sharing import services
from pli.sharing.models import ShareReply
from pli.testing.accounts import make_user
from sharing.helpers import PNG_1PX, Patient, make_share, pdf_bytes


def reply(patient: Patient, text: str = "Merci docteur", files: list[Any] | None = None) -> Any:
    data: dict[str, Any] = {"text": text}
    if files:
        data["files"] = files
    return patient.client.post(patient.url("/reply"), data)


def test_reply_arrives_in_the_practitioners_mailbox(db: None) -> None:
    doctor = make_user()
    share, token = make_share(doctor, allow_reply=True)
    patient = Patient(token)
    page = patient.sign_in()
    assert 'name="files"' in page.content.decode()
    photo = SimpleUploadedFile("photo.png", PNG_1PX, "image/png")
    scan = SimpleUploadedFile("ancien-bilan.pdf", pdf_bytes("ancien"), "application/pdf")
    response = reply(patient, "Voici mes anciens résultats", [photo, scan])
    assert response.status_code == 303 and response["Location"].endswith("?replied=1")

    answer = ShareReply.objects.get(share=share)
    assert answer.file_count == 2
    message = messaging.visible_message(doctor, answer.message_id)
    assert "Voici mes anciens résultats" in message.body
    assert message.sender is None and message.thread_id == share.pk
    assert message.patient["family_name"] == "Durand"
    delivery = Delivery.objects.get(message=message)
    assert delivery.mailbox.owner == doctor and delivery.folder == Folder.INBOX and delivery.read_at is None
    attachments = list(Attachment.objects.filter(message=message).order_by("position"))
    assert [(a.name, a.content_type) for a in attachments] == [
        ("photo.png", "image/png"),
        ("ancien-bilan.pdf", "application/pdf"),
    ]
    with message_blob_store().open(
        attachments[0].blob_id, attachments[0].data_encryption_key(), attachments[0].blob_aad("content")
    ) as reader:
        assert b"".join(reader) == PNG_1PX
    assert "replied" in [e.type for e in services.events(share)]


def test_files_are_checked_by_their_content(db: None) -> None:
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    disguised = SimpleUploadedFile("photo.jpg", b"MZ\x90\x00" + b"\x00" * 200, "image/jpeg")
    response = reply(patient, "x", [disguised])
    assert response.status_code == 415
    assert not ShareReply.objects.exists()
    assert list(message_blob_store().iter_ids()) == []


def test_files_over_ten_megabytes_are_refused(db: None) -> None:
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    big = SimpleUploadedFile("scan.pdf", b"%PDF-1.4\n" + b"0" * (10 * 10**6), "application/pdf")
    response = reply(patient, "x", [big])
    assert response.status_code == 413
    assert not ShareReply.objects.exists()


def test_no_reply_when_not_allowed_or_closed(db: None) -> None:
    doctor = make_user()
    _share, token = make_share(doctor, allow_reply=False)
    patient = Patient(token)
    assert 'name="files"' not in patient.sign_in().content.decode()
    assert reply(patient).status_code == 400
    share2, token2 = make_share(doctor, allow_reply=True)
    services.close_conversation(doctor, share2.pk)
    patient2 = Patient(token2)
    assert "close" in patient2.sign_in().content.decode()
    assert reply(patient2).status_code == 400
    assert not ShareReply.objects.exists()


def test_reply_needs_an_open_session(db: None) -> None:
    _share, token = make_share(allow_reply=True)
    response = reply(Patient(token))
    assert response.status_code == 303 and "session=expired" in response["Location"]
