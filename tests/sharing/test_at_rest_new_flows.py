"""Invariant: nothing readable at rest, nothing in transit to third parties, over the flows
added since test_at_rest was written. Markers go through a birth-date correction with new
contacts (web form and the API's resend), structured-format attachments (a CDA and an HPRIM
file) sent through the pages and the API, patient replies with files, the organisation's
settings, retention (messages to the trash, the trash emptied, ended shares deleted) and an
unused mailbox warned then emptied. A byte search of the data dir, the blob stores, the logs
(at DEBUG) and, on PostgreSQL, a pg_dump finds none of them; nor do the e-mails and SMS
sent, nor the audit events' details."""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.utils import timezone
from stdnum.fr import nir

from messaging.factories import personal_mailbox, practitioner, shared_mailbox, web_client
from pli.accounts.models import Membership
from pli.api.services import create_token
from pli.audit.models import AuditEvent
from pli.messaging import services as messaging
from pli.messaging.models import Attachment, Message
from pli.sharing import services
from pli.sharing.models import PatientShare
from sharing.helpers import Patient, last_code, link_token, pdf_bytes, run_tasks
from sharing.test_at_rest import files, marker, pg_dump, variants


def _ins(birth: datetime.date, tail: str) -> str:
    prefix = f"1{birth:%y%m}99{tail}"
    return prefix + nir.calc_check_digits(prefix)


def _cda(m: str) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget><patient><name>'
        + m.encode()
        + b"</name></patient></recordTarget></ClinicalDocument>\n"
    )


def _hprim(m: str) -> bytes:
    return b"H|^~\\&|RESULTATS.HPR|||LABO^Laboratoire|||||ORU|P|H2.2^C|20261130\rP|1||123||" + m.encode() + b"\r"


def _mail_text(message: Any) -> str:
    parts = [message.subject, message.body, *(str(a[0]) for a in getattr(message, "alternatives", []))]
    parts += [f"{k}: {v}" for k, v in message.extra_headers.items()]
    return "\n".join(parts)


