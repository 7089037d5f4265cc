"""Who may see what: every endpoint, for a member, a non-member of the same organisation, a
member of another organisation and an anonymous caller. Never a 200 for those who may not
see; the 404 is the very answer a non-existent id gets."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from messaging.factories import (
    OrganisationFactory,
    api_client,
    personal_mailbox,
    practitioner,
    shared_mailbox,
    web_client,
)
from pli.accounts.models import Mailbox, Membership, User
from pli.api.scopes import MESSAGES_READ
from pli.audit.models import AuditEvent
from pli.messaging.models import Delivery, Folder, Message


@dataclass
class World:
    sender: User
    member: User  # works in the recipient mailbox
    same_org: User  # same organisation, not in the mailbox
    other_org: User
    mailbox: Mailbox
    message_id: str
    attachment_id: str


@pytest.fixture(params=["personal", "shared"])
def world(request: pytest.FixtureRequest, db: None) -> World:
    org = OrganisationFactory()
    member, same_org = practitioner(org), practitioner(org)
    other_org, sender = practitioner(), practitioner()
    mailbox = personal_mailbox(member) if request.param == "personal" else shared_mailbox(org, [member])
    pdf = io.BytesIO(b"%PDF-1.4 secret")
    pdf.name = "cr.pdf"
    response = api_client(sender).post(
        "/api/v1/messages",
        {"sender": personal_mailbox(sender).address, "to": [mailbox.address], "subject": "S", "attachments": [pdf]},
    )
    assert response.status_code == 201
    body = response.json()
    return World(sender, member, same_org, other_org, mailbox, body["id"], body["attachments"][0]["id"])


def _requests(w: World, message_id: str | None = None, attachment_id: str | None = None) -> list[tuple[str, str, Any]]:
    m = message_id or w.message_id
    a = attachment_id or w.attachment_id
    return [
        ("get", f"/api/v1/mailboxes/{w.mailbox.pk}/messages", None),
        ("post", f"/api/v1/mailboxes/{w.mailbox.pk}/messages/search", {"q": "Bilan"}),
        ("get", f"/api/v1/messages/{m}", None),
        ("get", f"/api/v1/messages/{m}/attachments/{a}", None),
        ("post", f"/api/v1/messages/{m}/move", {"folder": "archive"}),
        ("post", f"/api/v1/messages/{m}/unread", {}),
        ("delete", f"/api/v1/messages/{m}", None),
    ]


def _call(client: Client, method: str, url: str, data: Any) -> Any:
    if method == "post":
        return client.post(url, data, content_type="application/json")
    return getattr(client, method)(url)


def test_member_gets_in(world: World) -> None:
    client = api_client(world.member)
    for method, url, data in _requests(world)[:6]:
        response = _call(client, method, url, data)
        assert response.status_code == 200, (url, response.content)
    # Delete works once the copy is in the trash.
    client.post(f"/api/v1/messages/{world.message_id}/move", {"folder": "trash"}, content_type="application/json")
    assert client.delete(f"/api/v1/messages/{world.message_id}").status_code == 204


@pytest.mark.parametrize("who", ["same_org", "other_org"])
def test_outsiders_get_exactly_a_not_found(world: World, who: str) -> None:
    client = api_client(getattr(world, who))
    missing = _requests(world, str(uuid.uuid4()), str(uuid.uuid4()))
    for (method, url, data), (_, missing_url, _) in zip(_requests(world), missing, strict=True):
        response = _call(client, method, url, data)
        assert response.status_code == 404, (url, response.status_code)
        if "/mailboxes/" in url:
            missing_url = url.replace(str(world.mailbox.pk), str(uuid.uuid4()))
        reference = _call(client, method, missing_url, data)
        assert reference.status_code == 404
        assert response.content == reference.content
    # Nothing moved, nothing read, nothing deleted.
    copy = Delivery.objects.get(message_id=world.message_id, mailbox=world.mailbox)
    assert copy.folder == Folder.INBOX and copy.read_at is None
    listed = [m["id"] for m in client.get("/api/v1/mailboxes").json()]
    assert str(world.mailbox.pk) not in listed
    # Each refusal is in the audit trail, with who tried what (ids as the caller gave them).
    outsider = str(getattr(world, who).pk)
    denied = AuditEvent.objects.filter(actor_id=outsider, outcome="denied")
    steps = {(e.action, e.details["step"]) for e in denied}
    assert {("message.access_denied", s) for s in ("read", "download", "move", "unread", "delete")} <= steps
    assert ("mailbox.access_denied", "api") in steps
    assert denied.filter(target_id=str(world.message_id)).exists()


@pytest.mark.parametrize("who", ["same_org", "other_org"])
def test_outsiders_cannot_send_from_or_reply_through(world: World, who: str) -> None:
    outsider = getattr(world, who)
    client = api_client(outsider)
    response = client.post(
        "/api/v1/messages",
        {"sender": world.mailbox.address, "to": [personal_mailbox(world.sender).address], "body": "x"},
    )
    assert response.status_code == 400 and "sender" in response.json()
    response = client.post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(outsider).address,
            "to": [personal_mailbox(world.sender).address],
            "body": "x",
            "in_reply_to": world.message_id,
        },
    )
    assert response.status_code == 400 and "in_reply_to" in response.json()
    response = client.post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(outsider).address,
            "to": [personal_mailbox(world.sender).address],
            "forward_of": world.message_id,
            "forward_attachments": [world.attachment_id],
        },
    )
    assert response.status_code == 400
    assert Message.objects.count() == 1


def test_anonymous_gets_401(world: World) -> None:
    client = Client()
    for method, url, data in [*_requests(world), ("get", "/api/v1/mailboxes", None), ("post", "/api/v1/messages", {})]:
        response = _call(client, method, url, data)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"].startswith("Bearer")
    bad = Client(HTTP_AUTHORIZATION="Bearer pli_notavalidtoken")
    assert bad.get(f"/api/v1/messages/{world.message_id}").status_code == 401


def test_scopes_are_enforced(world: World) -> None:
    reader = api_client(world.member, [MESSAGES_READ])
    assert reader.get(f"/api/v1/messages/{world.message_id}").status_code == 200
    response = reader.post(
        f"/api/v1/messages/{world.message_id}/move", {"folder": "archive"}, content_type="application/json"
    )
    assert response.status_code == 403
    response = reader.post("/api/v1/messages", {"sender": world.mailbox.address, "body": "x"})
    assert response.status_code == 403
    assert Delivery.objects.get(message_id=world.message_id, mailbox=world.mailbox).folder == Folder.INBOX
    # Deleting for good is a change, not a read: even a copy already in the trash stays.
    Delivery.objects.filter(message_id=world.message_id, mailbox=world.mailbox).update(folder=Folder.TRASH)
    assert reader.delete(f"/api/v1/messages/{world.message_id}").status_code == 403
    assert Delivery.objects.filter(message_id=world.message_id, mailbox=world.mailbox).exists()


@pytest.mark.parametrize("who", ["same_org", "other_org"])
def test_web_pages_answer_not_found_to_outsiders(world: World, who: str) -> None:
    client = web_client(getattr(world, who))
    m, a = world.message_id, world.attachment_id
    for url in [
        f"/messages/m/{m}/",
        f"/messages/m/{m}/a/{a}/",
        f"/messages/{world.mailbox.pk}/inbox/",
        f"/messages/{world.mailbox.pk}/search/?q=S",
        f"/messages/compose/?reply_to={m}",
        f"/messages/compose/?forward={m}",
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/messages/m/{m}/move/", {"folder": "trash"}).status_code == 404
    assert client.post(f"/messages/m/{m}/unread/", {"mailbox": str(world.mailbox.pk)}).status_code == 404
    # Ticked in a list of someone else's mailbox, or ticked in one's own: neither reaches it.
    own = personal_mailbox(getattr(world, who))
    for box in (world.mailbox.pk, own.pk):
        response = client.post(f"/messages/{box}/inbox/selection/", {"action": "trash", "message": [str(m)]})
        assert response.status_code == (404 if box == world.mailbox.pk else 302)
    denied = AuditEvent.objects.filter(actor_id=str(getattr(world, who).pk), outcome="denied")
    assert {e.details["step"] for e in denied.filter(action="message.access_denied")} >= {
        "read",
        "download",
        "reply",
        "forward",
        "move",
        "unread",
        "selection",
    }
    assert denied.filter(action="mailbox.access_denied", target_id=str(world.mailbox.pk)).exists()
    assert client.post(f"/messages/m/{m}/delete/").status_code == 404
    assert Delivery.objects.get(message_id=m, mailbox=world.mailbox).folder == Folder.INBOX


def test_web_pages_need_a_login(world: World) -> None:
    client = Client()
    for url in [f"/messages/m/{world.message_id}/", f"/messages/{world.mailbox.pk}/inbox/", "/messages/compose/"]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def _message(sender: User, to: Mailbox) -> str:
    """The id of a one-line message ``sender`` sent to ``to`` through the API."""
    response = api_client(sender).post(
        "/api/v1/messages", {"sender": personal_mailbox(sender).address, "to": [to.address], "body": "x"}
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def test_member_leaving_the_shared_mailbox_loses_access(db: None) -> None:
    org = OrganisationFactory()
    member, sender = practitioner(org), practitioner()
    mailbox = shared_mailbox(org, [member])
    message_id = _message(sender, mailbox)
    client = api_client(member)
    assert client.get(f"/api/v1/messages/{message_id}").status_code == 200
    mailbox.memberships.filter(user=member).delete()
    assert client.get(f"/api/v1/messages/{message_id}").status_code == 404


def test_a_mailbox_switched_off_is_out_of_reach(db: None) -> None:
    """Its owner, still an active account, neither lists it, nor reads what it holds."""
    sender, owner = practitioner(), practitioner()
    box = personal_mailbox(owner)
    message_id = _message(sender, box)
    Mailbox.objects.filter(pk=box.pk).update(is_active=False)
    client = api_client(owner)
    assert str(box.pk) not in [m["id"] for m in client.get("/api/v1/mailboxes").json()]
    assert client.get(f"/api/v1/mailboxes/{box.pk}/messages").status_code == 404
    assert client.get(f"/api/v1/messages/{message_id}").status_code == 404
    assert web_client(owner).get(f"/messages/{box.pk}/inbox/").status_code == 404
    assert Delivery.objects.get(message_id=message_id, mailbox=box).read_at is None


def test_a_shared_mailbox_is_out_of_reach_once_its_organisation_is_left(db: None) -> None:
    """Even if its member row lingers (leaving removes it too): the organisation decides."""
    org = OrganisationFactory()
    member, sender = practitioner(org), practitioner()
    mailbox = shared_mailbox(org, [member])
    message_id = _message(sender, mailbox)
    client = api_client(member)
    assert client.get(f"/api/v1/messages/{message_id}").status_code == 200
    Membership.objects.filter(user=member, organisation=org).delete()
    assert mailbox.memberships.filter(user=member).exists()
    assert str(mailbox.pk) not in [m["id"] for m in client.get("/api/v1/mailboxes").json()]
    assert client.get(f"/api/v1/messages/{message_id}").status_code == 404
    response = client.post(
        "/api/v1/messages", {"sender": mailbox.address, "to": [personal_mailbox(sender).address], "body": "x"}
    )
    assert response.status_code == 400 and "sender" in response.json()
