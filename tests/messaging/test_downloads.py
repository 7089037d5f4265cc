"""Attachments of several segments, decrypted ahead while they stream: whole and intact
through the API and the pages, and a download cut short leaves nothing running or open."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections

from messaging.factories import api_client, patient_fields, personal_mailbox, practitioner, web_client
from pli.audit.models import AuditEvent
from pli.crypto import SEGMENT_SIZE
from pli.messaging.models import Attachment
from pli.messaging.uploads import blob_store
from pli.testing.blobs import descriptors_on
from pli.testing.blobs import read_ahead_threads as helpers

# Eight segments: the later ones come from the read-ahead helper, which is still reading
# after the third (it runs at most a few segments ahead).
CONTENT = b"%PDF-1.4\n" + os.urandom(7 * SEGMENT_SIZE + 4321)


def close_as_the_server_does(response: Any) -> None:
    """What the WSGI server does when the client goes away mid-download: close the response.
    (Without closing the test's database connection, as Django's test client does too.)"""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def _send() -> tuple[str, Any, Attachment]:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    upload = io.BytesIO(CONTENT)
    upload.name = "scanner.pdf"
    fields = {"sender": a_box.address, "to": [b_box.address], "subject": "Imagerie", **patient_fields()}
    response = api_client(alice).post("/api/v1/messages", {**fields, "attachments": [upload]})
    assert response.status_code == 201, response.content
    return response.json()["id"], bob, Attachment.objects.get()


def test_large_attachment_streams_whole(db: None) -> None:
    message_id, bob, attachment = _send()
    path = blob_store().path_for(attachment.blob_id)
    api = api_client(bob).get(f"/api/v1/messages/{message_id}/attachments/{attachment.pk}")
    assert api.status_code == 200
    assert int(api["Content-Length"]) == len(CONTENT)
    assert b"".join(api.streaming_content) == CONTENT
    page = web_client(bob).get(f"/messages/m/{message_id}/a/{attachment.pk}/?download=1")
    assert page.status_code == 200
    assert b"".join(page.streaming_content) == CONTENT
    assert helpers() == []
    assert descriptors_on(path) == 0


def test_download_cut_short_stops_decrypting(db: None) -> None:
    message_id, bob, attachment = _send()
    path = blob_store().path_for(attachment.blob_id)
    response = api_client(bob).get(f"/api/v1/messages/{message_id}/attachments/{attachment.pk}")
    pieces = iter(response.streaming_content)
    received = next(pieces) + next(pieces) + next(pieces)
    assert CONTENT.startswith(received)
    assert helpers() != []
    assert descriptors_on(path) == 1
    close_as_the_server_does(response)
    assert helpers() == []
    assert descriptors_on(path) == 0


def _content_unavailable(problem: str, monkeypatch: Any) -> None:
    """The attachment's blob is gone (``missing``), or its file cannot be opened
    (``unreadable``: permissions, as the blob store reports them)."""
    if problem == "missing":
        os.unlink(blob_store().path_for(Attachment.objects.get().blob_id))
        return
    from pli.blobs import BlobStore

    def refuse(store: BlobStore, blob_id: str, *args: Any) -> None:
        raise PermissionError(13, "Permission denied", str(store.path_for(blob_id)))

    monkeypatch.setattr(BlobStore, "open", refuse)


@pytest.mark.parametrize("problem", ["missing", "unreadable"])
def test_a_blob_that_cannot_be_read_is_said_so_clearly(
    db: None, monkeypatch: Any, caplog: pytest.LogCaptureFixture, problem: str
) -> None:
    """A row whose blob is missing or unreadable (a lost file, the wrong owner after a
    restore): a 500 that says the file's content cannot be read (not "try again in a
    moment"), one error line naming the attachment, no traceback, and no download recorded."""
    message_id, bob, attachment = _send()
    _content_unavailable(problem, monkeypatch)
    page = web_client(bob).get(f"/messages/m/{message_id}/a/{attachment.pk}/?download=1")
    assert page.status_code == 500
    assert "Le contenu de ce fichier est illisible sur le serveur" in page.content.decode()
    api = api_client(bob).get(f"/api/v1/messages/{message_id}/attachments/{attachment.pk}")
    assert api.status_code == 500
    assert api.json()["detail"].startswith("Le contenu de ce fichier est illisible sur le serveur")
    lines = [r for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("pli")]
    reason = {"missing": "missing", "unreadable": "EACCES"}[problem]
    assert [r.getMessage() for r in lines] == [f"attachment {attachment.pk}: its content cannot be read ({reason})"] * 2
    assert all(r.exc_info is None for r in lines)
    assert not AuditEvent.objects.filter(action="attachment.download").exists()
    assert helpers() == []


