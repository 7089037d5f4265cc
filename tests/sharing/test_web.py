"""The practitioner's pages: create a share (from scratch and from a received message's
attachments), list, detail and actions; uploads encrypted as they arrive."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.test import Client
from django.utils import timezone

from pli.accounts.models import Mailbox, User
from pli.api.services import create_token
from pli.audit.models import AuditEvent
from pli.sharing import services
from pli.sharing.models import PatientShare, ShareDocument, ShareNotification, Status
from pli.sharing.services import open_document_blob
from pli.sharing.uploads import share_blob_store
from pli.testing.accounts import make_user
from sharing.helpers import Patient, make_share, pdf_bytes, pending_document, run_tasks, token_of


class RefusingHandler(FileUploadHandler):
    """Installed as Django's default: a view that let it run would fail (proves our own
    encrypting handler replaced Django's, which writes plaintext temporary files)."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("Django's default upload handlers must never see a document")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        raise AssertionError

    def file_complete(self, file_size: int) -> None:
        raise AssertionError


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "patient_family_name": "Durand",
        "patient_given_name": "Élodie",
        "patient_birth_date": "15/02/1984",
        "patient_mobile": "06 12 34 56 78",
        "patient_email": "",
        "message": "Bonjour",
        "documents": SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf"),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_create_from_scratch(db: None, settings: Any) -> None:
    settings.FILE_UPLOAD_HANDLERS = ["sharing.test_web.RefusingHandler"]
    user = make_user()
    client = browser(user)
    page = client.get("/shares/new")
    assert page.status_code == 200 and 'name="documents"' in page.content.decode()
    big = pdf_bytes("gros") + b"%" * (3 * 10**6)  # above Django's 2.5 MB in-memory threshold
    response = client.post(
        "/shares/new", form(documents=[SimpleUploadedFile("gros.pdf", big, "application/pdf")], allow_reply="on")
    )
    assert response.status_code == 303
    share = PatientShare.objects.get()
    assert response["Location"] == f"/shares/{share.pk}"
    assert share.patient_mobile == "+33612345678" and share.allow_reply
    document = share.documents.get()
    with open_document_blob(document) as reader:
        assert b"".join(reader) == big
    detail = client.get(response["Location"]).content.decode()
    assert 'data-status="sent"' in detail and "gros.pdf" in detail


