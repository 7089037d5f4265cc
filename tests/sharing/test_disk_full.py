"""A full disk while a share is made or a patient replies: a 507 that says so in French
(the form kept as typed), nothing half-saved, and it works again once there is room."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from pli.api.services import create_token
from pli.messaging.models import Message
from pli.messaging.uploads import blob_store as message_blob_store
from pli.sharing import services
from pli.sharing.models import PatientShare, ShareReply
from pli.sharing.uploads import share_blob_store
from pli.testing.accounts import make_user
from pli.testing.faults import FullDisk, database_full_error
from sharing.helpers import Patient, make_share, pdf_bytes

NO_ROOM = "Le serveur n\u2019a plus d\u2019espace de stockage\u00a0: rien n\u2019a été enregistré."
BIG = pdf_bytes("irm") + b"%" * (3 * 2**20)  # several segments: the disk fills as it streams


def _share_fields(**overrides: Any) -> dict[str, Any]:
    data = {
        "patient_given_name": "Élodie",
        "patient_family_name": "Durand",
        "patient_birth_date": "15/02/1984",
        "patient_mobile": "06 12 34 56 78",
        "message": "Votre compte rendu d'IRM.",
        "documents": [SimpleUploadedFile("irm.pdf", BIG, "application/pdf")],
    }
    return data | overrides


def _nothing_kept() -> None:
    assert not PatientShare.objects.exists()
    assert list(share_blob_store().iter_ids()) == []
    temp = share_blob_store().temp_dir
    assert not temp.is_dir() or list(temp.iterdir()) == []


def test_a_share_through_the_api_on_a_full_disk(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _token, raw = create_token(make_user(), "test")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    disk = FullDisk(monkeypatch)
    response = api.post("/api/v1/shares", _share_fields(patient_birth_date="1984-02-15"))
    assert response.status_code == 507
    assert response.json()["detail"].startswith(NO_ROOM)
    _nothing_kept()
    disk.free()
    assert api.post("/api/v1/shares", _share_fields(patient_birth_date="1984-02-15")).status_code == 201


@pytest.mark.parametrize("full", ["disk", "database"])
def test_the_share_form_comes_back_filled_in(db: None, monkeypatch: pytest.MonkeyPatch, full: str) -> None:
    browser = Client()
    browser.force_login(make_user())
    if full == "disk":
        FullDisk(monkeypatch)
    else:

        def no_room(rows: Any) -> None:
            raise database_full_error()

        monkeypatch.setattr(services, "insert_rows", no_room)
    response = browser.post("/shares/new", _share_fields())
    assert response.status_code == 507
    page = response.content.decode()
    assert NO_ROOM in page and 'id="share-form"' in page
    assert "Votre compte rendu d&#x27;IRM." in page and 'value="Durand"' in page
    _nothing_kept()


@pytest.mark.parametrize("full", ["disk", "database"])
def test_a_patients_reply_on_a_full_disk(db: None, monkeypatch: pytest.MonkeyPatch, full: str) -> None:
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    if full == "disk":
        FullDisk(monkeypatch)
    else:
        from pli.messaging import services as messaging

        def no_room(rows: Any) -> None:
            raise database_full_error()

        monkeypatch.setattr(messaging, "insert_rows", no_room)
    scan = SimpleUploadedFile("examen.pdf", BIG, "application/pdf")
    response = patient.client.post(patient.url("/reply"), {"text": "Voici mon examen", "files": [scan]})
    assert response.status_code == 507
    page = response.content.decode()
    assert f"{NO_ROOM} Réessayez plus tard, ou contactez directement le cabinet." in page  # not "the administrator"
    assert "Voici mon examen</textarea>" in page  # what the patient wrote stays in the box
    assert not ShareReply.objects.exists() and not Message.objects.exists()
    assert list(message_blob_store().iter_ids()) == []


def test_attachments_forwarded_to_a_patient_on_a_full_disk_leave_no_copy(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attachment was copied into the shares' store, the second found no room:
    the first copy goes too, at once, rather than waiting an hour for the clean-up."""
    from pli.accounts.models import Mailbox
    from pli.blobs import BlobStore
    from pli.messaging.models import Attachment

    colleague, doctor = make_user(), make_user()
    _token, raw = create_token(colleague, "test")
    sent = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").post(
        "/api/v1/messages",
        {
            "sender": Mailbox.objects.get(owner=colleague).address,
            "to": [Mailbox.objects.get(owner=doctor).address],
            "subject": "Résultats",
            "attachments": [
                SimpleUploadedFile("irm.pdf", pdf_bytes("irm"), "application/pdf"),
                SimpleUploadedFile("cr.pdf", pdf_bytes("cr"), "application/pdf"),
            ],
        },
    )
    assert sent.status_code == 201
    message_id = sent.json()["id"]
    copies = 0
    put = BlobStore.put

    def second_finds_no_room(store: BlobStore, *args: Any, **kwargs: Any) -> Any:
        nonlocal copies
        copies += 1
        if copies == 2:
            raise OSError(28, "No space left on device")
        return put(store, *args, **kwargs)

    monkeypatch.setattr(BlobStore, "put", second_finds_no_room)
    browser = Client()
    browser.force_login(doctor)
    chosen = [str(pk) for pk in Attachment.objects.filter(message_id=message_id).values_list("pk", flat=True)]
    data = _share_fields(documents=[])
    response = browser.post(f"/shares/new?message={message_id}", {**data, "attachments": chosen})
    assert response.status_code == 507 and copies == 2
    assert NO_ROOM in response.content.decode()
    _nothing_kept()
