"""The patient's reply: a short message and files (JPEG, PNG, PDF ≤ 10 MB, recognised by
their first bytes) arriving in the practitioner's mailbox as a message linked to the share."""

from __future__ import annotations

import datetime
import importlib
import re
from typing import Any

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from pli.accounts.models import Mailbox, Organisation, User
from pli.api.services import create_token
from pli.audit import services as audit
from pli.audit.models import AuditEvent
from pli.messaging import services as messaging
from pli.messaging.models import Attachment, Delivery, Folder, Message, SearchToken
from pli.messaging.uploads import blob_store as message_blob_store
from pli.sharing import services
from pli.sharing.models import PatientSession, PatientShare, ShareReply
from pli.testing.accounts import make_user
from sharing.helpers import PNG_1PX, Patient, last_code, make_share, pdf_bytes, run_tasks

PATIENT_SENDER = "Patient — Élodie Durand (lien sécurisé)"


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
    # A reply may be read hours later: the form says where an emergency goes.
    assert "Pas pour une urgence\u00a0:</strong> appelez le 15 (SAMU) ou le 112." in page.content.decode()
    assert "5\u00a0000 caractères au plus." in page.content.decode()  # maxlength stops typing silently
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


def test_the_patient_sees_what_they_have_already_sent_on_a_later_visit(db: None) -> None:
    """Once « Your reply has been sent » had gone, nothing on the page said a reply had been
    sent: back a day later, the patient could not tell, and sent it again. The page lists
    when each went and with how many files (never its text), also once replies are closed."""
    doctor = make_user()
    share, token = make_share(doctor, allow_reply=True)
    patient = Patient(token)
    assert "Vos réponses" not in patient.sign_in().content.decode()
    reply(patient, "Voici la photo", [SimpleUploadedFile("photo.png", PNG_1PX, "image/png")])
    reply(patient, "Et merci")
    services.close_conversation(doctor, share.pk)
    later = Patient(token)  # another day, another browser
    html = later.sign_in().content.decode()
    assert "Vos réponses" in html
    assert "réponse envoyée, avec 1 fichier" in html and html.count("réponse envoyée") == 2
    assert "Voici la photo" not in html and "Et merci" not in html


def test_files_are_checked_by_their_content(db: None) -> None:
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    disguised = SimpleUploadedFile("photo.jpg", b"MZ\x90\x00" + b"\x00" * 200, "image/jpeg")
    response = reply(patient, "Ma tension ce matin : 14/9.", [disguised])
    assert response.status_code == 415
    assert not ShareReply.objects.exists()
    assert list(message_blob_store().iter_ids()) == []
    # The refused file is named, and what the patient wrote is still in the box.
    page = response.content.decode()
    assert "«\u00a0photo.jpg\u00a0»" in page
    assert "Ma tension ce matin : 14/9.</textarea>" in page


