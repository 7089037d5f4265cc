"""The lookups every reading of a message makes, from SQL compiled once (pli.core.db.fetch):
the same rows, loaded the same way, as the ORM's querysets they are compiled from."""

from __future__ import annotations

import io
import uuid

from django.db.models import QuerySet

from messaging.factories import OrganisationFactory, api_client, personal_mailbox, practitioner, shared_mailbox
from pli.accounts.models import Mailbox, Membership, User
from pli.accounts.services import mailboxes_for
from pli.messaging import services
from pli.messaging.models import Attachment, DeletedCopy, Delivery, Folder


def _send(sender: User, to: list[Mailbox], cc: list[Mailbox]) -> str:
    files = []
    for position, name in enumerate(("b.pdf", "a.pdf", "c.pdf")):
        handle = io.BytesIO(bytes([position]) * 10)
        handle.name = name
        files.append(handle)
    data = {
        "sender": personal_mailbox(sender).address,
        "to": [m.address for m in to],
        "cc": [m.address for m in cc],
        "subject": "Bilan sanguin",
        "body": "Texte",
        "attachments": files,
    }
    response = api_client(sender).post("/api/v1/messages", data)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def _orm_copies(user: User, message_id: str) -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(message_id=uuid.UUID(message_id), mailbox__in=mailboxes_for(user))
        .select_related("message", "message__data_key", "message__sender", "mailbox")
        .order_by("role", "mailbox__name")
    )


def test_a_message_s_copies_recipients_and_attachments_as_the_orm_gives_them(db: None) -> None:
    organisation = OrganisationFactory()
    doctor, assistant, leaver = practitioner(organisation), practitioner(organisation), practitioner(organisation)
    writer, outsider = practitioner(OrganisationFactory()), practitioner(OrganisationFactory())
    team = shared_mailbox(organisation, [doctor, assistant, leaver])
    other = practitioner(OrganisationFactory())
    message_id = _send(writer, [personal_mailbox(doctor), team], [personal_mailbox(other)])
    # Out of the organisation, a row naming them in its shared mailbox is no key to it.
    Membership.objects.filter(user=leaver).delete()

    for user in (doctor, assistant, leaver, writer, outsider, other):
        found = services.visible_copies(user, message_id)
        expected = list(_orm_copies(user, message_id))
        assert [c.pk for c in found] == [c.pk for c in expected]
        for got, want in zip(found, expected, strict=True):
            assert got.mailbox.address == want.mailbox.address
            assert got.message.subject == want.message.subject == "Bilan sanguin"
            assert got.message.sender is not None and want.message.sender is not None
            assert got.message.sender.address == want.message.sender.address
    assert {c.mailbox_id for c in services.visible_copies(doctor, message_id)} == {
        personal_mailbox(doctor).pk,
        team.pk,
    }
    assert services.visible_copies(outsider, message_id) == []
    assert services.visible_copies(doctor, "not-a-uuid") == []
    User.objects.filter(pk=doctor.pk).update(is_active=False)
    doctor.refresh_from_db()
    assert services.visible_copies(doctor, message_id) == []

    # The recipients, a copy deleted for good included (with the receipt it had).
    services.move_message(other, message_id, Folder.TRASH)
    services.delete_message(other, message_id)
    assert DeletedCopy.objects.filter(message_id=message_id).count() == 1
    recipients = services.message_recipients_for([uuid.UUID(message_id)])
    assert [(r.role, r.mailbox.address) for r in recipients] == sorted(
        [("to", personal_mailbox(doctor).address), ("to", team.address), ("cc", personal_mailbox(other).address)],
        key=lambda row: (row[0] != "to", Mailbox.objects.get(address=row[1]).name, row[1]),
    )
    assert services.message_recipients_for([]) == []

    message = services.visible_copies(assistant, message_id)[0].message
    attachments = services.message_attachments(message)
    assert [a.name for a in attachments] == ["b.pdf", "a.pdf", "c.pdf"]  # as sent
    assert [a.pk for a in attachments] == [
        a.pk for a in Attachment.objects.filter(message=message).select_related("data_key").order_by("position")
    ]
    assert all(a.data_key is not None for a in attachments)
