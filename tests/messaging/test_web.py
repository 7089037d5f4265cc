from __future__ import annotations

import io

from django.test import Client

from messaging.factories import patient_fields, personal_mailbox, practitioner, web_client
from pli.messaging.models import Attachment, Delivery, Folder, Message


def _pdf(marker: str = "") -> io.BytesIO:
    data = io.BytesIO(b"%PDF-1.4\n" + marker.encode() + b"\n%%EOF\n")
    data.name = "compte-rendu.pdf"
    return data


def test_send_read_reply_through_the_pages(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    a = web_client(alice)
    response = a.post(
        "/messages/compose/",
        {
            "sender": a_box.address,
            "to": b_box.address,
            "subject": "Résultats",
            "body": "Voir https://example.fr/x.",
            "attachments": [_pdf("hello")],
            **patient_fields(),
        },
    )
    assert response.status_code == 303, response.content.decode()[:3000]
    message = Message.objects.get()
    assert message.subject == "Résultats"
    assert message.patient["family_name"] == "Durand"
    attachment = Attachment.objects.get()
    assert attachment.name == "compte-rendu.pdf"
    assert attachment.content_type == "application/pdf"

    b = web_client(bob)
    inbox = b.get(f"/messages/{b_box.pk}/inbox/")
    assert inbox.status_code == 200
    assert "Résultats" in inbox.content.decode()
    page = b.get(f"/messages/m/{message.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "DURAND" in html
    assert 'href="https://example.fr/x"' in html
    download = b.get(f"/messages/m/{message.pk}/a/{attachment.pk}/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"%PDF-1.4\nhello\n%%EOF\n"
    assert download["Content-Disposition"].startswith("inline;")
    assert "sandbox" in download["Content-Security-Policy"]
    copy = Delivery.objects.get(message=message, mailbox=b_box)
    assert copy.read_at is not None and copy.folder == Folder.INBOX


def test_anonymous_is_sent_to_login(db: None) -> None:
    assert Client().get("/messages/").status_code == 302
