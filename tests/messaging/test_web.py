from __future__ import annotations

import io
import re
from typing import Any

from django.test import Client

from messaging.conftest import stored_blobs
from messaging.factories import api_client, patient_fields, personal_mailbox, practitioner, shared_mailbox, web_client
from pli.accounts.models import Membership, User
from pli.audit.models import AuditEvent
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


def test_reading_and_filing_touch_only_the_mailbox_read_in(db: None) -> None:
    """A practitioner who opened and binned his own copy also marked the shared mailbox's
    copy read and moved it to the trash, for the whole team."""
    alice = practitioner()
    paul = practitioner()
    claire = practitioner(Membership.objects.get(user=paul).organisation)
    team = shared_mailbox(Membership.objects.get(user=paul).organisation, [paul, claire])
    own = personal_mailbox(paul)
    message_id = _send_to(alice, [own.address, team.address])
    p = web_client(paul)

    inbox = p.get(f"/messages/{own.pk}/inbox/").content.decode()
    assert f"/messages/m/{message_id}/?mailbox={own.pk}" in inbox
    page = p.get(f"/messages/m/{message_id}/?mailbox={own.pk}").content.decode()
    assert f'name="mailbox" value="{own.pk}"' in page
    assert f'href="/messages/{own.pk}/inbox/"' in page  # back to the folder it came from
    assert Delivery.objects.get(message_id=message_id, mailbox=own).read_at is not None
    assert Delivery.objects.get(message_id=message_id, mailbox=team).read_at is None

    moved = p.post(f"/messages/m/{message_id}/move/", {"folder": "trash", "mailbox": str(own.pk)})
    assert moved.status_code == 302
    assert Delivery.objects.get(message_id=message_id, mailbox=own).folder == Folder.TRASH
    assert Delivery.objects.get(message_id=message_id, mailbox=team).folder == Folder.INBOX

    # A link without the mailbox (a notification, the share page) opens the personal copy.
    p.get(f"/messages/m/{message_id}/")
    assert Delivery.objects.get(message_id=message_id, mailbox=team).read_at is None
    # The shared copy is read from the shared mailbox, by whoever opens it there.
    c = web_client(claire)
    assert c.get(f"/messages/m/{message_id}/?mailbox={team.pk}").status_code == 200
    assert Delivery.objects.get(message_id=message_id, mailbox=team).read_by == claire
    # A mailbox that does not hold the message, or someone else's: not found.
    assert c.get(f"/messages/m/{message_id}/?mailbox={own.pk}").status_code == 404
    assert c.get(f"/messages/m/{message_id}/?mailbox=nonsense").status_code == 404