def test_new_flows_leave_no_marker_at_rest_nor_in_transit(
    transactional_db: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    settings: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings.PLI_MAILBOX_INACTIVE_DAYS = 365
    doctor = practitioner(role=Membership.Role.ADMIN)
    organisation = doctor.memberships.get().organisation
    control = marker("CONTROL")  # directory data, plaintext by design
    secrets: list[str] = []

    # --- The organisation's settings, through its page. --------------------------------
    admin = web_client(doctor)
    response = admin.post(
        f"/organisations/{organisation.slug}/settings/",
        {"name": control, "share_expiry_days": "14", "retention_days": "30"},
    )
    assert response.status_code in (302, 303), response.content[:2000]
    organisation.refresh_from_db()
    assert organisation.name == control and organisation.retention_days == 30

    # --- Shares with a mistyped birth date, corrected with new contacts. -----------------
    shares: list[tuple[PatientShare, dict[str, str], str, str]] = []
    for via, typo, birth, mobiles in (
        ("web", datetime.date(1937, 8, 24), datetime.date(1937, 8, 23), ("0645781239", "0645781240")),
        ("api", datetime.date(1941, 11, 8), datetime.date(1941, 11, 7), ("0756129834", "0756129835")),
    ):
        m = {k: marker(f"Mk{via}{k}") for k in ("given", "family", "name", "content", "message", "email", "email2")}
        email, new_email = f"{m['email'].lower()}@example.org", f"{m['email2'].lower()}@example.org"
        ins = _ins(birth, mobiles[0][-6:])
        for day in (typo, birth):
            secrets += [day.isoformat(), f"{day:%d/%m/%Y}", f"{day:%Y%m%d}"]
        secrets += [*m.values(), *mobiles, *("+33" + n[1:] for n in mobiles), ins]
        data = {
            "patient_given_name": m["given"],
            "patient_family_name": m["family"],
            "patient_mobile": mobiles[0],
            "patient_email": email,
            "patient_ins": ins,
            "message": f"Message {m['message']}",
            "allow_reply": "true",
            "documents": SimpleUploadedFile(f"{m['name']}.xml", _cda(m["content"]), "text/xml"),
        }
        if via == "web":
            response = admin.post("/shares/new", {**data, "patient_birth_date": f"{typo:%d/%m/%Y}"})
            assert response.status_code == 303, response.content[:2000]
        else:
            response = Client(HTTP_AUTHORIZATION=f"Bearer {create_token(doctor, 'test')[1]}").post(
                "/api/v1/shares", {**data, "patient_birth_date": typo.isoformat()}
            )
            assert response.status_code == 201, response.content
        share = PatientShare.objects.order_by("-created_at").first()
        assert share is not None
        run_tasks()
        # The patient, typing their own birth date, is refused.
        patient = Patient(link_token(mail.outbox[-1].body))
        assert patient.birth_date(f"{birth:%d/%m/%Y}").status_code == 400
        if via == "web":
            response = admin.post(
                f"/shares/{share.pk}/resend",
                {
                    "contacts": "1",
                    "patient_birth_date": f"{birth:%d/%m/%Y}",
                    "patient_mobile": mobiles[1],
                    "patient_email": new_email,
                },
            )
            assert response.status_code == 303, response.content[:2000]
        else:
            response = Client(HTTP_AUTHORIZATION=f"Bearer {create_token(doctor, 'test')[1]}").post(
                f"/api/v1/shares/{share.pk}/resend",
                {"patient_birth_date": birth.isoformat(), "patient_mobile": mobiles[1], "patient_email": new_email},
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=f"correction-{m['email']}",
            )
            assert response.status_code == 200, response.content
        share.refresh_from_db()
        assert share.patient_birth_date == birth and share.patient_email == new_email
        # The share's page, and its correction form refused (a birth date the INS contradicts).
        assert m["given"] in admin.get(f"/shares/{share.pk}").content.decode()
        refused = admin.post(
            f"/shares/{share.pk}/resend", {"contacts": "1", "patient_birth_date": "01/01/1990", "patient_mobile": ""}
        )
        assert refused.status_code == 400
        shares.append((share, m, new_email, mobiles[1]))

    run_tasks()
    for share, m, new_email, mobile in shares:
        (link_mail,) = [e for e in mail.outbox if e.to == [new_email]]
        patient = Patient(link_token(link_mail.body))
        assert patient.birth_date(f"{share.patient_birth_date:%d/%m/%Y}").status_code == 303
        run_tasks()
        assert patient.code(last_code("+33" + mobile[1:])).status_code == 303
        assert f"{m['name']}.xml" in patient.get("/documents").content.decode()
        reply_file = SimpleUploadedFile("reponse.pdf", pdf_bytes() + m["content"].encode(), "application/pdf")
        reply = patient.client.post(patient.url("/reply"), {"text": f"Réponse {m['message']}", "files": [reply_file]})
        assert reply.status_code == 303
        answer = share.replies.get()
        assert m["given"] in admin.get(f"/messages/m/{answer.message_id}/").content.decode()
        assert admin.get("/messages/", follow=True).status_code == 200

    # --- Structured attachments between practitioners, web and API. ----------------------
    colleague = practitioner(organisation)
    sent: list[str] = []
    for via, build, expected in (("web", _cda, "cda"), ("api", _hprim, "hprim")):
        m = {k: marker(f"Sd{via}{k}") for k in ("subject", "body", "name", "content")}
        secrets += list(m.values())
        data = {
            "sender": personal_mailbox(doctor).address,
            "to": personal_mailbox(colleague).address,
            "subject": f"Sujet {m['subject']}",
            "body": f"Corps {m['body']}",
            "attachments": [SimpleUploadedFile(f"{m['name']}.hpr", build(m["content"]), "application/octet-stream")],
        }
        if via == "web":
            response = admin.post("/messages/compose/", data)
            assert response.status_code == 303, response.content[:2000]
            message_id = response["Location"].split("/")[-2]
        else:
            data["to"] = [data["to"]]
            response = Client(HTTP_AUTHORIZATION=f"Bearer {create_token(doctor, 'test')[1]}").post(
                "/api/v1/messages", data
            )
            assert response.status_code == 201, response.content
            message_id = response.json()["id"]
        reader = Client(HTTP_AUTHORIZATION=f"Bearer {create_token(colleague, 'test')[1]}")
        (attachment,) = reader.get(f"/api/v1/messages/{message_id}").json()["attachments"]
        assert attachment["format"] == expected
        assert m["subject"] in web_client(colleague).get(f"/messages/m/{message_id}/").content.decode()
        sent.append(message_id)

    # --- Retention, the trash, ended shares, an unused mailbox. --------------------------
    now = timezone.now()
    services.revoke(doctor, shares[0][0].pk)
    assert messaging.apply_retention(now=now + datetime.timedelta(days=31)) > 0
    assert messaging.purge_old_trash(now=now + datetime.timedelta(days=31 + settings.PLI_TRASH_DAYS + 1)) > 0
    # Documents purged 30 days after the end, then the shares past the retention period.
    assert services.run_periodic(now=now + datetime.timedelta(days=61))["shares"] >= 1
    assert not PatientShare.objects.filter(pk=shares[0][0].pk).exists()
    # The colleague's copies are gone; a new message makes the doctor's mailbox worth a
    # warning, and one goes to a shared mailbox that nobody opens (warned, emptied, closed).
    team = shared_mailbox(organisation, [colleague])
    messaging_markers = {k: marker(f"In{k}") for k in ("subject", "body")}
    secrets += list(messaging_markers.values())
    response = web_client(colleague).post(
        "/messages/compose/",
        {
            "sender": personal_mailbox(colleague).address,
            "to": f"{personal_mailbox(doctor).address}, {team.address}",
            "subject": messaging_markers["subject"],
            "body": messaging_markers["body"],
        },
    )
    assert response.status_code == 303, response.content[:2000]
    later = timezone.now() + datetime.timedelta(days=340)
    before = len(mail.outbox)
    warned = messaging.handle_inactive_mailboxes(now=later)
    warnings = mail.outbox[before:]
    assert warned.warned >= 2 and {doctor.email, colleague.email} <= {to for e in warnings for to in e.to}
    emptied = messaging.handle_inactive_mailboxes(now=later + datetime.timedelta(days=31))
    assert emptied.emptied >= 2
    team.refresh_from_db()
    assert not team.is_active
    run_tasks()

    # --- The search. --------------------------------------------------------------------
    found: dict[str, str] = {}
    for message in mail.outbox:
        text = _mail_text(message).lower()
        found.update({s: f"e-mail {message.subject}" for s in secrets if s.lower() in text})
    outbox = tmp_path / "sms"
    for path in files(outbox):
        text = json.loads(path.read_text())["text"].lower()
        found.update({s: f"SMS {path.name}" for s in secrets if s.lower() in text})
    details = json.dumps(list(AuditEvent.objects.values_list("details", flat=True)), ensure_ascii=False).lower()
    found.update({s: "audit details" for s in secrets if s.lower() in details})
    roots = [Path(settings.DATA_DIR), Path(settings.PLI_BLOB_DIR), *(p for p in tmp_path.iterdir() if p != outbox)]
    control_seen = False
    for path in files(*roots):
        data = path.read_bytes()
        control_seen = control_seen or control.encode() in data
        found.update({s: str(path) for s in secrets if any(v in data for v in variants(s))})
    logs = (caplog.text + "".join(capfd.readouterr())).encode()
    found.update({s: "logs" for s in secrets if any(v in logs for v in variants(s))})
    if connection.vendor == "postgresql":
        dump = pg_dump()
        control_seen = control.encode() in dump
        found.update({s: "pg_dump" for s in secrets if any(v in dump for v in variants(s))})
    assert control_seen, "the search would not even find plaintext directory data"
    assert found == {}
    # The flows did happen: the messages went with the trash, what was left with the mailbox.
    assert not Message.objects.filter(pk__in=sent).exists() and not Attachment.objects.exists()
