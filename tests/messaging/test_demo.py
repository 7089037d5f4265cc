"""The demo's example messages (``pli.messaging.demo``): sent through the real path, in the
right inboxes with their read states, threaded, with attachments that download identical;
seeded once, and never in production."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from stdnum.fr import nir

from messaging.factories import personal_mailbox, web_client
from pli.accounts import demo as accounts_demo
from pli.accounts.models import Mailbox, Organisation, User
from pli.audit import services as audit
from pli.audit.models import AuditEvent
from pli.messaging import demo, services
from pli.messaging.models import Attachment, Delivery, Folder, Message
from pli.messaging.uploads import blob_store
from pli.testing.accounts import make_organisation


def seeded_demo() -> tuple[Organisation, demo.DemoMessages]:
    seeded = accounts_demo.seed_demo()
    assert seeded is not None and seeded.created
    messages = demo.seed_demo_messages(seeded.organisation)
    assert messages is not None
    return seeded.organisation, messages


def inbox(mailbox: Mailbox) -> dict[str, Delivery]:
    return {copy.message.subject: copy for copy in services.folder_page(mailbox, Folder.INBOX).items}


def test_messages_arrive_in_the_right_inboxes(db: None) -> None:
    organisation, sent = seeded_demo()
    gp = User.objects.get(email=demo.GP)
    cardiologist = User.objects.get(email=demo.CARDIOLOGIST)
    secretary = User.objects.get(email=demo.SECRETARY)
    secretariat = Mailbox.objects.get(organisation=organisation, kind=Mailbox.Kind.ORGANISATIONAL)

    gp_inbox = inbox(personal_mailbox(gp))
    assert set(gp_inbox) == {demo.MEETING_SUBJECT, "Re: " + demo.OPINION_SUBJECT}
    assert gp_inbox[demo.MEETING_SUBJECT].read_at is not None  # read
    assert gp_inbox["Re: " + demo.OPINION_SUBJECT].read_at is None  # waiting for her

    cardiology_inbox = inbox(personal_mailbox(cardiologist))
    assert set(cardiology_inbox) == {demo.MEETING_SUBJECT, demo.OPINION_SUBJECT}
    opinion_copy = cardiology_inbox[demo.OPINION_SUBJECT]
    assert opinion_copy.read_at is not None and opinion_copy.answered_at is not None
    assert cardiology_inbox[demo.MEETING_SUBJECT].read_at is None

    shared = inbox(secretariat)
    assert list(shared) == [demo.RESULTS_SUBJECT] and shared[demo.RESULTS_SUBJECT].read_at is None
    # Both members of the shared mailbox see it; the secretary's own mailbox stays empty.
    for member in (secretary, cardiologist):
        assert services.visible_message(member, sent.results.pk).pk == sent.results.pk
    assert inbox(personal_mailbox(secretary)) == {}
    assert set(Delivery.objects.filter(folder=Folder.SENT).values_list("message_id", flat=True)) == {
        m.pk for m in sent.all()
    }


def test_the_answer_is_threaded_with_the_request(db: None) -> None:
    _organisation, sent = seeded_demo()
    gp = User.objects.get(email=demo.GP)
    entries = services.open_thread(gp, sent.answer.pk)
    assert [e.message.pk for e in entries] == [sent.opinion.pk, sent.answer.pk]
    assert sent.answer.in_reply_to_id == sent.opinion.pk
    assert len({sent.opinion.thread_id, sent.answer.thread_id}) == 1
    assert sent.results.thread_id != sent.opinion.thread_id
    for message in (sent.opinion, sent.answer):
        patient = Message.objects.get(pk=message.pk).patient
        assert patient is not None and patient["family_name"] == "Exemple"
        assert nir.is_valid(patient["ins"]) and patient["ins"][0] == "1" and patient["sex"] == "M"
    results_patient = Message.objects.get(pk=sent.results.pk).patient
    assert results_patient is not None and nir.is_valid(results_patient["ins"]) and results_patient["sex"] == "F"


def test_attachments_download_identical_and_are_encrypted_at_rest(db: None) -> None:
    seeded_demo()
    expected = {
        demo.ECG_NAME: demo.demo_pdf(demo.ECG_TITLE, demo.ECG_LINES),
        demo.RESULTS_NAME: demo.demo_pdf(demo.RESULTS_TITLE, demo.RESULTS_LINES),
    }
    readers = {demo.ECG_NAME: demo.CARDIOLOGIST, demo.RESULTS_NAME: demo.SECRETARY}
    attachments = list(Attachment.objects.all())
    assert sorted(a.name for a in attachments) == sorted(expected)
    for attachment in attachments:
        content = expected[attachment.name]
        assert content.startswith(b"%PDF-1.4") and content.rstrip().endswith(b"%%EOF")
        assert attachment.content_type == "application/pdf" and attachment.size == len(content)
        assert attachment.sha256 == hashlib.sha256(content).hexdigest()
        raw = blob_store().path_for(attachment.blob_id).read_bytes()
        assert b"%PDF" not in raw and b"Exemple" not in raw and "Modèle".encode("cp1252") not in raw
        client = web_client(User.objects.get(email=readers[attachment.name]))
        response = client.get(f"/messages/m/{attachment.message_id}/a/{attachment.pk}/")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == content


def test_seeding_is_audited_like_user_actions(db: None) -> None:
    _organisation, sent = seeded_demo()
    gp = User.objects.get(email=demo.GP)
    cardiologist = User.objects.get(email=demo.CARDIOLOGIST)
    sends = AuditEvent.objects.filter(action="message.send")
    assert sorted(sends.values_list("target_id", flat=True)) == sorted(str(m.pk) for m in sent.all())
    reads = {(e.actor_id, e.target_id) for e in AuditEvent.objects.filter(action="message.read")}
    assert reads == {(str(gp.pk), str(sent.meeting.pk)), (str(cardiologist.pk), str(sent.opinion.pk))}
    assert audit.verify().ok


def test_a_second_seeding_adds_nothing(db: None) -> None:
    organisation, _sent = seeded_demo()
    counts = (Message.objects.count(), Delivery.objects.count(), Attachment.objects.count(), AuditEvent.objects.count())
    blobs = sorted(blob_store().iter_ids())
    assert demo.seed_demo_messages(organisation) is None
    assert accounts_demo.seed_demo() is not None
    assert demo.seed_demo_messages(organisation) is None
    after = (Message.objects.count(), Delivery.objects.count(), Attachment.objects.count(), AuditEvent.objects.count())
    assert after == counts and sorted(blob_store().iter_ids()) == blobs


def test_production_and_real_organisations_get_nothing(db: None, settings: Any) -> None:
    seeded = accounts_demo.seed_demo()
    assert seeded is not None
    real = make_organisation("Vraie clinique")
    assert demo.seed_demo_messages(real) is None
    settings.PLI_ENV = "production"
    assert demo.seed_demo_messages(seeded.organisation) is None
    assert not Message.objects.exists() and list(blob_store().iter_ids()) == []


def test_demo_content_refused_by_the_form_is_a_loud_error(db: None, monkeypatch: Any) -> None:
    """The demo goes through the compose form's rules: content it would refuse (here an INS
    with a wrong key) stops the seeding instead of slipping in."""
    seeded = accounts_demo.seed_demo()
    assert seeded is not None
    wrong = demo.DemoPatient("158046999900165", "Exemple", "Henri", "1958-04-12", "M")
    monkeypatch.setattr(demo, "CARDIOLOGY_PATIENT", wrong)
    with pytest.raises(demo.DemoContentError, match="patient_ins"):
        demo.seed_demo_messages(seeded.organisation)
    assert not Message.objects.exists()  # all or nothing
