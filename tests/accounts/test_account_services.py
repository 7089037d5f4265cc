"""Organisations, members and mailboxes, through the services other apps call."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from pli.accounts import services
from pli.accounts.models import Mailbox, MailboxMember, Membership, Organisation, User
from pli.audit.models import AuditEvent
from pli.testing.accounts import TEST_PASSWORD, make_organisation, make_user


def _errors(excinfo: pytest.ExceptionInfo[ValidationError]) -> dict[str, list[str]]:
    return excinfo.value.message_dict


def test_create_organisation_normalises_identifiers(db: None) -> None:
    organisation = services.create_organisation(name="  Clinique   du Parc ", siret="732 829 320 00074")
    assert organisation.name == "Clinique du Parc"
    assert organisation.slug == "clinique-du-parc"
    assert organisation.siret == "73282932000074" and organisation.finess is None
    assert AuditEvent.objects.filter(action="organisation.created", target_id=str(organisation.pk)).exists()
    second = services.create_organisation(name="Clinique du Parc", finess="750.000.001")
    assert second.slug == "clinique-du-parc-2" and second.finess == "750000001"


@pytest.mark.parametrize(
    "fields,field,fragment",
    [
        ({"name": ""}, "name", "obligatoire"),
        ({"name": "x" * 201}, "name", "Trop long"),
        ({"name": "A", "finess": "12345678"}, "finess", "exactement 9 chiffres"),
        ({"name": "A", "siret": "73282932000075"}, "siret", "clé de contrôle"),
        ({"name": "A", "siret": "7328293200007X"}, "siret", "que des chiffres"),
        ({"name": "A", "kind": "castle"}, "kind", "inconnu"),
    ],
)
def test_create_organisation_refuses_bad_input(db: None, fields: dict[str, str], field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        services.create_organisation(**fields)
    assert fragment in " ".join(_errors(excinfo)[field])
    assert not Organisation.objects.exists()


def test_duplicate_identifiers_are_refused(db: None) -> None:
    services.create_organisation(name="A", finess="750000001")
    with pytest.raises(ValidationError) as excinfo:
        services.create_organisation(name="B", finess="750 000 001")
    assert "existe déjà" in _errors(excinfo)["finess"][0]


def test_create_user_gives_a_personal_mailbox(organisation: Organisation) -> None:
    user = services.create_user(
        email=" Elodie.DArc@Example.org ",
        password=TEST_PASSWORD,
        organisation=organisation,
        role="practitioner",
        first_name="Élodie",
        last_name="d'Arc-Lévêque",
        professional=services.Professional(profession="Médecin", rpps="100 0123 4565"),
    )
    assert user.email == "elodie.darc@example.org"
    assert user.rpps == "10001234565" and user.national_id == "810001234565"
    mailbox = Mailbox.objects.get(owner=user)
    assert mailbox.address == "elodie.d-arc-leveque@pli.localhost"
    assert (mailbox.kind, mailbox.organisation) == ("personal", organisation)
    assert EmailAddress.objects.get(user=user).verified
    assert Membership.objects.get(user=user).role == "practitioner"
    actions = set(
        AuditEvent.objects.filter(target_id=str(user.pk), target_type="accounts.user").values_list("action", flat=True)
    )
    assert {"user.created", "membership.added"} <= actions


def test_personal_addresses_are_deduplicated(organisation: Organisation, settings: object) -> None:
    first = make_user(organisation, first_name="Jeanne", last_name="Martin", second_factor=False)
    second = make_user(organisation, first_name="Jeanne", last_name="MARTIN", second_factor=False)
    third = make_user(organisation, first_name="Jéanne", last_name="Martin", second_factor=False)
    addresses = [Mailbox.objects.get(owner=u).address for u in (first, second, third)]
    assert addresses == ["jeanne.martin@pli.localhost", "jeanne.martin2@pli.localhost", "jeanne.martin3@pli.localhost"]


def test_mailbox_domain_comes_from_settings(organisation: Organisation, settings: object) -> None:
    settings.PLI_MAIL_DOMAIN = "pli.example.fr"
    user = make_user(organisation, first_name="Ana", last_name="Ruiz", second_factor=False)
    assert Mailbox.objects.get(owner=user).address == "ana.ruiz@pli.example.fr"


def test_create_user_reports_every_mistake_and_writes_nothing(organisation: Organisation) -> None:
    with pytest.raises(ValidationError) as excinfo:
        services.create_user(
            email="doc@example.org",
            password="court",
            organisation=organisation,
            role="practitioner",
            first_name="Jo",
            last_name="Doe",
            professional=services.Professional(rpps="123", adeli="12"),
        )
    errors = _errors(excinfo)
    assert set(errors) == {"password", "rpps", "adeli"}
    assert not User.objects.exists() and not Mailbox.objects.exists()


def test_duplicate_email_and_rpps_are_refused(organisation: Organisation) -> None:
    make_user(organisation, email="doc@example.org", professional=services.Professional(rpps="10001234565"))
    with pytest.raises(ValidationError) as excinfo:
        make_user(organisation, email="DOC@example.org")
    assert "e-mail" in _errors(excinfo)["email"][0]
    with pytest.raises(ValidationError) as excinfo:
        make_user(organisation, professional=services.Professional(rpps="10001234565"))
    assert "RPPS" in _errors(excinfo)["rpps"][0]


def test_shared_mailbox_and_mailboxes_for(organisation: Organisation) -> None:
    doctor = make_user(organisation, first_name="Paul", last_name="Durand", second_factor=False)
    assistant = make_user(organisation, role="assistant", first_name="Claire", last_name="Petit", second_factor=False)
    outsider = make_user(first_name="Zoé", last_name="Autre", second_factor=False)
    secretariat = services.create_shared_mailbox(organisation, "Secrétariat", [assistant, doctor])
    assert secretariat.address == f"secretariat.{organisation.slug}@pli.localhost"
    assert secretariat.kind == "organisational" and secretariat.owner is None
    assert set(secretariat.members.all()) == {assistant, doctor}
    assert [m.address for m in services.mailboxes_for(assistant)] == [
        "claire.petit@pli.localhost",
        secretariat.address,
    ]
    assert services.user_can_use_mailbox(doctor, secretariat)
    assert not services.user_can_use_mailbox(outsider, secretariat)
    assert not services.user_can_use_mailbox(doctor, Mailbox.objects.get(owner=assistant))
    with pytest.raises(ValidationError) as excinfo:
        services.create_shared_mailbox(organisation, "Accueil", [outsider])
    assert "appartenir à l\u2019organisation" in _errors(excinfo)["members"][0]


def test_mailbox_list_is_mailboxes_for_from_compiled_sql(organisation: Organisation) -> None:
    """The list every page's navigation and the API's mailbox list use: the same mailboxes,
    in the same order, as the queryset, whatever the user's situation."""
    doctor = make_user(organisation, first_name="Paul", last_name="Durand", second_factor=False)
    assistant = make_user(organisation, role="assistant", first_name="Claire", last_name="Petit", second_factor=False)
    leaver = make_user(organisation, first_name="Luc", last_name="Parti", second_factor=False)
    outsider = make_user(first_name="Zoé", last_name="Autre", second_factor=False)
    secretariat = services.create_shared_mailbox(organisation, "Secrétariat", [assistant, doctor, leaver])
    services.create_shared_mailbox(organisation, "Accueil", [doctor])
    closed = services.create_shared_mailbox(organisation, "Ancien", [assistant])
    Mailbox.objects.filter(pk=closed.pk).update(is_active=False)
    # Out of the organisation, a row naming them in its shared mailbox is no key to it.
    Membership.objects.filter(user=leaver).delete()

    def addresses(mailboxes: Iterable[Mailbox]) -> list[str]:
        return [m.address for m in mailboxes]

    for user in (doctor, assistant, leaver, outsider):
        assert addresses(services.mailbox_list(user)) == addresses(services.mailboxes_for(user))
    assert addresses(services.mailbox_list(assistant)) == ["claire.petit@pli.localhost", secretariat.address]
    assert addresses(services.mailbox_list(doctor)) == [
        "paul.durand@pli.localhost",
        f"accueil.{organisation.slug}@pli.localhost",
        secretariat.address,
    ]
    assert addresses(services.mailbox_list(leaver)) == ["luc.parti@pli.localhost"]
    User.objects.filter(pk=assistant.pk).update(is_active=False)
    assistant.refresh_from_db()
    assert services.mailbox_list(assistant) == []