def test_a_file_name_ends_as_its_content_is(db: None) -> None:
    """A PDF named compte-rendu.bat would reach the practitioner as a script to double-click."""
    doctor = make_user()
    share, token = make_share(doctor, allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    files = [
        SimpleUploadedFile("compte-rendu.bat", pdf_bytes("x"), "application/pdf"),
        SimpleUploadedFile("lettre.HTA", PNG_1PX, "image/png"),
        SimpleUploadedFile("Scan.PDF", pdf_bytes("y"), "application/pdf"),
    ]
    assert reply(patient, "x", files).status_code == 303
    message = messaging.visible_message(doctor, ShareReply.objects.get(share=share).message_id)
    names = [a.name for a in Attachment.objects.filter(message=message).order_by("position")]
    assert names == ["compte-rendu.bat.pdf", "lettre.HTA.png", "Scan.PDF"]


def _tag(html: str, pattern: str) -> str:
    found = re.search(pattern, html)
    assert found is not None, pattern
    return found.group(0)


def test_a_refused_reply_points_to_what_to_fix_and_takes_the_focus_there(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal is one message, above the form or beside the files it concerns: the field
    it concerns is marked invalid, points to it and has the focus; a refusal of the whole
    reply has the focus itself."""
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    textarea, file_input = r"<textarea[^>]*>", r"<input[^>]*name=\"files\"[^>]*>"
    message = r"<p[^>]*id=\"reply-error\"[^>]*>"

    empty = reply(patient, "").content.decode()
    box = _tag(empty, textarea)
    assert 'aria-invalid="true"' in box and 'aria-describedby="reply-error"' in box and "autofocus" in box
    assert "autofocus" not in _tag(empty, message) and "aria-invalid" not in _tag(empty, file_input)

    disguised = SimpleUploadedFile("photo.jpg", b"MZ\x90\x00" + b"\x00" * 200, "image/jpeg")
    refused_file = reply(patient, "x", [disguised]).content.decode()
    files = _tag(refused_file, file_input)
    assert 'aria-invalid="true"' in files and "reply-error" in files and "autofocus" in files
    assert "aria-invalid" not in _tag(refused_file, textarea)
    # Between the files' label and their field, not above the message box: on a phone the
    # focused field scrolled the reason half out of the screen.
    label = refused_file.index('<label for="id_files">')
    assert label < refused_file.index(_tag(refused_file, message)) < refused_file.index(files)

    monkeypatch.setattr("pli.sharing.mailbox.REPLIES_PER_DAY", 0)
    too_many = reply(patient, "encore").content.decode()
    assert "autofocus" in _tag(too_many, message)
    assert "aria-invalid" not in _tag(too_many, textarea) + _tag(too_many, file_input)
    # Each time the title says so first, as on the other refused pages.
    for page in (empty, refused_file, too_many):
        assert _tag(page, r"<title>[^<]*").startswith("<title>Erreur\u00a0: ")
    assert "<title>Erreur" not in patient.get("/documents").content.decode()


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


def replied(doctor: User | None = None, text: str = "Voici mes anciens résultats") -> tuple[PatientShare, Message]:
    """A share whose patient replied with a photo, and the message the reply became."""
    doctor = doctor or make_user()
    share, token = make_share(doctor, allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    photo = SimpleUploadedFile("photo.png", PNG_1PX, "image/png")
    assert reply(patient, text, [photo]).status_code == 303
    answer = ShareReply.objects.get(share=share)
    return share, Message.objects.select_related("sender").get(pk=answer.message_id)


def test_the_reply_is_received_through_the_messaging_service(db: None) -> None:
    doctor = make_user()
    share, message = replied(doctor)
    mailbox = Mailbox.objects.get(owner=doctor)
    assert share.reply_mailbox == mailbox
    # Only receive_external_message records this event and names an external sender.
    event = AuditEvent.objects.get(action="message.receive")
    assert (event.actor_type, event.target_id) == ("patient", str(message.pk))
    assert event.details["mailbox"] == str(mailbox.pk) and event.details["attachments"] == 1
    assert message.external_sender == {"kind": "patient_link", "name": "Élodie Durand"}
    assert message.thread_id == share.pk and message.attachment_count == 1
    assert [a.name for a in messaging.message_attachments(message)] == ["photo.png"]
    copy = Delivery.objects.get(message=message)
    assert (copy.mailbox, copy.folder, copy.read_at) == (mailbox, Folder.INBOX, None)
    # The subject ("Élodie Durand a répondu à votre envoi sécurisé") is searchable by its words.
    for words in ("repondu envoi", "Durand"):
        page = messaging.folder_page(mailbox, Folder.INBOX, query=messaging.SearchQuery(text=words))
        assert [c.message_id for c in page.items] == [message.pk], words
    assert "replied" in [e.type for e in services.events(share)]


def test_a_failed_reply_leaves_nothing_behind(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The message, its attachments, copy, tokens and the share's link commit together."""
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    real_record = audit.record

    def failing_record(action: str, **kwargs: Any) -> Any:
        if action == "share.replied":  # the last write of the reply's transaction
            raise RuntimeError("disk full")
        return real_record(action, **kwargs)

    monkeypatch.setattr(audit, "record", failing_record)
    photo = SimpleUploadedFile("photo.png", PNG_1PX, "image/png")
    with pytest.raises(RuntimeError):
        reply(patient, "x", [photo])
    for model in (Message, Attachment, Delivery, SearchToken, ShareReply):
        assert not model.objects.exists(), model
    assert not AuditEvent.objects.filter(action="message.receive").exists()
    assert list(message_blob_store().iter_ids()) == []


def test_an_expired_upload_asks_the_patient_to_send_again(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    monkeypatch.setattr(messaging, "MAX_PENDING_AGE", -1.0)  # every upload is already too old
    response = reply(patient, "x", [SimpleUploadedFile("photo.png", PNG_1PX, "image/png")])
    assert response.status_code == 400
    assert "L\u2019envoi des fichiers a pris trop de temps" in response.content.decode()
    assert not ShareReply.objects.exists() and not Message.objects.exists()
    assert list(message_blob_store().iter_ids()) == []


def test_the_practitioner_sees_the_patient_as_the_sender(db: None) -> None:
    doctor = make_user()
    share, message = replied(doctor)
    mailbox = Mailbox.objects.get(owner=doctor)
    client = Client()
    client.force_login(doctor)
    listing = client.get(f"/messages/{mailbox.pk}/inbox/").content.decode()
    assert PATIENT_SENDER in listing and "boîte supprimée" not in listing
    thread = client.get(f"/messages/m/{message.pk}/").content.decode()
    assert f"<strong>{PATIENT_SENDER}</strong>" in thread and "boîte supprimée" not in thread

    _token, raw = create_token(doctor, "test")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    detail = api.get(f"/api/v1/messages/{message.pk}").json()
    assert (detail["sender"], detail["sender_name"], detail["sender_kind"]) == (None, PATIENT_SENDER, "patient_link")
    results = api.get(f"/api/v1/mailboxes/{mailbox.pk}/messages").json()["results"]
    assert [(r["id"], r["sender_name"], r["sender_kind"]) for r in results] == [
        (str(message.pk), PATIENT_SENDER, "patient_link")
    ]
    # Software filing the answer finds the share it answers, and may end the conversation.
    assert detail["share_id"] == results[0]["share_id"] == str(share.pk)
    assert api.post(f"/api/v1/shares/{detail['share_id']}/close").status_code == 200
    english = api.get(f"/api/v1/messages/{message.pk}", HTTP_ACCEPT_LANGUAGE="en").json()
    assert english["sender_name"] == "Patient — Élodie Durand (secure link)"


def test_replies_delivered_before_external_senders_get_their_patient(db: None) -> None:
    """The data migration names the patient of replies written by the former code, which
    left the message without any sender."""
    _share, message = replied()
    _other_share, other = replied()
    Message.objects.filter(pk__in=[message.pk, other.pk]).update(external_sender=None)
    assert Message.objects.get(pk=message.pk).sender_label == "(boîte supprimée)"
    migration = importlib.import_module("pli.sharing.migrations.0002_patient_reply_senders")
    migration.name_patient_senders(apps, None)
    for pk in (message.pk, other.pk):
        assert Message.objects.get(pk=pk).sender_label == PATIENT_SENDER


def test_a_patients_reply_is_answered_with_a_new_share_to_the_same_person(db: None) -> None:
    """A patient has no mailbox: "Reply" would open an empty form."""
    doctor = make_user()
    share, message = replied(doctor)
    client = Client()
    client.force_login(doctor)
    thread = client.get(f"/messages/m/{message.pk}/").content.decode()
    assert f"/shares/new?patient_of={share.pk}" in thread
    assert "mode=reply_all" not in thread and f"reply_to={message.pk}&amp;mode=reply" not in thread
    page = client.get(f"/shares/new?patient_of={share.pk}")
    assert page.status_code == 200
    initial = page.context["form"].initial
    assert (initial["patient_family_name"], initial["patient_birth_date"]) == ("Durand", "15/02/1984")
    assert initial["patient_mobile"] == "06 12 34 56 78" and initial["allow_reply"] is True
    # Reading the patient's details is recorded, and only the share's owner may.
    assert AuditEvent.objects.filter(action="share.read", target_id=str(share.pk), actor_id=str(doctor.pk)).exists()
    intruder = Client()
    intruder.force_login(make_user())
    assert intruder.get(f"/shares/new?patient_of={share.pk}").status_code == 404
    assert client.get("/shares/new?patient_of=x").status_code == 404


def test_a_reply_deleted_from_the_mailbox_is_no_longer_linked_from_the_share(db: None) -> None:
    """Once the practitioner had deleted the patient's reply for good, the share's page still
    offered « à lire dans votre messagerie »: the link led to « page introuvable », recorded
    in the trail as an access refused to the practitioner."""
    doctor = make_user()
    share, message = replied(doctor)
    client = Client()
    client.force_login(doctor)
    link = f'href="/messages/m/{message.pk}/"'
    assert link in client.get(f"/shares/{share.pk}").content.decode()
    messaging.move_message(doctor, message.pk, "trash")
    messaging.delete_message(doctor, message.pk)
    page = client.get(f"/shares/{share.pk}").content.decode()
    assert link not in page
    assert "supprimée de votre messagerie" in page
    assert not AuditEvent.objects.filter(action="message.access_denied").exists()


def test_a_reply_whose_share_retention_deleted_no_longer_links_to_it(db: None) -> None:
    """Once the organisation's retention had deleted the share, the patient's reply still
    offered « Voir l\u2019envoi au patient » and « Répondre au patient »: both led to
    « page introuvable »."""
    doctor = make_user()
    share, message = replied(doctor)
    Organisation.objects.filter(pk=share.organisation_id).update(retention_days=30)
    assert services.run_periodic(timezone.now() + datetime.timedelta(days=200))["shares"] == 1
    client = Client(HTTP_ACCEPT_LANGUAGE="fr")
    client.force_login(doctor)
    response = client.get(f"/messages/m/{message.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="/shares/{share.pk}"' not in page and f"patient_of={share.pk}" not in page
    assert "L\u2019envoi au patient n\u2019existe plus" in page
    assert "Voici mes anciens résultats" in page
    # The message itself stays: the API and the search find it as before.
    _token, raw = create_token(doctor, "test")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get(f"/api/v1/messages/{message.pk}").json()["thread_id"] == str(share.pk)
    mailbox = Mailbox.objects.get(owner=doctor)
    found = messaging.folder_page(mailbox, Folder.INBOX, query=messaging.SearchQuery(text="Durand"))
    assert [c.message_id for c in found.items] == [message.pk]


def test_answering_a_patient_by_a_new_share_marks_the_reply_answered(db: None) -> None:
    """The team sees who answered a patient's reply, as for a letter answered by a reply."""
    doctor = make_user()
    share, message = replied(doctor)
    client = Client()
    client.force_login(doctor)
    thread = client.get(f"/messages/m/{message.pk}/").content.decode()
    link = f"/shares/new?patient_of={share.pk}&answering={message.pk}"
    assert link.replace("&", "&amp;") in thread
    page = client.get(link).content.decode()
    assert f'name="answering" value="{message.pk}"' in page
    data = {
        "patient_family_name": "Durand",
        "patient_given_name": "Élodie",
        "patient_birth_date": "15/02/1984",
        "patient_mobile": "06 12 34 56 78",
        "message": "Voici l\u2019ordonnance.",
        "answering": str(message.pk),
        "documents": SimpleUploadedFile("ordonnance.pdf", pdf_bytes("ordonnance"), "application/pdf"),
    }
    assert client.post("/shares/new", data).status_code == 303
    copy = Delivery.objects.get(message=message)
    assert copy.answered_by == doctor and copy.answered_at is not None
    assert PatientShare.objects.count() == 2
    # Not a message of one's own: nothing to mark, the share is made all the same.
    stranger = Client()
    stranger.force_login(make_user())
    assert (
        stranger.post(
            "/shares/new", {**data, "documents": SimpleUploadedFile("o.pdf", pdf_bytes("o"), "application/pdf")}
        ).status_code
        == 303
    )
    assert PatientShare.objects.count() == 3


def test_replies_are_limited_per_day(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone past the two factors must not fill the disk or the practitioner's mailbox."""
    monkeypatch.setattr("pli.sharing.mailbox.REPLIES_PER_DAY", 2)
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    assert [reply(patient, f"message {i}").status_code for i in range(2)] == [303, 303]
    refused = reply(patient, "encore", [SimpleUploadedFile("a.pdf", pdf_bytes("a"), "application/pdf")])
    assert refused.status_code == 429
    assert "demain" in refused.content.decode()
    assert ShareReply.objects.count() == 2
    assert Attachment.objects.count() == 0 and list(message_blob_store().iter_ids()) == []


def test_reply_files_are_limited_in_bytes_per_day(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    content = pdf_bytes("a")
    monkeypatch.setattr("pli.sharing.mailbox.REPLY_BYTES_PER_DAY", len(content) * 3)
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    files = [SimpleUploadedFile(f"{i}.pdf", content, "application/pdf") for i in range(2)]
    assert reply(patient, "deux", files).status_code == 303
    files = [SimpleUploadedFile(f"{i}.pdf", content, "application/pdf") for i in range(2)]
    assert reply(patient, "deux de plus", files).status_code == 429
    assert reply(patient, "du texte seul").status_code == 303
    assert ShareReply.objects.count() == 2 and Attachment.objects.count() == 2


def _submission(page: Any) -> str:
    found = re.search(r'name="submission" value="([^"]+)"', page.content.decode())
    assert found is not None
    return found.group(1)


def test_the_same_reply_form_sent_twice_is_one_reply(db: None) -> None:
    """A double tap on « Envoyer », or the form sent again after an answer that never came."""
    doctor = make_user()
    share, token = make_share(doctor, allow_reply=True)
    patient = Patient(token)
    page = patient.sign_in()
    submission = _submission(page)
    assert _submission(patient.get("/documents")) != submission  # each page its own
    # Not refilled by the browser on Back or reload (Firefox does, hidden fields too): a
    # changed reply would be taken for the first one sent again, and not sent.
    field = re.search(r'<input type="hidden" name="submission"[^>]*>', page.content.decode())
    assert field is not None and 'autocomplete="off"' in field.group(0)

    def send() -> Any:
        scan = SimpleUploadedFile("examen.pdf", pdf_bytes("examen"), "application/pdf")
        return patient.client.post(
            patient.url("/reply"), {"text": "Voici mon examen", "files": [scan], "submission": submission}
        )

    first, second = send(), send()
    assert first.status_code == second.status_code == 303
    assert second["Location"].endswith("?replied=1")
    answer = ShareReply.objects.get(share=share)
    assert Message.objects.filter(pk=answer.message_id).count() == Message.objects.count() == 1
    attachment = Attachment.objects.get()
    assert list(message_blob_store().iter_ids()) == [attachment.blob_id]  # the second's file removed
    assert [e.type for e in services.events(share)].count("replied") == 1

    # Another page's form is another reply.
    again = patient.client.post(
        patient.url("/reply"), {"text": "Et une question", "submission": _submission(patient.get("/documents"))}
    )
    assert again.status_code == 303 and ShareReply.objects.filter(share=share).count() == 2


def test_an_altered_reply_form_is_refused(db: None) -> None:
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    response = patient.client.post(patient.url("/reply"), {"text": "Bonjour", "submission": "<script>"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "pas pu être lue" in page
    assert "<script>" not in page and "Bonjour</textarea>" in page
    assert not ShareReply.objects.exists()


def test_a_refused_reply_shows_the_documents_again_audited(db: None) -> None:
    share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()

    def listed() -> int:
        return AuditEvent.objects.filter(action="share.documents_listed", target_id=str(share.pk)).count()

    before = listed()
    response = reply(patient, "   ")  # nothing written, no file
    assert response.status_code == 400 and "résultats.pdf" in response.content.decode()
    assert listed() == before + 1


def test_a_reply_whose_session_ended_meanwhile_shows_no_documents(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new link sent while the patient was writing lets them out: the refused reply
    sends them to confirm who they are, not back to the documents."""
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    calls: list[int] = []
    real = services.open_session

    def ends_after_the_first_check(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs) if len(calls) == 1 else None

    monkeypatch.setattr(services, "open_session", ends_after_the_first_check)
    response = reply(patient, "Bonjour")
    assert len(calls) == 2
    assert response.status_code == 303 and response["Location"].endswith("?session=expired")
    assert not ShareReply.objects.exists()


def test_the_reply_says_the_day_the_share_was_made_in_french_time(db: None) -> None:
    """The intro gave the date of the share in UTC: a share made at half past midnight was
    « transmis le » the day before."""
    paris_midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    made = paris_midnight - datetime.timedelta(days=1) + datetime.timedelta(minutes=30)
    assert made.astimezone(datetime.UTC).date() != made.date()  # the day before, in UTC
    doctor = make_user()
    share, token = make_share(doctor, allow_reply=True, now=made)
    patient = Patient(token)
    patient.sign_in()
    assert reply(patient).status_code == 303
    message = messaging.visible_message(doctor, ShareReply.objects.get(share=share).message_id)
    assert f"que vous avez transmis le {made.strftime('%d/%m/%Y')}\u00a0:" in message.body, message.body


def _idle_for(share: PatientShare, minutes: float) -> None:
    """Time passes on the server: the patient's sessions were last seen ``minutes`` ago."""
    seen = timezone.now() - datetime.timedelta(minutes=minutes)
    PatientSession.objects.filter(share=share).update(last_seen_at=seen)


def test_writing_a_reply_keeps_the_session_alive(db: None) -> None:
    """The reply form's script posts to /alive while the patient writes: a reply written over
    more than 15 minutes is still accepted, and nothing written is sent before the reply."""
    share, token = make_share(allow_reply=True)
    patient = Patient(token)
    page = patient.sign_in().content.decode()
    assert f'data-alive-url="/p/{token}/alive"' in page and 'data-idle-seconds="900"' in page
    assert re.search(r'<script src="/static/sharing/patient-reply\.js[^"]*" defer>', page)
    for _ in range(4):  # twenty minutes of writing, the script posting every five
        _idle_for(share, 5)
        alive = patient.client.post(patient.url("/alive"))
        assert alive.status_code == 204 and alive.content == b""
    _idle_for(share, 5)
    assert reply(patient, "Une longue réponse").status_code == 303
    assert ShareReply.objects.filter(share=share).count() == 1


def test_the_keep_alive_refuses_an_ended_session_and_is_not_a_get(db: None) -> None:
    share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    assert patient.get("/alive").status_code == 405
    _idle_for(share, 16)
    ended = patient.client.post(patient.url("/alive"))
    assert ended.status_code == 303 and ended["Location"].endswith("?session=expired")
    assert Patient(token).client.post(f"/p/{token}/alive").status_code == 303
    # The birth date alone keeps nothing alive either.
    halfway = Patient(token)
    assert halfway.birth_date().status_code == 303
    assert halfway.client.post(halfway.url("/alive")).status_code == 303


def test_the_keep_alive_needs_the_pages_csrf_token(db: None) -> None:
    share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.client = Client(enforce_csrf_checks=True)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', patient.get().content.decode())
    assert csrf
    sent = patient.client.post(patient.url(), {"birth_date": "15/02/1984", "csrfmiddlewaretoken": csrf[1]})
    assert sent.status_code == 303
    run_tasks()
    assert (
        patient.client.post(patient.url("/code"), {"code": last_code(), "csrfmiddlewaretoken": csrf[1]}).status_code
        == 303
    )
    _idle_for(share, 5)
    assert patient.client.post(patient.url("/alive")).status_code == 403
    assert patient.client.post(patient.url("/alive"), HTTP_X_CSRFTOKEN=csrf[1]).status_code == 204


def test_a_reply_arriving_near_the_end_of_the_idle_time_counts_as_activity(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without JavaScript nothing keeps the session alive while the patient writes: a reply
    sent 14 minutes after the page was shown, whose photos then took a minute to arrive, was
    refused once they had (« session ended ») and lost. The request's arrival is activity."""
    share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    _idle_for(share, 14.5)
    real_reply = services.reply

    def slow_upload(*args: Any, **kwargs: Any) -> Any:
        # The files took a minute to arrive: the reply is saved a minute later.
        return real_reply(*args, **{**kwargs, "now": timezone.now() + datetime.timedelta(minutes=1)})

    monkeypatch.setattr(services, "reply", slow_upload)
    sent = reply(patient, "Voici les photos")
    assert sent.status_code == 303 and sent["Location"].endswith("?replied=1")
    assert ShareReply.objects.filter(share=share).count() == 1


def test_the_share_list_shows_which_patients_replied(db: None) -> None:
    doctor = make_user()
    make_share(doctor, allow_reply=True)
    share, token = make_share(doctor, allow_reply=True)
    make_share(doctor, allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    assert reply(patient).status_code == 303
    client = Client()
    client.force_login(doctor)
    page = client.get("/shares/").content.decode()
    rows = re.findall(r"<tr role=\"row\">(.*?)</tr>", page.split("<tbody", 1)[1], re.S)
    marked = [row for row in rows if "le patient a répondu" in row]
    assert len(rows) == 3 and len(marked) == 1 and f'/shares/{share.pk}"' in marked[0]
