"""A share with a message and no document: how a practitioner answers a patient's question
(« Can I take ibuprofen? ») without making a PDF of the answer. The link, the two factors
and the limits are those of any share; only the words change (« a message », not « a
document »), and the message itself never leaves in a notification."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from pli.api.services import create_token
from pli.messaging import services as messaging
from pli.messaging.models import Delivery
from pli.sharing import services
from pli.sharing.models import PatientShare, ShareNotification, ShareReply, Status
from pli.testing.accounts import make_user
from sharing.helpers import PNG_1PX, Patient, make_share, run_tasks, share_input, sms_messages, token_of

ANSWER = "Oui, vous pouvez prendre du paracétamol, pas d\u2019ibuprofène."


def message_only(**fields: Any) -> tuple[PatientShare, str]:
    user = fields.pop("user", None) or make_user()
    share = services.create_share(user, share_input(message=ANSWER, **fields), [])
    return share, token_of(share)


def test_a_message_alone_makes_a_share_but_nothing_at_all_does_not(db: None) -> None:
    share, _token = message_only()
    assert share.document_count == 0 and share.message_only
    assert share.documents.count() == 0
    with pytest.raises(services.ShareError) as refused:
        services.create_share(make_user(), share_input(message="  \n "), [])
    assert refused.value.code == "no_documents"
    assert PatientShare.objects.count() == 1


def test_the_notifications_speak_of_a_message_and_never_carry_it(db: None) -> None:
    share, _token = message_only(email="patient@example.org", mobile="")
    (mail,) = share.notifications.filter(kind=ShareNotification.Kind.LINK)
    assert mail.channel == "email"
    for part in (mail.subject or "", mail.text or "", mail.html or ""):
        assert "message" in part and "document" not in part, part
        assert "paracétamol" not in part and "ibuprofène" not in part
    assert "vous a envoyé un message par Pli" in (mail.subject or "")
    assert "Lire le message" in (mail.html or "") and "Pour le lire, ouvrez ce lien" in (mail.text or "")

    by_sms, _token = message_only(email="", mobile="+33612345679")
    run_tasks()
    (sms,) = [m for m in sms_messages() if m["to"] == "+33612345679"]
    assert "vous a envoyé un message par Pli" in sms["text"] and "document" not in sms["text"]
    assert "paracétamol" not in sms["text"]
    assert by_sms.notifications.get(kind=ShareNotification.Kind.LINK).state == ShareNotification.State.SENT
    # A share with documents keeps its own words.
    with_documents, _token = make_share(email="", mobile="+33612345670")
    run_tasks()
    (sms,) = [m for m in sms_messages() if m["to"] == "+33612345670"]
    assert "vous a transmis un document" in sms["text"] and not with_documents.message_only


def test_the_patient_reads_the_message_on_pages_that_speak_of_a_message(db: None) -> None:
    share, token = message_only(allow_reply=True)
    patient = Patient(token)
    landing = patient.get().content.decode()
    assert "Un message pour vous" in landing and "Documents qui vous sont transmis" not in landing
    assert "paracétamol" not in landing  # not before the two factors
    page = patient.sign_in().content.decode()
    assert "paracétamol" in page and "<h1>Un message pour vous</h1>" in page
    assert "patient-documents" not in page and "0 document" not in page
    assert "Quand ce message a-t-il été ouvert" in page and "message ouvert" in page
    share.refresh_from_db()
    assert share.status == Status.OPENED
    # The patient answers; the practitioner's mailbox says what the answer is to.
    photo = SimpleUploadedFile("photo.png", PNG_1PX, "image/png")
    assert patient.client.post(patient.url("/reply"), {"text": "Merci", "files": [photo]}).status_code == 303
    answer = ShareReply.objects.get(share=share)
    body = messaging.visible_message(share.created_by, answer.message_id).body
    assert body.startswith("Réponse au message que vous avez envoyé le ")


def test_an_ended_message_only_link_says_so(db: None) -> None:
    share, token = message_only()
    services.revoke(share.created_by, share.pk)
    page = Patient(token).get().content.decode()
    assert "le message ne peut plus être ouvert" in page and "les documents" not in page


def test_the_web_form_sends_a_message_alone_and_refuses_an_empty_share(db: None) -> None:
    doctor = make_user()
    client = Client()
    client.force_login(doctor)
    data = {
        "patient_family_name": "Durand",
        "patient_given_name": "Élodie",
        "patient_birth_date": "15/02/1984",
        "patient_mobile": "06 12 34 56 78",
    }
    refused = client.post("/shares/new", {**data, "message": " "})
    assert refused.status_code == 400
    assert "Ajoutez au moins un document, ou écrivez un message." in refused.content.decode()
    assert not PatientShare.objects.exists()
    assert client.post("/shares/new", {**data, "message": ANSWER}).status_code == 303
    share = PatientShare.objects.get()
    assert share.message_only and share.message == ANSWER
    listing = client.get("/shares/").content.decode()
    assert "message seul" in listing
    detail = client.get(f"/shares/{share.pk}").content.decode()
    assert "paracétamol" in detail and 'id="documents-title"' not in detail


def test_answering_a_patients_reply_with_text_only(db: None) -> None:
    doctor = make_user()
    share, token = make_share(doctor, allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    question_text = "Puis-je prendre de l\u2019ibuprofène ?"
    assert patient.client.post(patient.url("/reply"), {"text": question_text}).status_code == 303
    question = ShareReply.objects.get(share=share).message_id
    client = Client()
    client.force_login(doctor)
    link = f"/shares/new?patient_of={share.pk}&answering={question}"
    page = client.get(link).content.decode()
    assert "Répondre au patient" in page and "Facultatifs si vous écrivez un message" in page
    answered = client.post(
        "/shares/new",
        {
            "patient_family_name": "Durand",
            "patient_given_name": "Élodie",
            "patient_birth_date": "15/02/1984",
            "patient_mobile": "06 12 34 56 78",
            "message": ANSWER,
            "answering": str(question),
        },
    )
    assert answered.status_code == 303
    assert Delivery.objects.get(message_id=question).answered_by == doctor
    answer = PatientShare.objects.exclude(pk=share.pk).get()
    assert answer.message_only


def test_the_api_creates_a_message_alone_and_names_the_field_when_both_are_missing(db: None) -> None:
    _token, raw = create_token(make_user(), "test")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    data = {
        "patient_given_name": "Élodie",
        "patient_family_name": "Durand",
        "patient_birth_date": "1984-02-15",
        "patient_mobile": "+33612345678",
    }
    refused = api.post("/api/v1/shares", data)
    assert refused.status_code == 400
    assert refused.json() == {"documents": ["Ajoutez au moins un document, ou écrivez un message."]}
    created = api.post("/api/v1/shares", {**data, "message": ANSWER})
    assert created.status_code == 201, created.content
    detail = api.get(f"/api/v1/shares/{created.json()['id']}").json()
    assert detail["documents"] == 0 and detail["status"] == "sent"