def test_update_shared_mailbox_members(organisation: Organisation, admin: User) -> None:
    a = make_user(organisation, second_factor=False)
    b = make_user(organisation, second_factor=False)
    mailbox = services.create_shared_mailbox(organisation, "Accueil", [a], actor=admin)
    services.update_shared_mailbox(mailbox, name="Accueil général", members=[b], actor=admin)
    mailbox.refresh_from_db()
    assert mailbox.name == "Accueil général" and list(mailbox.members.all()) == [b]
    assert not services.user_can_use_mailbox(a, mailbox)
    event = AuditEvent.objects.filter(action="mailbox.members_changed").latest("seq")
    assert event.details == {"added": 1, "removed": 1}


def test_two_shared_mailboxes_of_a_practice_do_not_share_a_name(organisation: Organisation, admin: User) -> None:
    """A second « Secrétariat » was accepted, listed first in the directory with the same
    label, and letters went to the empty one, which nobody reads."""
    a = make_user(organisation, second_factor=False)
    first = services.create_shared_mailbox(organisation, "Secrétariat", [a], actor=admin)
    for typed in ("  secrétariat ", "secretariat"):  # nor without its accent
        with pytest.raises(ValidationError) as refused:
            services.create_shared_mailbox(organisation, typed, [], actor=admin)
        assert refused.value.message_dict == {
            "name": ["L\u2019organisation a déjà une boîte partagée nommée «\u00a0Secrétariat\u00a0»."]
        }
    other = services.create_shared_mailbox(organisation, "Accueil", [a], actor=admin)
    with pytest.raises(ValidationError):
        services.update_shared_mailbox(other, name="SECRÉTARIAT", members=[a], actor=admin)
    # Its own name, in other letters, is no clash; nor another organisation's mailbox.
    services.update_shared_mailbox(first, name="secrétariat", members=[a], actor=admin)
    elsewhere = make_organisation("Autre cabinet")
    services.create_shared_mailbox(elsewhere, "Secrétariat", [], actor=make_user(elsewhere, role="admin"))
    assert Mailbox.objects.filter(organisation=organisation, kind=Mailbox.Kind.ORGANISATIONAL).count() == 2