@pytest.mark.parametrize("problem", ["unreadable", "altered"])
def test_forwarding_an_attachment_that_cannot_be_read_is_said_so_clearly(
    db: None, monkeypatch: Any, caplog: pytest.LogCaptureFixture, problem: str
) -> None:
    """Forwarding (web and API) copies the attachment: a file the server cannot open, or one
    that fails authentication, gave the generic 500 page and a traceback. Now the same
    answer as a download of it, one log line, and nothing sent."""
    from pli.messaging.models import Message

    message_id, bob, attachment = _send()
    if problem == "unreadable":
        _content_unavailable(problem, monkeypatch)
    else:
        path = blob_store().path_for(attachment.blob_id)
        data = bytearray(path.read_bytes())
        data[-100] ^= 1
        path.write_bytes(bytes(data))
    b_box = personal_mailbox(bob)
    fields = {"sender": b_box.address, "to": [b_box.address], "subject": "TR", "body": "Pour avis"}
    forward = {"forward_of": message_id, "forward_attachments": [str(attachment.pk)]}
    api = api_client(bob).post("/api/v1/messages", {**fields, **forward})
    assert api.status_code == 500
    assert api.json()["detail"].startswith("Le contenu de ce fichier est illisible sur le serveur")
    page = web_client(bob).post("/messages/compose/", {**fields, **forward})
    assert page.status_code == 500
    assert "Le contenu de ce fichier est illisible sur le serveur" in page.content.decode()
    reason = {"unreadable": "EACCES", "altered": "DecryptionError"}[problem]
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("pli")]
    assert lines == [f"attachment {attachment.pk}: its content cannot be read ({reason})"] * 2
    assert Message.objects.count() == 1
    assert sorted(blob_store().iter_ids()) == [attachment.blob_id]


def _alter_first_segment(path: Any) -> None:
    data = bytearray(path.read_bytes())
    data[200] ^= 1  # inside the first segment, past the stream's header
    path.write_bytes(bytes(data))


def test_an_attachment_altered_at_its_start_is_said_so_before_anything_is_sent(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The first segment failed authentication only once the response had begun: the
    browser got the server's bare English « Internal Server Error », the API client HTML,
    and the download was recorded as made."""
    message_id, bob, attachment = _send()
    _alter_first_segment(blob_store().path_for(attachment.blob_id))
    page = web_client(bob).get(f"/messages/m/{message_id}/a/{attachment.pk}/?download=1")
    assert page.status_code == 500 and not page.streaming
    assert "Le contenu de ce fichier est illisible sur le serveur" in page.content.decode()
    api = api_client(bob).get(f"/api/v1/messages/{message_id}/attachments/{attachment.pk}")
    assert api.status_code == 500 and not api.streaming
    assert api.json()["detail"].startswith("Le contenu de ce fichier est illisible sur le serveur")
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("pli")]
    assert lines == [f"attachment {attachment.pk}: its content cannot be read (DecryptionError)"] * 2
    assert not AuditEvent.objects.filter(action="attachment.download").exists()
    assert helpers() == []


def test_an_attachment_deleted_for_good_as_its_download_starts_is_not_found(
    transactional_db: None, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The last copy deleted for good (by a colleague of the shared mailbox, or in another
    tab) between the download's access check and the opening of the blob: the blob is gone
    with the message. That is "not found", as a moment later, not a 500 telling the reader
    the file is unreadable on the server and the operator that a blob is missing."""
    from django.db import transaction

    from pli.messaging import services
    from pli.messaging.models import Delivery, Message

    message_id, bob, attachment = _send()
    check = services._visible_attachment

    def checked_then_deleted(*args: Any, **kwargs: Any) -> Any:
        found = check(*args, **kwargs)
        if found is None:
            return None
        with transaction.atomic():
            Delivery.objects.filter(message_id=message_id).delete()
            services._purge(Message.objects.get(pk=message_id))
        return found

    monkeypatch.setattr(services, "_visible_attachment", checked_then_deleted)
    api = api_client(bob).get(f"/api/v1/messages/{message_id}/attachments/{attachment.pk}")
    assert api.status_code == 404
    assert stored_blobs_left() == []
    assert not [r for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("pli")]
    assert not AuditEvent.objects.filter(action="attachment.download").exists()


def stored_blobs_left() -> list[str]:
    return list(blob_store().iter_ids())
