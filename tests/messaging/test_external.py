"""Messages received from outside Pli's mailboxes (``services.receive_external_message``):
delivered to one inbox with their attachments, search tokens and audit event in one
transaction; the external sender encrypted with the message and named at display time."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from django.utils import translation

from messaging.factories import api_client, patient_fields, personal_mailbox, practitioner, web_client
from pli.accounts.models import User
from pli.audit.models import AuditEvent
from pli.core.models import DataKey
from pli.crypto import new_data_key
from pli.messaging import search, services
from pli.messaging.models import Attachment, Delivery, ExternalSender, Folder, Message, Role, SearchToken
from pli.messaging.uploads import MAX_PENDING_AGE, PendingAttachment, attachment_aad, blob_store

PATIENT = {"family_name": "Durand", "given_names": "Élodie", "birth_date": "1984-02-15"}


def durable_upload(content: bytes, name: str = "photo.png", *, age: float = 0.0) -> PendingAttachment:
    """A file encrypted into the attachment store, as an upload handler leaves it."""
    upload_id = uuid.uuid4()
    key = new_data_key()
    info = blob_store().put(upload_id.hex, [content], key, attachment_aad(upload_id))
    return PendingAttachment(
        id=upload_id,
        key=key,
        name=name,
        content_type="image/png",
        size=info.size,
        sha256=info.sha256,
        completed_at=time.monotonic() - age,
    )


def receive(doctor: User, **overrides: Any) -> Message:
    arguments: dict[str, Any] = {
        "sender_kind": ExternalSender.PATIENT_LINK,
        "sender_name": "Élodie Durand",
        "subject": "Résultats de glycémie",
        "body": "Voici mes résultats.",
        "patient": PATIENT,
        "actor": ("patient", ""),
    }
    arguments.update(overrides)
    return services.receive_external_message(personal_mailbox(doctor), **arguments)


def test_external_message_arrives_in_the_inbox(db: None) -> None:
    doctor = practitioner()
    thread = uuid.uuid4()
    message = receive(doctor, attachments=[durable_upload(b"\x89PNG scan")], thread_id=thread)

    copy = Delivery.objects.get(message=message)
    assert (copy.mailbox, copy.role, copy.folder, copy.read_at) == (
        personal_mailbox(doctor),
        Role.TO,
        Folder.INBOX,
        None,
    )
    stored = Message.objects.get(pk=message.pk)
    assert stored.sender is None and stored.thread_id == thread
    assert (stored.subject, stored.body, stored.patient) == ("Résultats de glycémie", "Voici mes résultats.", PATIENT)
    assert stored.external_sender == {"kind": "patient_link", "name": "Élodie Durand"}
    attachment, reader = services.open_attachment(doctor, message.pk, Attachment.objects.get(message=message).pk)
    with reader:
        assert b"".join(reader) == b"\x89PNG scan"
    assert attachment.name == "photo.png"

    event = AuditEvent.objects.get(action="message.receive")
    assert (event.actor_type, event.target_type, event.target_id) == ("patient", "messaging.message", str(message.pk))
    assert event.details == {
        "mailbox": str(personal_mailbox(doctor).pk),
        "origin": "patient_link",
        "attachments": 1,
        "bytes": len(b"\x89PNG scan"),
    }
    for words in ("glycemie", "resultats", "Durand", "élodie"):
        page = services.folder_page(personal_mailbox(doctor), Folder.INBOX, query=services.SearchQuery(text=words))
        assert [c.message_id for c in page.items] == [message.pk], words
    assert (
        services.folder_page(
            personal_mailbox(doctor), Folder.INBOX, query=services.SearchQuery(text="cholesterol")
        ).items
        == []
    )


def test_the_sender_name_is_sealed_with_the_message(db: None) -> None:
    message = receive(practitioner(), sender_name="Élodie Zorglubienne")
    stored = Message.objects.filter(pk=message.pk).values_list("external_sender", flat=True).get()
    assert stored is not None and b"Zorglub" not in bytes(stored)
    # Shredding the message's key takes the name with it.
    Message.objects.get(pk=message.pk).shred()
    assert Message.objects.get(pk=message.pk).external_sender is None


def test_an_expired_upload_writes_nothing(db: None) -> None:
    doctor = practitioner()
    mailbox = personal_mailbox(doctor)
    search.message_tokens("warm", None)  # the search key is created once per instance, not per message
    before = [m.objects.count() for m in (Message, Attachment, Delivery, SearchToken, DataKey, AuditEvent)]
    stale = durable_upload(b"late", age=MAX_PENDING_AGE + 1)
    with pytest.raises(services.UploadExpired):
        receive(doctor, attachments=[durable_upload(b"fresh"), stale])
    after = [m.objects.count() for m in (Message, Attachment, Delivery, SearchToken, DataKey, AuditEvent)]
    assert after == before
    assert services.folder_page(mailbox, Folder.INBOX).items == []


def test_the_sender_label_is_the_patient_in_the_readers_language(db: None) -> None:
    doctor = practitioner()
    named = receive(doctor, subject="Premier")
    anonymous = receive(doctor, subject="Second", sender_name="")
    with translation.override("fr"):
        assert named.sender_label == "Patient — Élodie Durand (lien sécurisé)"
        assert anonymous.sender_label == "Patient (lien sécurisé)"
    with translation.override("en"):
        assert named.sender_label == "Patient — Élodie Durand (secure link)"
    assert named.sender_kind == "patient_link"

    html = web_client(doctor).get(f"/messages/{personal_mailbox(doctor).pk}/inbox/").content.decode()
    assert "Patient — Élodie Durand (lien sécurisé)" in html and "Patient (lien sécurisé)" in html
    assert "boîte supprimée" not in html
    thread = web_client(doctor).get(f"/messages/m/{anonymous.pk}/").content.decode()
    assert "<strong>Patient (lien sécurisé)</strong>" in thread and "&lt;&gt;" not in thread
    # The conversation is a secure share's (its thread is the share's id), named as the
    # shares' pages name it (« envoi », not « partage »). No share was made here (the reply
    # is received directly): the page says so rather than link to « page introuvable »; the
    # link to a share that exists is tested with the patient's replies (tests/sharing).
    assert f'href="/shares/{anonymous.thread_id}"' not in thread
    assert "L\u2019envoi au patient n\u2019existe plus" in thread
    english = web_client(doctor).get(f"/messages/m/{anonymous.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "The patient share no longer exists" in english

    client = api_client(doctor)
    detail = client.get(f"/api/v1/messages/{named.pk}").json()
    assert (detail["sender"], detail["sender_name"], detail["sender_kind"]) == (
        None,
        "Patient — Élodie Durand (lien sécurisé)",
        "patient_link",
    )
    listing = client.get(f"/api/v1/mailboxes/{personal_mailbox(doctor).pk}/messages").json()["results"]
    assert {(r["subject"], r["sender_name"], r["sender_kind"]) for r in listing} == {
        ("Premier", "Patient — Élodie Durand (lien sécurisé)", "patient_link"),
        ("Second", "Patient (lien sécurisé)", "patient_link"),
    }


def test_replying_quotes_the_patient_and_addresses_nobody(db: None) -> None:
    doctor = practitioner()
    message = receive(doctor, body="Voici mes résultats.")
    page = web_client(doctor).get(f"/messages/compose/?reply_to={message.pk}").content.decode()
    assert "a écrit\u00a0:" in page and "Patient — Élodie Durand (lien sécurisé) a écrit\u00a0:" in page
    # A patient has no mailbox: nothing is put in "to" that the send would then refuse.
    assert '<input type="text" name="to" value=""' in page


def test_mailbox_senders_are_unchanged(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    response = api_client(alice).post(
        "/api/v1/messages",
        {"sender": personal_mailbox(alice).address, "to": [personal_mailbox(bob).address], "subject": "Objet"},
    )
    assert response.status_code == 201, response.content
    message = Message.objects.get(pk=response.json()["id"])
    assert message.external_sender is None and message.sender_kind == "mailbox"
    detail = api_client(bob).get(f"/api/v1/messages/{message.pk}").json()
    assert (detail["sender"], detail["sender_name"], detail["sender_kind"], detail["share_id"]) == (
        personal_mailbox(alice).address,
        personal_mailbox(alice).name,
        "mailbox",
        None,
    )
    personal_mailbox(alice).delete()
    with translation.override("fr"):
        assert Message.objects.select_related("sender").get(pk=message.pk).sender_label == "(boîte supprimée)"


def test_a_patient_who_answered_is_found_by_sender(db: None) -> None:
    """Lists show a patient's answer as from « Patient — Élodie Durand (lien sécurisé) », yet
    the search by sender looked at mailboxes' names only: « Durand » found nothing. The
    patient is found through the keyed tokens of the message's patient names (the label
    itself is sealed), whole or by their first letters as in the other search field."""
    doctor, colleague = practitioner(), practitioner()
    mailbox = personal_mailbox(doctor)
    answer = receive(doctor)
    # A colleague's letter about the same patient is not from her.
    response = api_client(colleague).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(colleague).address,
            "to": [mailbox.address],
            "subject": "Bilan",
            **patient_fields(patient_family_name="Durand", patient_given_names="Élodie"),
        },
    )
    assert response.status_code == 201, response.content
    letter = response.json()["id"]

    def found(sender: str) -> list[str]:
        page = services.folder_page(mailbox, None, query=services.SearchQuery(sender=sender))
        return [str(copy.message_id) for copy in page.items]

    for typed in ("Durand", "ÉLODIE durand", "dur", "Élodie"):
        assert found(typed) == [str(answer.pk)], typed
    assert found("Durand Martin") == []
    assert found(colleague.last_name) == [letter]
    listing = api_client(doctor).get(f"/api/v1/mailboxes/{mailbox.pk}/messages", {"sender": "durand"}).json()
    assert [row["id"] for row in listing["results"]] == [str(answer.pk)]
    # A letter whose mailbox was deleted since is not taken for the patient's.
    personal_mailbox(colleague).delete()
    assert found("Durand") == [str(answer.pk)]


def test_patients_answers_are_found_by_the_words_of_their_label(db: None) -> None:
    """« Patient » typed as the sender, as lists label these messages (« Patient — Élodie
    Durand (lien sécurisé) »), found nothing: the label's own words are not the patient's
    names. They now find every patient's answer, or narrow the names typed beside them."""
    doctor, colleague = practitioner(), practitioner()
    mailbox = personal_mailbox(doctor)
    durand = receive(doctor)
    other = receive(
        doctor, sender_name="Paul Girard", patient={**PATIENT, "family_name": "Girard", "given_names": "Paul"}
    )
    response = api_client(colleague).post(
        "/api/v1/messages", {"sender": personal_mailbox(colleague).address, "to": [mailbox.address], "subject": "Bilan"}
    )
    assert response.status_code == 201, response.content

    def found(sender: str) -> set[str]:
        page = services.folder_page(mailbox, None, query=services.SearchQuery(sender=sender))
        return {str(copy.message_id) for copy in page.items}

    assert found("patient") == found("Patient (lien sécurisé)") == {str(durand.pk), str(other.pk)}
    assert found("Patient — Durand") == found("durand lien sécurisé") == {str(durand.pk)}
    assert found("patient inconnu") == set()
