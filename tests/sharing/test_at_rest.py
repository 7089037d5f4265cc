"""Invariant: nothing readable at rest. Shares whose document names and contents, patient
names, birth date, INS, contacts and message carry unique markers go through the whole
flow (web and API creation, notifications, the patient's steps, a reply with a file, which
the practitioner reads with the patient named as its sender); a byte search of the data dir
(database file, WAL), the blob stores, the SMS outbox, the logs and, on PostgreSQL, a
pg_dump finds none of them, and everything still reads back."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from stdnum.fr import nir

from pli.api.services import create_token
from pli.sharing import services
from pli.sharing.models import PatientShare
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import Patient, last_code, pdf_bytes, run_tasks, token_of


def marker(label: str) -> str:
    return f"{label}{uuid.uuid4().hex[:10]}"


def variants(text: str) -> list[bytes]:
    return [text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-16-be"), text.lower().encode()]


def files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        for path in root.rglob("*") if root.is_dir() else []:
            if path.is_file():
                yield path


def pg_dump() -> bytes:
    conf = connection.settings_dict
    env = dict(os.environ, PGPASSWORD=str(conf.get("PASSWORD") or ""))
    command = [
        shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump",
        "--no-owner",
        "-h",
        str(conf["HOST"]),
        "-p",
        str(conf["PORT"]),
        "-U",
        str(conf["USER"]),
        str(conf["NAME"]),
    ]
    return subprocess.run(command, check=True, capture_output=True, env=env, timeout=120).stdout


def test_no_marker_at_rest(
    transactional_db: None, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    control = marker("CONTROL")  # organisation names are directory data, plaintext by design
    doctor = make_user(make_organisation(control))
    secrets: list[str] = []
    created: list[tuple[PatientShare, dict[str, str], bytes]] = []
    for via, mobile, birth in (("web", "0645781239", "1937-08-23"), ("api", "0756129834", "1941-11-07")):
        m = {k: marker(f"Mk{via}{k}") for k in ("given", "family", "name", "content", "message", "email")}
        email = f"{m['email'].lower()}@example.org"
        content = (m["content"].encode() + b"\n") * 3000 + pdf_bytes()
        day = birth.split("-")
        # An INS that agrees with the birth date (year and month), as the forms require.
        ins_prefix = f"2{day[0][2:]}{day[1]}99{mobile[-6:]}"
        ins = ins_prefix + nir.calc_check_digits(ins_prefix)
        secrets += [*m.values(), mobile, "+33" + mobile[1:], birth, f"{day[2]}/{day[1]}/{day[0]}", "".join(day), ins]
        data = {
            "patient_given_name": m["given"],
            "patient_family_name": m["family"],
            "patient_mobile": mobile,
            "patient_email": email,
            "patient_ins": ins,
            "message": f"Message {m['message']}",
            "allow_reply": "true",
            "documents": SimpleUploadedFile(f"{m['name']}.pdf", content, "application/pdf"),
        }
        if via == "web":
            client = Client()
            client.force_login(doctor)
            response = client.post("/shares/new", {**data, "patient_birth_date": f"{day[2]}/{day[1]}/{day[0]}"})
            assert response.status_code == 303
        else:
            _token, raw = create_token(doctor, "test")
            response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").post(
                "/api/v1/shares", {**data, "patient_birth_date": birth}
            )
            assert response.status_code == 201, response.content
        share = PatientShare.objects.order_by("-created_at").first()
        assert share is not None
        created.append((share, m, content))
    secrets.append("284029912345655")

    links = [token_of(share) for share, _m, _content in created]
    practitioner = Client()
    practitioner.force_login(doctor)
    practitioner_api = Client(HTTP_AUTHORIZATION=f"Bearer {create_token(doctor, 'reader')[1]}")
    run_tasks()
    for (share, m, content), token in zip(created, links, strict=True):
        patient = Patient(token)
        birth = share.patient_birth_date
        patient.birth_date(birth.strftime("%d/%m/%Y"))
        run_tasks()
        assert patient.code(last_code(share.patient_mobile or "")).status_code == 303
        page = patient.get("/documents").content.decode()
        assert f"{m['name']}.pdf" in page and m["message"] in page
        document = share.documents.get()
        assert b"".join(patient.get(f"/documents/{document.pk}/download").streaming_content) == content
        reply_file = SimpleUploadedFile("reponse.pdf", pdf_bytes() + m["content"].encode(), "application/pdf")
        reply = patient.client.post(patient.url("/reply"), {"text": f"Réponse {m['message']}", "files": [reply_file]})
        assert reply.status_code == 303
        # The practitioner sees the patient as the reply's sender, named at display time.
        answer = share.replies.get()
        sender = f"Patient — {m['given']} {m['family']} (lien sécurisé)"
        assert sender in practitioner.get(f"/messages/m/{answer.message_id}/").content.decode()
        assert practitioner_api.get(f"/api/v1/messages/{answer.message_id}").json()["sender_name"] == sender
        services.resend(doctor, share.pk)  # a pending notification with a fresh link, sealed
    run_tasks()

    # The SMS outbox stands for the provider (a message in transit holds its recipient's
    # number by nature); its texts are checked like everything else.
    outbox = tmp_path / "sms"
    roots = [Path(settings.DATA_DIR), Path(settings.PLI_BLOB_DIR), *(p for p in tmp_path.iterdir() if p != outbox)]
    found: dict[str, str] = {}
    for path in files(outbox):
        text = json.loads(path.read_text())["text"]
        found.update({secret: str(path) for secret in secrets if secret.lower() in text.lower()})
    control_seen = False
    for path in files(*roots):
        data = path.read_bytes()
        control_seen = control_seen or control.encode() in data
        for secret in secrets:
            if any(v in data for v in variants(secret)):
                found[secret] = str(path)
    logs = (caplog.text + "".join(capfd.readouterr())).encode()
    for secret in secrets:
        if any(v in logs for v in variants(secret)):
            found[secret] = "logs"
    if connection.vendor == "postgresql":
        dump = pg_dump()
        control_seen = control.encode() in dump  # the database is not in the data dir
        for secret in secrets:
            if any(v in dump for v in variants(secret)):
                found[secret] = "pg_dump"
    assert control_seen, "the search would not even find plaintext directory data"
    assert found == {}