def test_bad_input_shows_errors_next_to_fields_and_keeps_nothing(db: None) -> None:
    client = browser(make_user())
    response = client.post(
        "/shares/new", form(patient_birth_date="31/02/1984", patient_mobile="", patient_email="pas-une-adresse")
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_patient_birth_date_error"' in html and 'id="id_patient_email_error"' in html
    assert 'aria-invalid="true"' in html
    assert not PatientShare.objects.exists()
    assert list(share_blob_store().iter_ids()) == []  # the encrypted upload was discarded


def test_a_document_or_a_message_is_required(db: None) -> None:
    response = browser(make_user()).post("/shares/new", form(documents=None, message=""))
    assert response.status_code == 400
    assert 'id="id_documents_error"' in response.content.decode()


def test_too_large_documents_are_refused_early(db: None, settings: Any) -> None:
    settings.PLI_SHARE_MAX_DOCUMENT_BYTES = 100
    response = browser(make_user()).post("/shares/new", form())
    assert response.status_code == 413
    assert not PatientShare.objects.exists()
    assert list(share_blob_store().iter_ids()) == []
    temp = share_blob_store().temp_dir
    assert not temp.exists() or list(temp.iterdir()) == []


def test_a_text_field_refused_while_streaming_is_shown_next_to_it(db: None) -> None:
    response = browser(make_user()).post("/shares/new", form(message="x" * 1_200_000))
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_message_error"' in html and 'id="id_documents_error"' not in html
    assert not PatientShare.objects.exists()


def test_list_detail_and_actions(db: None) -> None:
    user = make_user()
    client = browser(user)
    share, token = make_share(user)
    run_tasks()
    listing = client.get("/shares/").content.decode()
    assert "DURAND" in listing and 'data-status="sent"' in listing
    # The list names patients: it is a recorded read.
    assert AuditEvent.objects.filter(action="share.list", actor_id=str(user.pk), details__count=1).exists()
    Patient(token).sign_in()
    assert 'data-status="opened"' in client.get(f"/shares/{share.pk}").content.decode()
    assert client.post(f"/shares/{share.pk}/revoke", {"confirmed": "1"}).status_code == 303
    share.refresh_from_db()
    assert share.status == Status.REVOKED
    detail = client.get(f"/shares/{share.pk}").content.decode()
    assert 'data-status="revoked"' in detail and 'data-event="revoked"' in detail


def test_the_history_names_the_document_the_patient_opened(db: None) -> None:
    user = make_user()
    share, token = make_share(
        user, documents=[pending_document("compte-rendu.pdf"), pending_document("ordonnance.pdf")]
    )
    run_tasks()
    patient = Patient(token)
    patient.sign_in()
    document = next(d for d in share.documents.all() if d.name == "ordonnance.pdf")
    b"".join(patient.get(f"/documents/{document.pk}/download").streaming_content)
    detail = browser(user).get(f"/shares/{share.pk}").content.decode()
    history = detail.split('id="history-title"', 1)[1]
    downloaded = history.split('data-event="downloaded"', 1)[1].split("</li>", 1)[0]
    assert "ordonnance.pdf" in downloaded
    assert "compte-rendu.pdf" not in history  # listed above with the documents, not as opened


def test_unlock_and_resend_from_the_page(db: None) -> None:
    user = make_user()
    client = browser(user)
    share, token = make_share(user)
    for _ in range(5):
        Patient(token).birth_date("02/02/2002")
    assert 'data-status="locked"' in client.get(f"/shares/{share.pk}").content.decode()
    client.post(f"/shares/{share.pk}/unlock", {"resend": "1"})
    share.refresh_from_db()
    assert share.status == Status.SENT
    assert Patient(token).get().status_code == 404
    assert Patient(token_of(share)).get().status_code == 200


def test_a_refused_resend_leaves_the_share_locked(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    user = make_user()
    client = browser(user)
    share, token = make_share(user)
    for _ in range(5):
        Patient(token).birth_date("02/02/2002")

    def refused(*args: Any, **kwargs: Any) -> None:
        raise services.ShareError("expired")

    # The new link's part of the unlock (services.resend's too).
    monkeypatch.setattr(services, "_send_new_link", refused)
    page = client.post(f"/shares/{share.pk}/unlock", {"resend": "1"}, follow=True).content.decode()
    share.refresh_from_db()
    assert share.status == Status.LOCKED  # not unlocked without the new link it was asked with
    assert not AuditEvent.objects.filter(action="share.unlocked").exists()
    assert 'data-status="locked"' in page


def test_other_practitioners_cannot_see_or_act(db: None) -> None:
    share, _token = make_share(make_user())
    intruder = browser(make_user())
    assert intruder.get(f"/shares/{share.pk}").status_code == 404
    for action in ("revoke", "unlock", "resend", "close"):
        assert intruder.post(f"/shares/{share.pk}/{action}").status_code == 404
    assert "DURAND" not in intruder.get("/shares/").content.decode()


def test_pages_need_a_login(db: None) -> None:
    response = Client().get("/shares/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def send_message_with_attachment(sender: User, recipient: User, content: bytes, **patient: str) -> str:
    _token, raw = create_token(sender, "test")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post(
        "/api/v1/messages",
        {
            "sender": Mailbox.objects.get(owner=sender).address,
            "to": [Mailbox.objects.get(owner=recipient).address],
            "subject": "Résultats",
            "body": "Ci-joint",
            "attachments": [SimpleUploadedFile("irm.pdf", content, "application/pdf")],
            **patient,
        },
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def test_a_share_from_an_attachment_that_cannot_be_read_is_said_so_clearly(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attachment's file cannot be opened on the server: the page says so (it was the
    generic 500), and nothing is saved, not even the copies made before it."""
    from pli.blobs import BlobStore
    from pli.messaging.models import Attachment

    colleague, doctor = make_user(), make_user()
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes("irm"))
    attachment = Attachment.objects.get(message_id=message_id)
    real_open = BlobStore.open

    def refuse(store: BlobStore, blob_id: str, *args: Any) -> Any:
        if blob_id == attachment.blob_id:
            raise PermissionError(13, "Permission denied", str(store.path_for(blob_id)))
        return real_open(store, blob_id, *args)

    monkeypatch.setattr(BlobStore, "open", refuse)
    response = browser(doctor).post(
        f"/shares/new?message={message_id}", {**form(), "attachments": [str(attachment.pk)]}
    )
    assert response.status_code == 500
    assert "Le contenu de ce fichier est illisible sur le serveur" in response.content.decode()
    assert not PatientShare.objects.exists() and not ShareDocument.objects.exists()
    assert list(share_blob_store().iter_ids()) == []


def test_create_from_a_received_message(db: None) -> None:
    colleague, doctor = make_user(), make_user()
    content = pdf_bytes("irm-genou")
    message_id = send_message_with_attachment(colleague, doctor, content)
    client = browser(doctor)
    page = client.get(f"/shares/new?message={message_id}")
    assert page.status_code == 200 and "irm.pdf" in page.content.decode()
    from pli.messaging.models import Attachment

    attachment = Attachment.objects.get(message_id=message_id)
    response = client.post(
        f"/shares/new?message={message_id}", {**form(documents=None), "attachments": [str(attachment.pk)]}
    )
    assert response.status_code == 303, response.content.decode()[:2000]
    share = PatientShare.objects.get()
    assert str(share.source_message_id) == message_id
    document = share.documents.get()
    assert document.name == "irm.pdf" and document.data_key_id != attachment.data_key_id
    with open_document_blob(document) as reader:
        assert b"".join(reader) == content


@pytest.mark.parametrize(
    ("limits", "uploaded", "expected"),
    [
        # The message's attachment and one more document: two, for one allowed.
        ({"PLI_SHARE_MAX_DOCUMENTS": 1}, True, "Au plus 1 "),
        # A message may carry a larger file than a share accepts (100 MiB against 100 MB).
        ({"PLI_SHARE_MAX_DOCUMENT_BYTES": 1000}, False, "Chaque fichier"),
        ({"PLI_SHARE_MAX_BYTES": 2000}, True, "ne peut dépasser"),
    ],
)
def test_a_received_messages_attachments_count_in_the_shares_limits(
    db: None, settings: Any, limits: dict[str, int], uploaded: bool, expected: str
) -> None:
    """The share's limits (documents, size of each, total) held only for the files
    uploaded: those taken from the message were added on top, unchecked."""
    from pli.messaging.models import Attachment

    colleague, doctor = make_user(), make_user()
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes("irm") + b"%" * 1500)
    attachment = Attachment.objects.get(message_id=message_id)
    for name, value in limits.items():
        setattr(settings, name, value)
    document = SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf") if uploaded else None
    response = browser(doctor).post(
        f"/shares/new?message={message_id}", {**form(documents=document), "attachments": [str(attachment.pk)]}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_documents_error"' in page and expected in page
    assert 'value="Durand"' in page
    assert not PatientShare.objects.exists() and not list(share_blob_store().iter_ids())


def test_a_message_about_a_patient_fills_in_the_patients_identity(db: None) -> None:
    """The identity was typed again: a birth date mistyped there locks the patient out."""
    colleague, doctor = make_user(), make_user()
    patient = {
        "patient_family_name": "Dupont",
        "patient_given_names": "Marie-Hélène",
        "patient_birth_date": "1985-03-12",
        "patient_sex": "F",
        "patient_ins": "285037512345688",
    }
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes(), **patient)
    page = browser(doctor).get(f"/shares/new?message={message_id}").content.decode()
    for value in ("Dupont", "Marie-Hélène", "12/03/1985", "285037512345688"):
        assert f'value="{value}"' in page
    from pli.audit.models import AuditEvent

    assert AuditEvent.objects.filter(action="message.read", target_id=message_id).exists()


def test_a_message_the_user_cannot_see_is_not_found(db: None) -> None:
    colleague, doctor, other = make_user(), make_user(), make_user()
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes())
    assert browser(other).get(f"/shares/new?message={message_id}").status_code == 404


def test_dev_outbox_shows_captured_messages(db: None, settings: Any, tmp_path: Path) -> None:
    settings.EMAIL_BACKEND = "pli.notify.email.EmlFileBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "email")
    user = make_user()
    _share, token = make_share(user)
    run_tasks()
    page = browser(user).get("/dev/outbox/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count(f"/p/{token}") >= 2  # in the e-mail and in the SMS
    settings.PLI_ENV = "production"
    assert browser(user).get("/dev/outbox/").status_code == 404


@pytest.mark.parametrize("status", [Status.SENT, Status.LOCKED])
def test_close_conversation(db: None, status: str) -> None:
    user = make_user()
    share, _token = make_share(user, allow_reply=True)
    PatientShare.objects.filter(pk=share.pk).update(status=status)
    browser(user).post(f"/shares/{share.pk}/close")
    share.refresh_from_db()
    assert share.closed_at is not None
    closed = AuditEvent.objects.get(action="share.closed", target_id=str(share.pk))
    assert closed.actor_id == str(user.pk)


def test_a_share_without_replies_has_no_conversation_to_close(db: None) -> None:
    """The page offers no « close » for it; a form posted all the same is told why."""
    user = make_user()
    share, _token = make_share(user)
    assert f"/shares/{share.pk}/close" not in browser(user).get(f"/shares/{share.pk}").content.decode()
    response = browser(user).post(f"/shares/{share.pk}/close", follow=True)
    assert "Cet envoi n\u2019accepte pas de réponse du patient." in response.content.decode()
    share.refresh_from_db()
    assert share.closed_at is None
    assert not AuditEvent.objects.filter(action="share.closed").exists()


def test_documents_are_stored_under_their_own_keys(db: None) -> None:
    share, _token = make_share(make_user())
    document = ShareDocument.objects.get(share=share)
    assert document.data_key_id != share.data_key_id


def test_a_received_message_offers_to_send_its_attachments_to_a_patient(db: None) -> None:
    colleague, doctor = make_user(), make_user()
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes())
    page = browser(doctor).get(f"/messages/m/{message_id}/").content.decode()
    assert f'href="/shares/new?message={message_id}"' in page


def test_an_expired_share_reads_expire_in_the_masculine(db: None) -> None:
    """ "expired" is also an invitation's state ("expirée"): each keeps its own French."""
    user = make_user()
    share, _token = make_share(user)
    PatientShare.objects.filter(pk=share.pk).update(status=Status.EXPIRED)
    listing = browser(user).get("/shares/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'data-status="expired">expiré<' in listing


def test_the_share_page_is_a_recorded_read_and_shows_the_mobile_as_written_in_france(db: None) -> None:
    from pli.audit.models import AuditEvent

    user = make_user()
    share, _token = make_share(user)
    detail = browser(user).get(f"/shares/{share.pk}").content.decode()
    assert "06 12 34 56 78" in detail and "+33612345678" not in detail
    assert AuditEvent.objects.filter(action="share.read", target_id=str(share.pk), actor_id=str(user.pk)).count() == 1


def test_a_document_refused_as_it_streams_in_leaves_the_rest_of_the_form_filled(db: None, settings: Any) -> None:
    """The files come last in the form, so what is typed has reached the server before a
    document too large is refused: the message and the options were lost."""
    settings.PLI_SHARE_MAX_DOCUMENT_BYTES = 1000
    client = browser(make_user())
    page = client.get("/shares/new").content.decode()
    assert page.index('name="documents"') > max(page.index(f'name="{n}"') for n in ("message", "allow_reply"))
    data = {
        **form(documents=None, message="Votre compte rendu d'IRM.", allow_reply="on"),
        "documents": SimpleUploadedFile("irm.pdf", pdf_bytes("irm") * 100, "application/pdf"),
    }
    response = client.post("/shares/new", data)
    assert response.status_code == 413
    initial = response.context["form"].initial
    assert initial["message"] == "Votre compte rendu d'IRM." and initial["allow_reply"] == "on"
    assert initial["patient_family_name"] == "Durand" and initial["expires_in_days"] == 30
    assert not PatientShare.objects.exists()


def test_a_message_deleted_for_good_after_its_page_opened_is_refused_clearly(db: None) -> None:
    # A colleague emptied the trash while the form was being filled in: a 400 saying so,
    # what was typed kept, no share, and no "refused access" recorded against the sender.
    from pli.messaging import services as messaging
    from pli.messaging.models import Attachment, Folder

    colleague, doctor = make_user(), make_user()
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes("irm-genou"))
    client = browser(doctor)
    assert client.get(f"/shares/new?message={message_id}").status_code == 200
    attachment = Attachment.objects.get(message_id=message_id)
    for holder in (colleague, doctor):
        messaging.move_message(holder, message_id, Folder.TRASH)
        messaging.delete_message(holder, message_id)
    response = client.post(f"/shares/new?message={message_id}", {**form(), "attachments": [str(attachment.pk)]})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Ce message a été supprimé entre-temps" in page and "<title>Erreur" in page
    assert 'value="Durand"' in page and '<form method="post" action="/shares/new" ' in page  # without it
    assert not PatientShare.objects.exists() and not list(share_blob_store().iter_ids())
    assert not AuditEvent.objects.filter(action="message.access_denied").exists()


def test_posting_a_share_from_a_message_out_of_reach_is_refused_like_a_deleted_one(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same answer as for a message deleted for good: it tells nothing of the id. The
    # attempt on a message that exists is recorded. The document sent along is read by no
    # upload handler (Django's own would hold it in clear, in memory or in a temporary file).
    from django.core.files import uploadhandler

    colleague, doctor, other = make_user(), make_user(), make_user()
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes("irm-genou"))
    received: list[str] = []
    for handler in (uploadhandler.MemoryFileUploadHandler, uploadhandler.TemporaryFileUploadHandler):
        monkeypatch.setattr(handler, "new_file", lambda self, *args, **kwargs: received.append(args[1]))
    response = browser(other).post(f"/shares/new?message={message_id}", form())
    assert received == []
    assert response.status_code == 400 and "Ce message a été supprimé entre-temps" in response.content.decode()
    assert not PatientShare.objects.exists()
    assert AuditEvent.objects.filter(action="message.access_denied", target_id=message_id).count() == 1


def test_a_blob_gone_while_the_share_is_made_is_refused_clearly(db: None) -> None:
    # The narrower window: the message's rows were read, then its blobs went (the purge
    # removes them after it commits) before they were copied.
    from pli.messaging.models import Attachment
    from pli.messaging.uploads import blob_store

    colleague, doctor = make_user(), make_user()
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes("irm-genou"))
    client = browser(doctor)
    attachment = Attachment.objects.get(message_id=message_id)
    blob_store().delete(attachment.blob_id)
    response = client.post(
        f"/shares/new?message={message_id}", {**form(documents=None), "attachments": [str(attachment.pk)]}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Ce message a été supprimé entre-temps" in page and "<title>Erreur" in page
    assert not PatientShare.objects.exists()


def test_an_upload_too_old_to_commit_asks_to_send_again_keeping_the_form(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pli.sharing import services

    monkeypatch.setattr(services, "MAX_PENDING_AGE", -1.0)  # every upload is already too old
    response = browser(make_user()).post("/shares/new", form())
    assert response.status_code == 400
    page = response.content.decode()
    assert "L\u2019envoi des fichiers a pris trop de temps\u00a0; veuillez les envoyer à nouveau." in page
    assert 'value="Durand"' in page
    assert not PatientShare.objects.exists() and list(share_blob_store().iter_ids()) == []


def test_a_limit_of_one_document_is_written_in_the_singular(db: None, settings: Any) -> None:
    """PLI_SHARE_MAX_DOCUMENTS may be 1: the page said « Jusqu'à 1 fichiers », and refused a
    second document with « Au plus 1 fichiers peuvent être envoyés »."""
    settings.PLI_SHARE_MAX_DOCUMENTS = 1
    client = browser(make_user())
    assert "Jusqu\u2019à 1 fichier, " in client.get("/shares/new").content.decode()
    documents = [SimpleUploadedFile(f"cr{n}.pdf", pdf_bytes(f"cr{n}"), "application/pdf") for n in range(2)]
    response = client.post("/shares/new", form(documents=documents))
    assert response.status_code == 400
    assert "Au plus 1 fichier peut être envoyé à la fois." in response.content.decode()


def test_english_pages_show_dates_day_first_as_the_forms_take_them(db: None) -> None:
    """The forms take day/month/year in both languages; the English pages showed dates
    month first: a birth date typed 04/05/1960 (4 May) read back as 05/04/1960 on the
    share's page, and the patient's history said 11/30/2026."""
    client = browser(make_user())
    client.cookies["django_language"] = "en"
    assert "DD/MM/YYYY" in client.get("/shares/new").content.decode()
    response = client.post("/shares/new", form(patient_birth_date="04/05/1960"))
    assert response.status_code == 303
    share = PatientShare.objects.get()
    assert share.patient_birth_date.isoformat() == "1960-05-04"
    detail = client.get(response["Location"]).content.decode()
    assert "<dt>Born on</dt><dd>04/05/1960</dd>" in detail
    created = timezone.localtime(share.created_at)
    assert f"{created.strftime('%d/%m/%Y')} {created.strftime('%H:%M')}" in detail


def test_the_history_names_the_channels_as_the_notifications_table_does(db: None) -> None:
    """The history showed the stored values: "notification remise au prestataire (email)",
    "(sms)", beside a table of the same notifications saying "E-mail" and "SMS"."""
    user = make_user()
    share, token = make_share(user)
    run_tasks()  # the link, by e-mail
    Patient(token).birth_date()
    run_tasks()  # the code, by SMS
    history = browser(user).get(f"/shares/{share.pk}").content.decode().split('id="history-title"', 1)[1]
    sent = [item.split("</li>", 1)[0].strip() for item in history.split('data-event="notification_sent"')[1:]]
    assert len(sent) == 2
    assert any(item.endswith("(E-mail)") for item in sent) and any(item.endswith("(SMS)") for item in sent)
    assert "(email)" not in history and "(sms)" not in history


def test_the_history_does_not_call_a_code_sent_when_it_was_replaced_before_leaving(db: None) -> None:
    """A patient who asked for the code by e-mail before the SMS left: the history said
    « code à usage unique envoyé (SMS) » while the notifications table said the SMS was
    cancelled. The history says the code was requested; what left is the provider's line."""
    user = make_user()
    share, token = make_share(user)
    run_tasks()  # the link, by e-mail
    patient = Patient(token)
    patient.birth_date()
    patient.new_code("email")
    run_tasks()
    page = browser(user).get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    history = page.split('id="history-title"', 1)[1]
    assert "code à usage unique demandé (SMS)" in history
    assert "code à usage unique demandé (E-mail)" in history
    assert "envoyé (SMS)" not in history
    sent = [item.split("</li>", 1)[0].strip() for item in history.split('data-event="notification_sent"')[1:]]
    assert len(sent) == 2 and all(item.endswith("(E-mail)") for item in sent)  # the link, then the code


def test_the_history_shows_a_run_of_retries_once(db: None) -> None:
    """A provider down for a day is some thirty « will retry » lines: the page shows the
    latest, with how many attempts, and keeps every other event."""
    from pli.audit import services as audit

    user = make_user()
    share, _token = make_share(user)
    target = ("sharing.patientshare", str(share.pk))

    def failed(attempt: int, channel: str = "sms", final: bool = False) -> None:
        details = {"channel": channel, "kind": "link", "attempt": attempt, "reason": "timeout", "final": final}
        audit.record("share.notification_failed", target=target, outcome=audit.FAILURE, details=details)

    for attempt in (1, 2, 3):
        failed(attempt)
    failed(1, channel="email")
    failed(4, final=True)
    page = browser(user).get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert page.count('data-event="notification_failed"') == 3  # three SMS as one, e-mail, the final one
    assert page.count("3 tentatives à ce jour") == 1 and "tentative à ce jour" not in page.replace("3 tentatives", "")
    # The trail (and the API's events) keep every attempt.
    assert AuditEvent.objects.filter(action="share.notification_failed").count() == 5


def test_a_locked_share_says_what_locked_it(db: None) -> None:
    """« Trop de tentatives » alone: the GP could not tell a birth date she mistyped (the
    patient typing their real one five times) from someone trying codes."""
    user = make_user()
    share, token = make_share(user)
    for _ in range(5):
        Patient(token).birth_date("02/02/2002")
    client = browser(user)
    page = client.get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'data-lock-reason="birth_date"' in page
    assert "Les dates de naissance saisies ne correspondaient pas" in page
    assert "accès verrouillé (trop de dates de naissance erronées)" in page


def _submission(page: Any) -> str:
    found = re.search(r'name="submission" value="([^"]+)"', page.content.decode())
    assert found is not None
    return found.group(1)


def test_the_same_share_form_sent_twice_is_one_share(db: None) -> None:
    """A double click on « Envoyer au patient » without JavaScript, or the form sent again
    after a slow answer: one share, one SMS to the patient, the second request's document
    discarded and the practitioner taken to the first share."""
    user = make_user()
    client = browser(user)
    submission = _submission(client.get("/shares/new"))
    assert _submission(client.get("/shares/new")) != submission  # each page its own
    first = client.post("/shares/new", form(submission=submission))
    second = client.post("/shares/new", form(submission=submission))
    assert first.status_code == second.status_code == 303
    share = PatientShare.objects.get()
    assert second["Location"] == first["Location"] == f"/shares/{share.pk}"
    assert ShareNotification.objects.filter(kind=ShareNotification.Kind.LINK).count() == 1
    assert list(share_blob_store().iter_ids()) == [share.documents.get().blob_id]
    assert AuditEvent.objects.filter(action="share.created").count() == 1
    scripted = client.post("/shares/new", form(submission=submission), HTTP_X_PLI_UPLOAD="1")
    assert scripted.status_code == 201 and scripted.json()["location"] == first["Location"]
    # Another page's form is another share.
    assert client.post("/shares/new", form(submission="y" * 32)).status_code == 303
    assert PatientShare.objects.count() == 2


def test_the_same_share_form_from_a_message_sent_twice_is_one_share(db: None) -> None:
    from pli.messaging.models import Attachment

    colleague, doctor = make_user(), make_user()
    message_id = send_message_with_attachment(colleague, doctor, pdf_bytes("irm"))
    attachment = Attachment.objects.get(message_id=message_id)
    client = browser(doctor)
    submission = _submission(client.get(f"/shares/new?message={message_id}"))
    data = {**form(documents=None), "attachments": [str(attachment.pk)], "submission": submission}
    first = client.post(f"/shares/new?message={message_id}", data)
    second = client.post(f"/shares/new?message={message_id}", data)
    assert first.status_code == second.status_code == 303 and second["Location"] == first["Location"]
    share = PatientShare.objects.get()
    assert list(share_blob_store().iter_ids()) == [share.documents.get().blob_id]  # the second copy removed


def test_the_same_share_form_sent_twice_at_once_is_one_share(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second request's check ran before the first one committed: the unique constraint
    stops its insert, and it answers with the first share."""
    client = browser(make_user())
    submission = _submission(client.get("/shares/new"))
    calls: list[str] = []
    real = services._refuse_repeat

    def racing(user: User, value: str) -> None:
        calls.append(value)
        if len(calls) != 2:  # the second request's first check
            real(user, value)

    monkeypatch.setattr(services, "_refuse_repeat", racing)
    first = client.post("/shares/new", form(submission=submission))
    second = client.post("/shares/new", form(submission=submission))
    assert len(calls) == 3
    assert first.status_code == second.status_code == 303 and second["Location"] == first["Location"]
    share = PatientShare.objects.get()
    assert ShareNotification.objects.filter(kind=ShareNotification.Kind.LINK).count() == 1
    assert list(share_blob_store().iter_ids()) == [share.documents.get().blob_id]


def test_revoking_asks_first_without_javascript(db: None) -> None:
    """The page's script asks before « Révoquer le lien »; without it the form was sent at
    once and the patient's link was dead. The server now asks on a page of its own."""
    user = make_user()
    client = browser(user)
    share, _token = make_share(user)
    assert "data-confirm=" in client.get(f"/shares/{share.pk}").content.decode()
    response = client.post(f"/shares/{share.pk}/revoke")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Révoquer ce lien\u00a0?" in page and "Révoquer le lien d\u2019un patient" in page
    assert 'name="confirmed" value="1"' in page and f'href="/shares/{share.pk}"' in page
    share.refresh_from_db()
    assert share.status == Status.SENT
    assert not AuditEvent.objects.filter(action="share.revoked").exists()
    assert client.post(f"/shares/{share.pk}/revoke", {"confirmed": "1"}).status_code == 303
    share.refresh_from_db()
    assert share.status == Status.REVOKED


def _link_notifications(share: PatientShare) -> int:
    return share.notifications.filter(kind=ShareNotification.Kind.LINK).count()


def test_send_a_new_link_clicked_twice_sends_one(db: None) -> None:
    """A double click on « Envoyer un nouveau lien » without JavaScript sent two links: two
    SMS, the first of which no longer opened anything."""
    user = make_user()
    client = browser(user)
    share, _token = make_share(user)
    per_link = _link_notifications(share)  # one a channel
    submission = _submission(client.get(f"/shares/{share.pk}"))
    for _ in range(2):
        response = client.post(f"/shares/{share.pk}/resend", {"submission": submission}, follow=True)
        assert response.status_code == 200 and "nouveau lien est en cours" in response.content.decode()
    assert _link_notifications(share) == 2 * per_link  # the first link and one new one
    assert AuditEvent.objects.filter(action="share.resent").count() == 1
    token = token_of(share)
    assert Patient(token).get().status_code == 200
    # The next page's button is another new link.
    client.post(f"/shares/{share.pk}/resend", {"submission": _submission(client.get(f"/shares/{share.pk}"))})
    assert _link_notifications(share) == 3 * per_link and Patient(token).get().status_code == 404


def test_unlock_and_resend_clicked_twice_unlocks_and_sends_once(db: None) -> None:
    """The second click used to answer « Ce partage n'est pas verrouillé » after it was done."""
    user = make_user()
    client = browser(user)
    share, token = make_share(user)
    for _ in range(5):
        Patient(token).birth_date("02/02/2002")
    per_link = _link_notifications(share)
    submission = _submission(client.get(f"/shares/{share.pk}"))
    for _ in range(2):
        page = client.post(f"/shares/{share.pk}/unlock", {"resend": "1", "submission": submission}, follow=True)
        html = page.content.decode()
        assert "pas verrouillé" not in html and 'data-status="sent"' in html
    assert _link_notifications(share) == 2 * per_link
    assert AuditEvent.objects.filter(action="share.unlocked").count() == 1
    assert AuditEvent.objects.filter(action="share.resent").count() == 1
    # The same page's value for another button is another action.
    client.post(f"/shares/{share.pk}/resend", {"submission": submission})
    assert _link_notifications(share) == 3 * per_link


def test_the_page_lists_the_latest_events_and_still_sees_an_old_failure(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link downloaded again and again (a script with a stolen session): the page lists the
    latest events and says how many earlier ones it leaves out, and a channel that failed
    before them is still reported as failed."""
    from pli.audit import services as audit
    from pli.sharing import notifications, views

    monkeypatch.setattr(views, "HISTORY_SHOWN", 5)
    user = make_user()
    share, _token = make_share(user, mobile=None)
    target = ("sharing.patientshare", str(share.pk))
    link = ShareNotification.objects.get(share=share, kind=ShareNotification.Kind.LINK)
    ShareNotification.objects.filter(pk=link.pk).update(state=ShareNotification.State.FAILED)
    details = {"channel": "email", "kind": "link", "attempt": 1, "reason": "smtp:bad_address", "final": True}
    details |= {"category": notifications.ADDRESS_REFUSED, "notification": str(link.pk)}
    audit.record("share.notification_failed", target=target, outcome=audit.FAILURE, details=details)
    for _ in range(8):
        audit.record("share.downloaded", target=target, details={"document": "x"})

    page = browser(user).get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    history = page.split('id="history-title"', 1)[1]
    assert history.count('data-event="downloaded"') == 5
    assert 'data-event="created"' not in history and 'data-event="notification_failed"' not in history
    total = AuditEvent.objects.filter(target_id=str(share.pk), action__in=services.EVENT_ACTIONS).count()
    assert f"{total - 5} événements plus anciens ne sont pas listés\u00a0: voici les derniers." in history
    assert f'data-failure="{notifications.ADDRESS_REFUSED}"' in page
    # The API's events stay whole.
    assert len(services.events(share)) == total
