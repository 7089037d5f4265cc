"""A birth date mistyped by the practitioner: the patient, typing their own, cannot open the
share and ends up locking it. The practitioner corrects the birth date on the share (web
page, or the API's resend) and the patient gets a new link that opens with their real birth
date, without a new share and its documents uploaded again."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from django.db import connection

from pli.audit.models import AuditEvent
from pli.sharing import services
from pli.sharing.models import PatientShare, Status
from sharing.helpers import BIRTH_DATE, Patient, make_share, run_tasks, sms_messages, token_of
from sharing.test_correct_contacts import api, browser, doctor

TYPO = datetime.date(1984, 2, 16)  # the patient was born on the 15th
INS = "284029912345678"  # born in February 1984


def stored_birth_date(share: PatientShare) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute("SELECT patient_birth_date FROM pli_patient_share")
        (row,) = cursor.fetchall()
    return bytes(row[0])


def new_link() -> str:
    """The token of the last link sent by SMS (the patient has no e-mail address)."""
    links = [m["text"] for m in sms_messages() if "/p/" in m["text"]]
    return links[-1].split("/p/", 1)[1].split()[0].rstrip(".")


def test_a_locked_share_gets_its_birth_date_corrected_and_the_patient_gets_in(db: None) -> None:
    share, token = make_share(doctor(), birth_date=TYPO, email=None)
    run_tasks()
    for _ in range(5):
        Patient(token).birth_date("15/02/1984")
    share.refresh_from_db()
    assert share.status == Status.LOCKED and share.lock_reason == "birth_date"
    client = browser(share.created_by)
    page = client.get(f"/shares/{share.pk}").content.decode()
    # The page says what to do, and opens the form with the birth date as it was typed.
    assert "corrigez-la ci-dessous" in page
    assert '<details class="share-contacts" open>' in page
    assert 'name="patient_birth_date" value="16/02/1984"' in page
    response = client.post(
        f"/shares/{share.pk}/unlock",
        {
            "contacts": "1",
            "resend": "1",
            "patient_birth_date": "15/02/1984",
            "patient_mobile": "06 12 34 56 78",
            "patient_email": "",
        },
        follow=True,
    )
    assert "La date de naissance du patient est corrigée" in response.content.decode()
    share.refresh_from_db()
    assert share.status == Status.SENT and share.patient_birth_date == BIRTH_DATE
    assert share.birth_date_failures == 0 and share.patient_mobile == "+33612345678"
    # Sealed at rest like the original.
    assert b"1984" not in stored_birth_date(share) and b"15/02" not in stored_birth_date(share)
    run_tasks()
    patient = Patient(new_link())
    assert patient.sign_in().status_code == 200
    assert Patient(token).get().status_code == 404
    assert PatientShare.objects.count() == 1
    # Audited: what changed, never its value.
    event = AuditEvent.objects.filter(action="share.resent").get()
    assert event.details["changed"] == "birth_date"
    details = str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert "1984-02-15" not in details and "15/02/1984" not in details and "datetime.date(1984" not in details
    history = client.get(f"/shares/{share.pk}").content.decode()
    assert "date de naissance corrigée, nouveau lien envoyé" in history


def test_the_api_corrects_the_birth_date_and_forgets_the_wrong_ones(db: None) -> None:
    share, token = make_share(doctor(), birth_date=TYPO, email=None)
    run_tasks()
    for _ in range(3):
        Patient(token).birth_date("15/02/1984")
    client = api(share.created_by)
    # As at creation: YYYY-MM-DD only, a real and plausible date, as text.
    for bad in ("15/02/1984", "1984-02-30", "2999-01-01", None, 19840215):
        refused = client.post(
            f"/api/v1/shares/{share.pk}/resend", {"patient_birth_date": bad}, content_type="application/json"
        )
        assert refused.status_code == 400 and set(refused.json()) == {"patient_birth_date"}, (bad, refused.content)
    share.refresh_from_db()
    assert share.patient_birth_date == TYPO and share.birth_date_failures == 3
    response = client.post(
        f"/api/v1/shares/{share.pk}/resend",
        {"patient_birth_date": "1984-02-15"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="date-1",
    )
    assert response.status_code == 200, response.content
    share.refresh_from_db()
    # The contacts are unchanged; the wrong birth dates typed against the typo no longer
    # count towards the lock.
    assert share.patient_birth_date == BIRTH_DATE and share.birth_date_failures == 0
    assert share.patient_mobile == "+33612345678" and share.patient_email is None
    # The same key with another birth date is another request.
    other = client.post(
        f"/api/v1/shares/{share.pk}/resend",
        {"patient_birth_date": "1984-02-14"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="date-1",
    )
    assert other.status_code == 422
    run_tasks()
    assert Patient(new_link()).sign_in().status_code == 200


def test_a_birth_date_contradicting_the_ins_is_refused_and_changes_nothing(db: None) -> None:
    share, token = make_share(doctor(), ins=INS)
    client = browser(share.created_by)
    page = client.post(
        f"/shares/{share.pk}/resend",
        {"contacts": "1", "patient_birth_date": "15/03/1984", "patient_mobile": "06 12 34 56 78", "patient_email": ""},
    )
    assert page.status_code == 400
    text = page.content.decode()
    assert 'id="id_patient_birth_date_error"' in text and "ne correspond pas à l\u2019INS" in text
    refused = api(share.created_by).post(
        f"/api/v1/shares/{share.pk}/resend", {"patient_birth_date": "1984-03-15"}, content_type="application/json"
    )
    assert refused.status_code == 400 and set(refused.json()) == {"patient_birth_date"}
    assert "INS" in refused.json()["patient_birth_date"][0]
    share.refresh_from_db()
    assert share.patient_birth_date == BIRTH_DATE and token_of(share) == token
    assert not AuditEvent.objects.filter(action="share.resent").exists()


def test_a_birth_date_typed_as_it_is_corrected_is_checked_against_the_corrected_one(db: None, monkeypatch: Any) -> None:
    """The birth date step compares before it takes the share's lock: a correction
    committed in between must decide, not the birth date it replaced."""
    share, _token = make_share(doctor(), birth_date=TYPO)
    read_share = services._read_share

    def corrected_meanwhile(share_id: uuid.UUID) -> PatientShare:
        unlocked = read_share(share_id)
        services.resend(share.created_by, share_id, corrections={"birth_date": BIRTH_DATE})
        return unlocked

    monkeypatch.setattr(services, "_read_share", corrected_meanwhile)
    assert services.check_birth_date(share.pk, TYPO).outcome == "wrong"
    monkeypatch.setattr(services, "_read_share", read_share)
    share.refresh_from_db()
    assert share.birth_date_failures == 1
    services.resend(share.created_by, share.pk, corrections={"birth_date": TYPO})
    monkeypatch.setattr(services, "_read_share", corrected_meanwhile)
    assert services.check_birth_date(share.pk, BIRTH_DATE).outcome == "ok"