def test_renaming_a_shared_mailbox_is_recorded_as_a_rename(organisation: Organisation, admin: User) -> None:
    """Renaming « Accueil » was written to the trail as « Shared mailbox members
    changed », with nobody added or removed: the journal did not say the name changed."""
    a = make_user(organisation, second_factor=False)
    mailbox = services.create_shared_mailbox(organisation, "Accueil", [a], actor=admin)
    services.update_shared_mailbox(mailbox, name="Secrétariat", members=[a], actor=admin)
    events = list(AuditEvent.objects.filter(target_id=str(mailbox.pk)).order_by("seq").values_list("action", flat=True))
    assert events == ["mailbox.created", "mailbox.renamed"]
    assert AuditEvent.objects.get(action="mailbox.renamed").actor_id == str(admin.pk)


def test_shared_mailbox_access_granted_and_withdrawn_names_each_person(organisation: Organisation, admin: User) -> None:
    """A shared mailbox holds health data: the trail must tell who could read it when, so
    each person given or losing access is named, not only counted."""
    a = make_user(organisation, second_factor=False)
    b = make_user(organisation, second_factor=False)
    c = make_user(organisation, second_factor=False)
    mailbox = services.create_shared_mailbox(organisation, "Accueil", [a, b], actor=admin)
    services.update_shared_mailbox(mailbox, name="Accueil", members=[b, c], actor=admin)

    def people(action: str) -> list[tuple[str, str, str]]:
        events = AuditEvent.objects.filter(action=action).order_by("seq")
        return [(e.actor_id, e.target_id, e.details["mailbox"]) for e in events]

    box = str(mailbox.pk)
    assert sorted(people("mailbox.member_added")) == sorted(
        [(str(admin.pk), str(a.pk), box), (str(admin.pk), str(b.pk), box), (str(admin.pk), str(c.pk), box)]
    )
    assert people("mailbox.member_removed") == [(str(admin.pk), str(a.pk), box)]
    # Leaving the organisation takes one out of its shared mailboxes: named the same way.
    services.remove_member(Membership.objects.get(user=b), actor=admin)
    assert people("mailbox.member_removed") == [(str(admin.pk), str(a.pk), box), (str(admin.pk), str(b.pk), box)]


