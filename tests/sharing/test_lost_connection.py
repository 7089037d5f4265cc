"""The database commits, then the connection breaks before it says so (a PostgreSQL
restart, a network cut): the request fails, yet the share or the patient's reply exists.
Its blobs must stay (the orphan clean-up judges them once the database answers again),
never be discarded with the failed request's uploads."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from pli.api.services import create_token
from pli.messaging import services as messaging
from pli.messaging.models import Attachment
from pli.messaging.uploads import blob_store as message_blob_store
from pli.sharing import services
from pli.sharing.models import ShareDocument, ShareReply
from pli.sharing.uploads import share_blob_store
from pli.testing.accounts import make_user
from pli.testing.faults import LostAfterCommit
from sharing.helpers import Patient, make_share, pdf_bytes


def _lost_connection_status() -> int:
    # PostgreSQL's lost connection is answered 503 (the database away, not a bug of Pli);
    # the fault's SQLite stand-in ("disk I/O error") stays a 500.
    return 503 if connection.vendor == "postgresql" else 500


def test_a_share_whose_commit_outcome_is_unknown_keeps_its_documents(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _token, raw = create_token(make_user(), "test")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    fault = LostAfterCommit(monkeypatch, services, "insert_rows")
    response = api.post(
        "/api/v1/shares",
        {
            "patient_given_name": "Élodie",
            "patient_family_name": "Durand",
            "patient_birth_date": "1984-02-15",
            "patient_mobile": "+33612345678",
            "documents": [SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf")],
        },
    )
    assert fault.fired and response.status_code == _lost_connection_status()
    document = ShareDocument.objects.get()  # committed, though the request failed
    assert list(share_blob_store().iter_ids()) == [document.blob_id]


def test_a_reply_whose_commit_outcome_is_unknown_keeps_its_files(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    patient.client.raise_request_exception = False
    fault = LostAfterCommit(monkeypatch, messaging, "insert_rows")
    scan = SimpleUploadedFile("examen.pdf", pdf_bytes("examen"), "application/pdf")
    response = patient.client.post(patient.url("/reply"), {"text": "Voici", "files": [scan]})
    assert fault.fired and response.status_code == _lost_connection_status()
    assert ShareReply.objects.count() == 1
    attachment = Attachment.objects.get()
    assert list(message_blob_store().iter_ids()) == [attachment.blob_id]
