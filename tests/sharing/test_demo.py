"""The demo's example patient shares (``pli.sharing.demo``): made through the share form and
``create_share``, notifications queued then delivered to the development outbox by the
worker, a patient able to follow the printed instructions; seeded once, never in production,
and never texting a real phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django_tasks_db.models import DBTaskResult

from messaging.factories import web_client
from pli.accounts import demo as accounts_demo
from pli.accounts.models import Organisation, User
from pli.audit import services as audit
from pli.audit.models import AuditEvent
from pli.messaging.demo import CARDIOLOGIST, GP, SECRETARIAT, demo_pdf
from pli.notify.email import FILE_BACKEND
from pli.sharing import demo
from pli.sharing import services as sharing_services
from pli.sharing.models import PatientShare, ShareNotification
from pli.sharing.uploads import share_blob_store
from pli.testing.accounts import make_organisation
from sharing.helpers import Patient, run_tasks, sms_messages, token_of

DEMO_MOBILE_E164 = "+33600000001"


def seeded_demo() -> tuple[Organisation, list[PatientShare]]:
    seeded = accounts_demo.seed_demo()
    assert seeded is not None and seeded.created
    shares = demo.seed_demo_shares(seeded.organisation)
    assert len(shares) == 2
    return seeded.organisation, shares


def test_shares_are_created_with_their_notifications_queued(db: None) -> None:
    organisation, shares = seeded_demo()
    by_patient = {s.patient_family_name: s for s in PatientShare.objects.filter(organisation=organisation)}
    assert set(by_patient) == {"Essai", "Exemple"}
    blood, holter = by_patient["Essai"], by_patient["Exemple"]
    assert blood.created_by.email == GP and not blood.allow_reply
    assert holter.created_by.email == CARDIOLOGIST and holter.allow_reply
    assert blood.patient_email == "lucie.essai@example.org" and blood.patient_mobile == DEMO_MOBILE_E164
    assert holter.patient_email == "henri.exemple@example.org" and holter.patient_mobile is None
    assert blood.patient_ins == "291066999900376"
    # The Holter's appointment is the secretariat's: sent from its mailbox, followed by its team.
    assert holter.reply_mailbox is not None and holter.reply_mailbox.name == SECRETARIAT
    assert blood.reply_mailbox is not None and blood.reply_mailbox.owner == blood.created_by
    secretary = User.objects.get(email="claire.petit@example.org")
    assert set(sharing_services.shares_for(secretary)) == {holter}
    for share in (blood, holter):
        assert share.status == "sent" and share.document_count == 1
        document = share.documents.get()
        assert document.content_type == "application/pdf"
        raw = share_blob_store().path_for(document.id.hex).read_bytes()
        assert b"%PDF" not in raw and share.patient_family_name.encode() not in raw
    # The links go by e-mail: the code will come by SMS when there is a mobile.
    channels = sorted(ShareNotification.objects.filter(state="pending").values_list("share__pk", "channel"))
    assert channels == sorted([(blood.pk, "email"), (holter.pk, "email")])
    assert DBTaskResult.objects.filter(status="READY").count() >= 2
    created = AuditEvent.objects.filter(action="share.created")
    assert sorted(created.values_list("target_id", flat=True)) == sorted(str(s.pk) for s in shares)
    assert audit.verify().ok


def test_the_worker_fills_the_outbox_and_the_patient_can_follow_the_printed_steps(
    db: None, settings: Any, tmp_path: Path
) -> None:
    settings.EMAIL_BACKEND = FILE_BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    organisation, _shares = seeded_demo()
    blood = PatientShare.objects.get(organisation=organisation, created_by__email=GP)
    token = token_of(blood)
    run_tasks()
    assert ShareNotification.objects.filter(state="sent").count() == 2
    assert sms_messages() == []
    jeanne = User.objects.get(email=GP)
    outbox = web_client(jeanne).get("/dev/outbox/").content.decode()
    assert "lucie.essai@example.org" in outbox and "henri.exemple@example.org" in outbox
    assert f"/p/{token}" in outbox

    # What the run command prints is enough to play the patient.
    summary = demo.format_demo_shares(organisation)
    assert "/dev/outbox/" in summary and demo.BLOOD_TEST.birth_date in summary
    patient = Patient(token)
    page = patient.sign_in(demo.BLOOD_TEST.birth_date, to=DEMO_MOBILE_E164)
    assert page.status_code == 200
    document = blood.documents.get()
    download = patient.get(f"/documents/{document.pk}/download")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == demo_pdf(
        demo.BLOOD_TEST.document_title, demo.BLOOD_TEST.document_lines
    )

    listing = web_client(jeanne).get("/shares/").content.decode()
    assert 'data-status="downloaded"' in listing
    paul = User.objects.get(email=CARDIOLOGIST)
    assert 'data-status="sent"' in web_client(paul).get("/shares/").content.decode()


def test_with_a_real_sms_provider_the_demo_texts_no_one(db: None, settings: Any) -> None:
    settings.PLI_SMS_URL = "twilio://ACxxxxxxxx:secret@api.twilio.com?from=Pli"
    _organisation, shares = seeded_demo()
    assert all(share.patient_mobile is None for share in shares)
    assert not ShareNotification.objects.filter(channel="sms").exists()


def test_a_second_seeding_adds_nothing(db: None) -> None:
    organisation, _shares = seeded_demo()
    counts = (PatientShare.objects.count(), ShareNotification.objects.count(), AuditEvent.objects.count())
    blobs = sorted(share_blob_store().iter_ids())
    assert demo.seed_demo_shares(organisation) == []
    after = (PatientShare.objects.count(), ShareNotification.objects.count(), AuditEvent.objects.count())
    assert after == counts and sorted(share_blob_store().iter_ids()) == blobs


def test_production_and_real_organisations_get_nothing(db: None, settings: Any) -> None:
    seeded = accounts_demo.seed_demo()
    assert seeded is not None
    assert demo.seed_demo_shares(make_organisation("Vraie clinique")) == []
    settings.PLI_ENV = "production"
    assert demo.seed_demo_shares(seeded.organisation) == []
    assert not PatientShare.objects.exists() and list(share_blob_store().iter_ids()) == []
    assert demo.format_demo_shares(seeded.organisation) == ""