def test_inactive_users_have_no_mailbox(organisation: Organisation) -> None:
    user = make_user(organisation, second_factor=False)
    User.objects.filter(pk=user.pk).update(is_active=False)
    user.refresh_from_db()
    assert not services.mailboxes_for(user).exists()


def test_role_changes_are_audited_and_keep_an_admin(organisation: Organisation, admin: User) -> None:
    member = make_user(organisation, second_factor=False)
    membership = Membership.objects.get(user=member)
    services.change_role(membership, "admin", actor=admin)
    event = AuditEvent.objects.filter(action="membership.role_changed").latest("seq")
    assert event.details["from"] == "practitioner" and event.details["to"] == "admin"
    assert event.actor_id == str(admin.pk)
    services.change_role(Membership.objects.get(user=admin), "practitioner", actor=member)
    with pytest.raises(ValidationError):
        services.change_role(membership, "assistant", actor=member)
    assert Membership.objects.get(user=member).role == "admin"


def test_removing_a_member(organisation: Organisation, admin: User) -> None:
    member = make_user(organisation, second_factor=False)
    mailbox = services.create_shared_mailbox(organisation, "Accueil", [member, admin])
    services.remove_member(Membership.objects.get(user=member), actor=admin)
    member.refresh_from_db()
    assert not member.is_active
    assert not MailboxMember.objects.filter(user=member).exists()
    assert not Mailbox.objects.get(owner=member).is_active
    assert services.user_can_use_mailbox(admin, mailbox)
    assert AuditEvent.objects.filter(action="membership.removed", target_id=str(member.pk)).exists()
    with pytest.raises(ValidationError):
        services.remove_member(Membership.objects.get(user=admin), actor=admin)


def test_member_of_two_organisations_keeps_the_other(organisation: Organisation, admin: User) -> None:
    other = make_organisation("Clinique Beta")
    member = make_user(organisation, second_factor=False)
    services.add_member(other, member, "assistant")
    services.remove_member(Membership.objects.get(user=member, organisation=organisation), actor=admin)
    member.refresh_from_db()
    assert member.is_active
    assert Mailbox.objects.get(owner=member).organisation == other


def test_switching_an_account_on_again_is_recorded(organisation: Organisation, admin: User) -> None:
    """Leaving one's last organisation is recorded with ``deactivated``; coming back (a new
    membership switches the account and its mailbox on again) said nothing of it."""
    other = make_organisation("Clinique Beta")
    other_admin = make_user(other, role="admin", second_factor=False)
    member = make_user(organisation, second_factor=False)
    services.remove_member(Membership.objects.get(user=member), actor=admin)
    services.add_member(other, member, "practitioner", actor=other_admin)
    event = AuditEvent.objects.filter(action="membership.added", target_id=str(member.pk)).latest("seq")
    assert event.details == {"organisation": other.pk, "role": "practitioner", "reactivated": True}
    services.add_member(organisation, member, "assistant", actor=admin)
    event = AuditEvent.objects.filter(action="membership.added", target_id=str(member.pk)).latest("seq")
    assert event.details == {"organisation": organisation.pk, "role": "assistant", "reactivated": False}


def test_services_check_the_actor_is_admin_of_that_organisation(organisation: Organisation, admin: User) -> None:
    other = make_organisation("Clinique Beta")
    stranger = make_user(other, second_factor=False)
    practitioner = make_user(organisation, second_factor=False)
    membership = Membership.objects.get(user=stranger)
    with pytest.raises(PermissionDenied):
        services.change_role(membership, "admin", actor=admin)
    with pytest.raises(PermissionDenied):
        services.remove_member(membership, actor=admin)
    with pytest.raises(PermissionDenied):
        services.invite_member(other, email="x@example.org", role="assistant", actor=admin)
    with pytest.raises(PermissionDenied):
        services.create_shared_mailbox(other, "Accueil", [], actor=admin)
    with pytest.raises(PermissionDenied):
        services.invite_member(organisation, email="x@example.org", role="assistant", actor=practitioner)
    assert Membership.objects.get(user=stranger).role == "practitioner"


