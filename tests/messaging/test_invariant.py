"""Invariant 1: nothing readable at rest. Messages whose subject, body, attachment name and
content, and patient identity carry unique markers are sent through the pages and the API;
a byte search of the whole data dir (database file, WAL, blobs), of the logs, and on
PostgreSQL of a pg_dump finds none of the markers; the messages still read back intact."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from messaging.factories import api_client, personal_mailbox, practitioner, unique_marker, valid_ins, web_client
from pli.messaging.models import Message


def _variants(marker: str) -> list[bytes]:
    return [marker.encode("utf-8"), marker.encode("utf-16-le"), marker.encode("utf-16-be"), marker.lower().encode()]


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                yield path


def _pg_dump() -> bytes:
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


def test_no_marker_at_rest_and_everything_reads_back(
    transactional_db: None, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    # A control: directory data is plaintext by design, so the search must find this one.
    control = unique_marker("CONTROL")
    a_box.name = control
    a_box.save(update_fields=["name"])
    ins = valid_ins("1750575123456")
    sent: list[dict[str, Any]] = []
    markers: list[str] = [ins]
    for via in ("web", "api"):
        m = {key: unique_marker(f"Mk{via}{key}") for key in ("subject", "body", "name", "content", "family", "given")}
        markers += list(m.values())
        content = (m["content"].encode() + b"\n") * 5000 + os.urandom(1000)
        upload = io.BytesIO(content)
        upload.name = f"{m['name']}.pdf"
        data = {
            "sender": a_box.address,
            "to": b_box.address if via == "web" else [b_box.address],
            "subject": f"Sujet {m['subject']}",
            "body": f"Corps {m['body']} fin",
            "attachments": [upload],
            "patient_ins": ins,
            "patient_family_name": m["family"],
            "patient_given_names": m["given"],
            "patient_birth_date": "1975-05-12",
            "patient_sex": "M",
            "patient_birthplace_code": "2A004",
        }
        if via == "web":
            response = web_client(alice).post("/messages/compose/", data)
            assert response.status_code == 303, response.content[:3000]
            message_id = response["Location"].split("/")[-2]
        else:
            response = api_client(alice).post("/api/v1/messages", data)
            assert response.status_code == 201, response.content
            message_id = response.json()["id"]
        sent.append({"id": message_id, "markers": m, "content": content})

    # Read everything back (also exercises the read paths, whose logs are checked too).
    reader_api, reader_web = api_client(bob), web_client(bob)
    for item in sent:
        m = item["markers"]
        detail = reader_api.get(f"/api/v1/messages/{item['id']}").json()
        assert detail["subject"] == f"Sujet {m['subject']}"
        assert detail["body"] == f"Corps {m['body']} fin"
        assert detail["patient"] == {
            "ins": ins,
            "family_name": m["family"],
            "given_names": m["given"],
            "birth_date": "1975-05-12",
            "sex": "M",
            "birthplace_code": "2A004",
        }
        (attachment,) = detail["attachments"]
        assert attachment["name"] == f"{m['name']}.pdf"
        body = reader_api.get(f"/api/v1/messages/{item['id']}/attachments/{attachment['id']}")
        assert b"".join(body.streaming_content) == item["content"]
        page = reader_web.get(f"/messages/m/{item['id']}/").content.decode()
        for key in ("subject", "body", "name", "family", "given"):
            assert m[key] in page or m[key].upper() in page
        web_body = reader_web.get(f"/messages/m/{item['id']}/a/{attachment['id']}/")
        assert b"".join(web_body.streaming_content) == item["content"]
        search = reader_api.get(f"/api/v1/mailboxes/{b_box.pk}/messages?q={m['family']}").json()
        assert [r["id"] for r in search["results"]] == [item["id"]]
    assert Message.objects.count() == 2

    # Every byte at rest: the data dir (database, WAL, keys, blobs) and the blob dir.
    roots = [Path(settings.DATA_DIR), Path(settings.PLI_BLOB_DIR)]
    scanned = 0
    control_found = False
    for path in _files(*roots):
        data = path.read_bytes()
        scanned += len(data)
        control_found = control_found or control.encode() in data
        for marker in markers:
            for variant in _variants(marker):
                assert variant not in data, f"{marker} readable in {path}"
    assert scanned > 0
    if connection.vendor == "sqlite":
        assert control_found, "the byte search does not see the database"
    else:
        dump = _pg_dump()
        assert control.encode() in dump, "the dump does not hold the data"
        for marker in markers:
            for variant in _variants(marker):
                assert variant not in dump, f"{marker} readable in pg_dump"

    # And nothing in the logs (application loggers and anything written to stdout/stderr).
    captured = capfd.readouterr()
    log_text = caplog.text + captured.out + captured.err
    for marker in markers:
        assert marker not in log_text
