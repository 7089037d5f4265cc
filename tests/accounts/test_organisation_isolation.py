"""Organisation A's administrator can neither see nor change organisation B's members."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from pli.accounts import services
from pli.accounts.models import Invitation, Mailbox, Membership, Organisation, User
from pli.audit.models import AuditEvent
from pli.testing.accounts import make_organisation, make_user


@pytest.fixture
def other(db: None) -> Organisation:
    return make_organisation("Clinique Beta")


@pytest.fixture
def other_member(other: Organisation) -> User:
    return make_user(other, first_name="Bruno", last_name="Beta", email="bruno@beta.example.org")


def test_admin_of_a_cannot_reach_b_pages(
    organisation: Organisation, admin_client: Client, other: Organisation, other_member: User
) -> None:
    mailbox = services.create_shared_mailbox(other, "Accueil", [other_member])
    services.invite_member(other, email="z@example.org", role="assistant")
    membership = Membership.objects.get(user=other_member)
    for path in (
        f"/organisations/{other.slug}/members/",
        f"/organisations/{other.slug}/members/invite/",
        f"/organisations/{other.slug}/members/{membership.pk}/",
        f"/organisations/{other.slug}/mailboxes/",
        f"/organisations/{other.slug}/mailboxes/new/",
        f"/organisations/{other.slug}/mailboxes/{mailbox.pk}/",
    ):
        response = admin_client.get(path)
        assert response.status_code == 404, path
        assert "Bruno" not in response.content.decode()


def test_admin_of_a_cannot_change_b_members(
    organisation: Organisation, admin_client: Client, other: Organisation, other_member: User
) -> None:
    membership = Membership.objects.get(user=other_member)
    mailbox = services.create_shared_mailbox(other, "Accueil", [other_member])
    invitation = services.invite_member(other, email="z@example.org", role="assistant").invitation
    posts = {
        f"/organisations/{other.slug}/members/invite/": {"email": "spy@example.org", "role": "admin"},
        f"/organisations/{other.slug}/members/{membership.pk}/": {"role": "assistant"},
        f"/organisations/{other.slug}/members/{membership.pk}/remove/": {},
        f"/organisations/{other.slug}/invitations/{invitation.pk}/revoke/": {},
        f"/organisations/{other.slug}/invitations/{invitation.pk}/resend/": {},
        f"/organisations/{other.slug}/mailboxes/new/": {"name": "Espion"},
        f"/organisations/{other.slug}/mailboxes/{mailbox.pk}/": {"name": "Pris", "members": []},
        # B's objects through A's own pages:
        f"/organisations/{organisation.slug}/members/{membership.pk}/": {"role": "assistant"},
        f"/organisations/{organisation.slug}/members/{membership.pk}/remove/": {},
        f"/organisations/{organisation.slug}/invitations/{invitation.pk}/revoke/": {},
        f"/organisations/{organisation.slug}/mailboxes/{mailbox.pk}/": {"name": "Pris", "members": []},
    }
    for path, data in posts.items():
        assert admin_client.post(path, data).status_code == 404, path
    membership.refresh_from_db()
    mailbox.refresh_from_db()
    assert membership.role == "practitioner" and other_member.is_active
    assert mailbox.name == "Accueil" and list(mailbox.members.all()) == [other_member]
    assert Invitation.objects.get(pk=invitation.pk).revoked_at is None
    assert not Invitation.objects.filter(email="spy@example.org").exists()
    assert Mailbox.objects.filter(organisation=other).count() == 2  # Bruno's own + Accueil


def test_admin_of_a_cannot_add_b_members_to_a_mailbox(
    organisation: Organisation, admin_client: Client, other_member: User
) -> None:
    response = admin_client.post(
        f"/organisations/{organisation.slug}/mailboxes/new/", {"name": "Accueil", "members": [other_member.pk]}
    )
    assert response.status_code == 400
    assert not Mailbox.objects.filter(name="Accueil").exists()


def test_member_list_shows_only_own_organisation(
    organisation: Organisation, admin_client: Client, other_member: User
) -> None:
    body = admin_client.get(f"/organisations/{organisation.slug}/members/").content.decode()
    assert "Alice" in body and "Bruno" not in body and "bruno@beta" not in body


def test_non_admin_member_gets_403(organisation: Organisation) -> None:
    practitioner = make_user(organisation)
    client = Client()
    client.force_login(practitioner)
    assert client.get(f"/organisations/{organisation.slug}/members/").status_code == 403
    assert (
        client.post(
            f"/organisations/{organisation.slug}/members/invite/", {"email": "x@example.org", "role": "admin"}
        ).status_code
        == 403
    )
    assert not Invitation.objects.exists()


def test_admin_manages_own_members_through_the_pages(
    organisation: Organisation, admin: User, admin_client: Client
) -> None:
    member = make_user(organisation, first_name="Marc", last_name="Membre")
    membership = Membership.objects.get(user=member)
    assert "Marc" in admin_client.get(f"/organisations/{organisation.slug}/members/").content.decode()
    page = admin_client.get(f"/organisations/{organisation.slug}/members/{membership.pk}/")
    assert page.status_code == 200
    assert (
        admin_client.post(
            f"/organisations/{organisation.slug}/members/{membership.pk}/", {"role": "assistant"}
        ).status_code
        == 302
    )
    assert Membership.objects.get(pk=membership.pk).role == "assistant"
    # Demoting the only admin is refused with a message next to the field.
    own = Membership.objects.get(user=admin)
    response = admin_client.post(f"/organisations/{organisation.slug}/members/{own.pk}/", {"role": "assistant"})
    assert response.status_code == 400 and "au moins un administrateur" in response.content.decode()
    response = admin_client.post(
        f"/organisations/{organisation.slug}/mailboxes/new/", {"name": "Secrétariat", "members": [member.pk, admin.pk]}
    )
    assert response.status_code == 302
    mailbox = Mailbox.objects.get(name="Secrétariat")
    assert set(mailbox.members.all()) == {member, admin}
    assert "Secrétariat" in admin_client.get(f"/organisations/{organisation.slug}/mailboxes/").content.decode()
    assert (
        admin_client.post(
            f"/organisations/{organisation.slug}/mailboxes/{mailbox.pk}/",
            {"name": "Secrétariat", "members": [admin.pk]},
        ).status_code
        == 302
    )
    assert list(mailbox.members.all()) == [admin]
    assert admin_client.post(f"/organisations/{organisation.slug}/members/{membership.pk}/remove/").status_code == 302
    assert not User.objects.get(pk=member.pk).is_active
    assert admin_client.get("/organisations/")["Location"] == f"/organisations/{organisation.slug}/members/"


def test_removing_a_member_removed_meanwhile_is_no_error(
    organisation: Organisation, admin: User, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A double click, or two administrators at once: the second request found the
    membership, then the first one committed the removal before it locked the row."""
    member = make_user(organisation)
    membership = Membership.objects.get(user=member, organisation=organisation)
    original = services.remove_member

    def after_another_admin(found: Membership, **kwargs: Any) -> None:
        original(Membership.objects.get(pk=found.pk), actor=admin)  # the other request, committed
        original(found, **kwargs)

    monkeypatch.setattr(services, "remove_member", after_another_admin)
    response = admin_client.post(f"/organisations/{organisation.slug}/members/{membership.pk}/remove/")
    assert response.status_code == 302 and response["Location"] == f"/organisations/{organisation.slug}/members/"
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_changing_the_role_of_a_member_removed_meanwhile_says_so(
    organisation: Organisation, admin: User, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another administrator removed the member (or they left) after this request found the
    membership and before it locked the row: the page answered 500."""
    member = make_user(organisation, first_name="Marc", last_name="Membre")
    membership = Membership.objects.get(user=member, organisation=organisation)
    original = services.change_role

    def after_another_admin(found: Membership, role: str, **kwargs: Any) -> Membership:
        services.remove_member(Membership.objects.get(pk=found.pk), actor=admin)  # the other request, committed
        return original(found, role, **kwargs)

    monkeypatch.setattr(services, "change_role", after_another_admin)
    url = f"/organisations/{organisation.slug}/members/{membership.pk}/"
    response = admin_client.post(url, {"role": "admin"})
    assert response.status_code == 302 and response["Location"] == f"/organisations/{organisation.slug}/members/"
    assert not Membership.objects.filter(user=member).exists()
    page = admin_client.get(response["Location"]).content.decode()
    assert (
        "Marc Membre n\u2019est plus membre de l\u2019organisation\u00a0: "
        "son r\u00f4le n\u2019a pas \u00e9t\u00e9 modifi\u00e9." in page
    )
    assert not AuditEvent.objects.filter(action="membership.role_changed").exists()


def test_an_admin_who_steps_down_is_not_sent_to_a_page_now_refused(
    organisation: Organisation, admin: User, admin_client: Client
) -> None:
    """With a second administrator appointed, Alice makes herself a practitioner: she was
    sent on to the members page, which now answers her 403, instead of being told it worked."""
    make_user(organisation, role="admin")
    own = Membership.objects.get(user=admin)
    response = admin_client.post(f"/organisations/{organisation.slug}/members/{own.pk}/", {"role": "practitioner"})
    assert response.status_code == 302
    assert Membership.objects.get(pk=own.pk).role == "practitioner"
    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert "R\u00f4le modifi\u00e9" in page.content.decode()


def test_a_shared_mailbox_form_sent_twice_creates_one_mailbox(
    organisation: Organisation, admin: User, admin_client: Client
) -> None:
    """A double click on « Créer » (or the page sent again after a slow answer) made two
    mailboxes, « Secrétariat » and a second one at secretariat-2."""
    url = f"/organisations/{organisation.slug}/mailboxes/new/"
    page = admin_client.get(url).content.decode()
    found = re.search(r'<input type="hidden" name="submission" value="([^"]+)"', page)
    assert found is not None
    data = {"name": "Secrétariat", "members": [admin.pk], "submission": found.group(1)}
    first, second = admin_client.post(url, data), admin_client.post(url, data)
    assert first.status_code == second.status_code == 302 and first["Location"] == second["Location"]
    mailbox = Mailbox.objects.get(organisation=organisation, kind="organisational")
    assert list(mailbox.members.all()) == [admin]
    assert AuditEvent.objects.filter(action="mailbox.created").count() == 1
    # Another page is another form.
    page = admin_client.get(url).content.decode()
    other = re.search(r'<input type="hidden" name="submission" value="([^"]+)"', page)
    assert other is not None and other.group(1) != found.group(1)
    assert admin_client.post(url, {**data, "name": "Accueil", "submission": other.group(1)}).status_code == 302
    assert Mailbox.objects.filter(organisation=organisation, kind="organisational").count() == 2


def test_removing_a_member_asks_first(organisation: Organisation, admin: User, admin_client: Client) -> None:
    """Removing someone ends their sessions, revokes their API tokens and, for their last
    organisation, switches their account off: one click on « Retirer » did it at once."""
    member = make_user(organisation, first_name="Marc", last_name="Membre")
    membership = Membership.objects.get(user=member)
    page = admin_client.get(f"/organisations/{organisation.slug}/members/{membership.pk}/").content.decode()
    form = page[page.index(f'action="/organisations/{organisation.slug}/members/{membership.pk}/remove/"') :]
    form = form[: form.index(">")]
    assert 'data-confirm="Retirer Marc Membre de l\u2019organisation\u00a0?' in form