def _send_to(sender: User, addresses: list[str]) -> str:
    response = api_client(sender).post(
        "/api/v1/messages",
        {"sender": personal_mailbox(sender).address, "to": addresses, "subject": "ECG", "body": "Voir."},
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def test_a_refused_upload_gives_back_what_was_typed(db: None, settings: Any) -> None:
    """Without the page's script, 21 files came back as an empty form: recipients, subject
    and text to type again."""
    settings.PLI_MAX_ATTACHMENTS = 2
    alice, bob = practitioner(), practitioner()
    files = [io.BytesIO(b"%PDF-1.4 x") for _ in range(3)]
    for number, handle in enumerate(files):
        handle.name = f"cr{number}.pdf"
    response = web_client(alice).post(
        "/messages/compose/",
        {
            "sender": personal_mailbox(alice).address,
            "to": personal_mailbox(bob).address,
            "subject": "Avis sur ECG",
            "body": "Pouvez-vous regarder ces tracés ?",
            "attachments": files,
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "au plus" in page  # the reason, next to the files
    assert "<title>Erreur\u00a0: " in page
    assert 'value="Avis sur ECG"' in page and "Pouvez-vous regarder ces tracés ?</textarea>" in page
    assert personal_mailbox(bob).address in page
    assert Message.objects.count() == 0


def test_messages_open_on_the_first_mailbox_with_something_unread(db: None) -> None:
    """A secretary landed on her own, empty inbox while the team's mail waited."""
    alice, claire = practitioner(), practitioner()
    team = shared_mailbox(Membership.objects.get(user=claire).organisation, [claire])
    c = web_client(claire)
    _send_to(alice, [team.address])
    assert c.get("/messages/")["Location"] == f"/messages/{team.pk}/inbox/"


def test_replying_from_ones_own_sent_copy_answers_its_recipients(db: None) -> None:
    """Paul, a member of the shared mailbox he wrote to, replied from his sent copy: the
    answer went to himself (his shared inbox's copy counted as received)."""
    paul = practitioner()
    team = shared_mailbox(Membership.objects.get(user=paul).organisation, [paul])
    own = personal_mailbox(paul)
    message_id = _send_to(paul, [team.address])
    page = web_client(paul).get(f"/messages/compose/?reply_to={message_id}&mode=reply&mailbox={own.pk}")
    initial = page.context["form"].initial
    assert initial["sender"] == own.address and initial["to"] == [team.address]
    # Answered from the shared mailbox's copy, it goes back to Paul, from the team.
    page = web_client(paul).get(f"/messages/compose/?reply_to={message_id}&mode=reply&mailbox={team.pk}")
    initial = page.context["form"].initial
    assert initial["sender"] == team.address and initial["to"] == [own.address]


def test_a_refused_upload_keeps_every_forwarded_attachment_ticked(db: None, settings: Any) -> None:
    alice, bob = practitioner(), practitioner()
    files = []
    for number in range(3):
        handle = io.BytesIO(b"%PDF-1.4 x")
        handle.name = f"cr{number}.pdf"
        files.append(handle)
    sent = (
        api_client(alice)
        .post(
            "/api/v1/messages",
            {
                "sender": personal_mailbox(alice).address,
                "to": [personal_mailbox(bob).address],
                "attachments": files[:2],
            },
        )
        .json()
    )
    forwarded = [a["id"] for a in sent["attachments"]]
    settings.PLI_MAX_ATTACHMENTS = 3
    response = web_client(bob).post(
        "/messages/compose/",
        {
            "sender": personal_mailbox(bob).address,
            "to": personal_mailbox(alice).address,
            "forward_of": sent["id"],
            "forward_attachments": forwarded,
            "attachments": [io.BytesIO(b"x") for _ in range(4)],
        },
    )
    assert response.status_code == 400
    assert sorted(response.context["form"].initial["forward_attachments"]) == sorted(forwarded)


def test_a_reply_or_forward_to_a_subject_of_full_length_can_be_sent_as_prefilled(db: None) -> None:
    """A "Re: " before a subject of 300 characters, the most a subject may have, made a form
    that was refused on the subject the practitioner had not typed."""
    from pli.messaging.forms import SUBJECT_MAX

    alice, bob = practitioner(), practitioner()
    subject = "Bilan " + "x" * (SUBJECT_MAX - 6)
    sent = api_client(alice).post(
        "/api/v1/messages",
        {"sender": personal_mailbox(alice).address, "to": [personal_mailbox(bob).address], "subject": subject},
    )
    assert sent.status_code == 201, sent.content
    message_id = sent.json()["id"]
    client = web_client(bob)
    for query, prefix in ((f"reply_to={message_id}", "RE : "), (f"forward={message_id}", "TR : ")):
        initial = client.get(f"/messages/compose/?{query}").context["form"].initial
        # The prefix kept, the end of the subject cut.
        assert initial["subject"].startswith(prefix + "Bilan ") and len(initial["subject"]) == SUBJECT_MAX
        fields = {"in_reply_to": initial.get("in_reply_to"), "forward_of": initial.get("forward_of")}
        response = client.post(
            "/messages/compose/",
            {
                "sender": initial["sender"],
                "to": personal_mailbox(alice).address,
                "subject": initial["subject"],
                "body": initial["body"],
                **{name: value for name, value in fields.items() if value},
            },
        )
        assert response.status_code == 303, response.context["form"].errors


def test_a_limit_of_one_attachment_is_written_in_the_singular(db: None, settings: Any) -> None:
    """PLI_MAX_ATTACHMENTS may be 1: the page said « Jusqu'à 1 fichiers » and « au plus 1
    pièces jointes »."""
    settings.PLI_MAX_ATTACHMENTS = 1
    page = web_client(practitioner()).get("/messages/compose/").content.decode()
    assert "Jusqu\u2019à 1 fichier," in page
    assert "Un message peut porter au plus 1 pièce jointe." in page


def test_the_recipient_fields_point_to_how_to_fill_them(db: None) -> None:
    """« séparez plusieurs adresses par des virgules » stood below Cc, tied to neither
    field: a screen reader going from field to field never read it."""
    alice = practitioner()
    client = web_client(alice)
    page = client.get("/messages/compose/").content.decode()
    assert 'id="recipients-help"' in page
    for name in ("to", "cc"):
        assert re.search(rf'<input [^>]*aria-describedby="recipients-help"[^>]* id="id_{name}"', page), name
    # Refused, the error comes first, the instructions still follow.
    page = client.post("/messages/compose/", {"sender": personal_mailbox(alice).address, "body": "x"}).content.decode()
    assert re.search(r'<input [^>]*aria-invalid="true" aria-describedby="id_to_error recipients-help"', page)


def _submission(page: Any) -> str:
    found = re.search(r'name="submission" value="([^"]+)"', page.content.decode())
    assert found is not None
    return found.group(1)


def test_the_same_compose_form_sent_twice_is_one_message(db: None) -> None:
    """A double click on « Envoyer » without JavaScript, or the form sent again after a slow
    answer: one message, the second request taken to it, its file discarded."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    a = web_client(alice)
    submission = _submission(a.get("/messages/compose/"))
    assert _submission(a.get("/messages/compose/")) != submission  # each page its own

    def send(body: str = "Voir le compte rendu.") -> Any:
        return a.post(
            "/messages/compose/",
            {
                "sender": a_box.address,
                "to": b_box.address,
                "subject": "Résultats",
                "body": body,
                "attachments": [_pdf("cr")],
                "submission": submission,
            },
        )

    first, second = send(), send()
    assert first.status_code == second.status_code == 303
    message = Message.objects.get()
    assert second["Location"] == first["Location"] == f"/messages/m/{message.pk}/?mailbox={a_box.pk}"
    assert Delivery.objects.filter(mailbox=b_box).count() == 1
    assert list(stored_blobs()) == [Attachment.objects.get().blob_id]  # the second's file removed
    assert AuditEvent.objects.filter(action="message.send").count() == 1

    # Sent again by the script (X-Pli-Upload): the same answer, the first message's place.
    again = a.post(
        "/messages/compose/",
        {"sender": a_box.address, "to": b_box.address, "subject": "Résultats", "submission": submission},
        HTTP_X_PLI_UPLOAD="1",
    )
    assert again.status_code == 201 and again.json()["location"] == first["Location"]
    assert Message.objects.count() == 1

    # Another page's form, or another user's form of the same value, is another message.
    other = a.post(
        "/messages/compose/",
        {"sender": a_box.address, "to": b_box.address, "subject": "Autre", "submission": "x" * 32},
    )
    assert other.status_code == 303 and Message.objects.count() == 2
    b = web_client(bob)
    reply = b.post(
        "/messages/compose/",
        {"sender": b_box.address, "to": a_box.address, "subject": "Re", "submission": submission},
    )
    assert reply.status_code == 303 and Message.objects.count() == 3


def test_an_altered_compose_submission_value_still_sends(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a = web_client(alice)
    data = {"sender": personal_mailbox(alice).address, "to": personal_mailbox(bob).address, "subject": "Bonjour"}
    response = a.post("/messages/compose/", {**data, "submission": "<script>"})
    assert response.status_code == 303
    assert a.post("/messages/compose/", {**data, "submission": "<script>"}).status_code == 303
    assert Message.objects.filter(submission="").count() == 2


def test_the_same_compose_form_sent_twice_at_once_is_one_message(db: None, monkeypatch: Any) -> None:
    """The second request's check ran before the first one committed: the unique constraint
    stops its insert, and it answers with the first message."""
    from pli.messaging import services

    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    a = web_client(alice)
    submission = _submission(a.get("/messages/compose/"))
    calls: list[str] = []
    real = services._submitted

    def racing(author: User, value: str) -> Message | None:
        calls.append(value)
        return None if len(calls) == 2 else real(author, value)  # the second request's check

    monkeypatch.setattr(services, "_submitted", racing)
    data = {"sender": a_box.address, "to": b_box.address, "subject": "Résultats", "submission": submission}
    first = a.post("/messages/compose/", {**data, "attachments": [_pdf("cr")]})
    second = a.post("/messages/compose/", {**data, "attachments": [_pdf("cr")]})
    assert len(calls) == 3
    assert first.status_code == second.status_code == 303 and second["Location"] == first["Location"]
    assert Message.objects.count() == 1 and Delivery.objects.count() == 2
    assert list(stored_blobs()) == [Attachment.objects.get().blob_id]
    assert AuditEvent.objects.filter(action="message.send").count() == 1


def test_the_pages_random_values_are_not_refilled_by_the_browser(db: None) -> None:
    """Firefox refills form fields, hidden ones included, on Back and on reload: the page a
    message was sent from, shown again and changed, would have been taken for the same form
    sent twice, and the changed message not sent."""
    from sharing.helpers import make_share

    user = practitioner()
    client = web_client(user)
    share, _token = make_share(user)
    for url in ("/messages/compose/", "/shares/new", f"/shares/{share.pk}"):
        fields = re.findall(r'<input type="hidden" name="submission"[^>]*>', client.get(url).content.decode())
        assert fields and all('autocomplete="off"' in field for field in fields), url


def test_the_compose_form_leads_back_to_the_letter_it_answers_or_to_the_mailbox(db: None) -> None:
    """On a phone the mailboxes' links are hidden on the compose page: its own link is the way
    back, to the letter being answered or forwarded, else to the mailbox. A tampered source
    is refused on its field, not answered with an error page."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    sent = api_client(alice).post(
        "/api/v1/messages", {"sender": a_box.address, "to": [b_box.address], "subject": "Avis"}
    )
    assert sent.status_code == 201, sent.content
    message_id = sent.json()["id"]
    client = web_client(bob)
    back = re.compile(r'<p class="mail-back"><a href="([^"]+)">← ([^<]+)</a></p>')
    assert back.findall(client.get("/messages/compose/").content.decode()) == [("/messages/", "Retour à la messagerie")]
    for query in (f"reply_to={message_id}", f"forward={message_id}&mailbox={b_box.pk}"):
        page = client.get(f"/messages/compose/?{query}").content.decode()
        assert back.findall(page) == [(f"/messages/m/{message_id}/", "Retour au message")], query
    refused = client.post(
        "/messages/compose/",
        {"sender": b_box.address, "to": a_box.address, "subject": "RE", "body": "x", "in_reply_to": "pas-un-id"},
    )
    assert refused.status_code == 400
    assert "in_reply_to" in refused.context["form"].errors
    assert back.findall(refused.content.decode()) == [("/messages/", "Retour à la messagerie")]