@pytest.mark.parametrize("each", ["steps_down", "removes_the_other"])
def test_two_admins_leaving_at_once_leave_one(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch, each: str
) -> None:
    """The practice's two administrators step down (or remove each other) at the same
    moment: if each saw the other still an administrator, the organisation would be left with
    none, and nobody could invite, remove or appoint anyone any more. The membership is
    locked with its organisation (``select_related`` without ``of``: on PostgreSQL the
    joined organisation row is locked too), which makes the second wait for the first."""
    organisation = make_organisation("Cabinet Beta")
    alice = make_user(organisation, role="admin", email="alice@beta.example.org", second_factor=False)
    bruno = make_user(organisation, role="admin", email="bruno@beta.example.org", second_factor=False)
    real, both_checked = services._other_admins, threading.Barrier(2)

    def other_admins(membership: Membership) -> bool:
        found = real(membership)
        # Each waits for the other's check, unless the other waits for this one to commit.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait(timeout=2)
        return found

    monkeypatch.setattr(services, "_other_admins", other_admins)
    outcomes: dict[str, str] = {}

    def leave(actor: User, other: User) -> None:
        try:
            if each == "steps_down":
                services.change_role(Membership.objects.get(user=actor), "practitioner", actor=actor)
            else:
                services.remove_member(Membership.objects.get(user=other), actor=actor)
            outcomes[actor.email] = "done"
        except (ValidationError, PermissionDenied) as exc:
            outcomes[actor.email] = type(exc).__name__
        finally:
            connection.close()

    threads = [threading.Thread(target=leave, args=pair) for pair in ((alice, bruno), (bruno, alice))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(outcomes.values()).count("done") == 1, outcomes
    assert Membership.objects.filter(organisation=organisation, role="admin", user__is_active=True).count() == 1


@pytest.mark.parametrize("change", ["role", "removal", "invitation"])
def test_an_admin_change_as_a_colleague_makes_a_share_is_no_error(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """An administrator changed a member's role, removed a member or withdrew an invitation
    just as a colleague's patient share committed: on PostgreSQL the share held the audit
    trail's head and, at COMMIT, checked its organisation's foreign key (a key-share lock),
    while the change held the organisation's row FOR UPDATE and waited for the head: one of
    them failed with a 500."""
    from interleave import while_committing
    from pli.sharing.models import PatientShare
    from sharing.helpers import make_share

    organisation = make_organisation("Cabinet Gamma")
    admin = make_user(organisation, role="admin", second_factor=False)
    claire = make_user(organisation, second_factor=False)
    marc = make_user(organisation, second_factor=False)
    invitation = services.invite_member(organisation, email="x@gamma.example.org", role="assistant", actor=admin)

    def act() -> None:
        if change == "role":
            services.change_role(Membership.objects.get(user=marc), "assistant", actor=admin)
        elif change == "removal":
            services.remove_member(Membership.objects.get(user=marc), actor=admin)
        else:
            services.revoke_invitation(invitation.invitation, actor=admin)

    event = {"role": "membership.role_changed", "removal": "membership.removed", "invitation": "invitation.revoked"}
    join = while_committing(monkeypatch, "share.created", act, event[change])
    share, _token = make_share(claire)
    assert join() == []
    assert PatientShare.objects.get(pk=share.pk).organisation_id == organisation.pk


def test_an_invitation_sent_before_the_secret_key_changed_still_opens_with_the_earlier_key_listed(
    organisation: Organisation, admin: User, settings: Any
) -> None:
    token = services.invite_member(organisation, email="new@example.org", role="assistant", actor=admin).token
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-secret-key-" + "y" * 40
    with pytest.raises(services.InvitationProblem):
        services.find_invitation(token)
    settings.SECRET_KEY_FALLBACKS = [old]
    assert services.find_invitation(token).email == "new@example.org"
