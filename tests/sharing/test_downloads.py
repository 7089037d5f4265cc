"""A patient's document of several segments, decrypted ahead while it streams: whole and
intact, and a download cut short leaves nothing running or open."""

from __future__ import annotations

import os

import pytest

from messaging.test_downloads import close_as_the_server_does, descriptors_on, helpers
from pli.crypto import SEGMENT_SIZE
from pli.sharing.models import ShareDocument
from pli.sharing.uploads import share_blob_store
from sharing.helpers import Patient, last_code, make_share, pending_document, run_tasks

# Eight segments: the later ones come from the read-ahead helper, which is still reading
# after the third (it runs at most a few segments ahead).
CONTENT = b"%PDF-1.4\n" + os.urandom(7 * SEGMENT_SIZE + 4321)


def _signed_in_patient() -> tuple[Patient, ShareDocument]:
    share, token = make_share(documents=[pending_document("scanner.pdf", CONTENT)])
    patient = Patient(token)
    assert patient.birth_date("15/02/1984").status_code == 303
    run_tasks()
    assert patient.code(last_code()).status_code == 303
    return patient, share.documents.get()


def test_large_document_streams_whole(db: None) -> None:
    patient, document = _signed_in_patient()
    for action in ("view", "download"):
        response = patient.get(f"/documents/{document.pk}/{action}")
        assert response.status_code == 200
        assert int(response["Content-Length"]) == len(CONTENT)
        assert b"".join(response.streaming_content) == CONTENT
    assert helpers() == []
    assert descriptors_on(share_blob_store().path_for(document.blob_id)) == 0


def test_download_cut_short_stops_decrypting(db: None) -> None:
    patient, document = _signed_in_patient()
    path = share_blob_store().path_for(document.blob_id)
    response = patient.get(f"/documents/{document.pk}/download")
    pieces = iter(response.streaming_content)
    received = next(pieces) + next(pieces) + next(pieces)
    assert CONTENT.startswith(received)
    assert helpers() != []
    assert descriptors_on(path) == 1
    close_as_the_server_does(response)
    assert helpers() == []
    assert descriptors_on(path) == 0


def test_a_document_whose_blob_is_missing_tells_the_patient_to_contact_the_practice(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    patient, document = _signed_in_patient()
    os.unlink(share_blob_store().path_for(document.blob_id))
    response = patient.get(f"/documents/{document.pk}/download")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Ce document ne peut pas être ouvert pour le moment. Contactez directement le cabinet." in page
    assert f'href="/p/{patient.token}"' in page  # back to the link, not to the professionals' sign-in
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("pli")]
    assert lines == [f"share document {document.pk}: its content cannot be read (missing)"]
    share = document.share
    share.refresh_from_db()
    assert share.download_count == 0 and share.downloaded_at is None  # nothing was handed over
    assert helpers() == []


def test_a_document_altered_at_its_start_tells_the_patient_before_anything_is_sent(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    patient, document = _signed_in_patient()
    path = share_blob_store().path_for(document.blob_id)
    data = bytearray(path.read_bytes())
    data[200] ^= 1  # inside the first segment, past the stream's header
    path.write_bytes(bytes(data))
    for step in ("view", "download"):
        response = patient.get(f"/documents/{document.pk}/{step}")
        assert response.status_code == 500 and not response.streaming
        assert "Ce document ne peut pas être ouvert pour le moment." in response.content.decode()
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("pli")]
    assert lines == [f"share document {document.pk}: its content cannot be read (DecryptionError)"] * 2
    share = document.share
    share.refresh_from_db()
    assert share.download_count == 0 and share.downloaded_at is None  # nothing was handed over
    assert helpers() == []
