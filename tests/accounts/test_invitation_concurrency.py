"""Invitations sent or accepted twice at the same instant (two administrators, two tabs),
each on its own database connection, as two requests would on PostgreSQL."""

from __future__ import annotations

from functools import partial

import pytest
from django.core.exceptions import ValidationError

from interleave import while_committing
from pli.accounts import services
from pli.accounts.models import Invitation, Mailbox, Membership, User
from pli.testing.accounts import make_organisation, make_user


def test_two_admins_inviting_the_same_address_at_once_leave_one_pending_invitation(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each checked for a pending invitation to replace before the other had committed its
    own: both stayed pending, two links to the same membership."""
    organisation = make_organisation("Cabinet Alpha")
    alice = make_user(organisation, role="admin", email="alice@alpha.example.org")
    bruno = make_user(organisation, role="admin", email="bruno@alpha.example.org")
    other = partial(services.invite_member, organisation, email="lea@example.org", role="practitioner", actor=bruno)
    join = while_committing(monkeypatch, "invitation.sent", other, "invitation.sent")
    services.invite_member(organisation, email="lea@example.org", role="practitioner", actor=alice)
    assert join() == []
    invitations = Invitation.objects.filter(organisation=organisation, email="lea@example.org")
    assert invitations.count() == 2
    assert invitations.filter(revoked_at__isnull=True).count() == 1


def test_two_invitations_accepted_at_once_make_one_membership_and_a_clean_refusal(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pending invitations of one person to one organisation (sent before invitations
    were serialised), accepted at once from two tabs: the second hit the membership's unique
    constraint at COMMIT, a 500. It is now told the person is already a member."""
    organisation = make_organisation("Cabinet Alpha")
    admin = make_user(organisation, role="admin", email="alice@alpha.example.org")
    member = make_user(make_organisation("Clinique Beta"), email="lea@example.org")
    first = services.invite_member(organisation, email="lea@example.org", role="practitioner", actor=admin)
    second = services.invite_member(organisation, email="lea@example.org", role="assistant", actor=admin)
    Invitation.objects.filter(pk=first.invitation.pk).update(revoked_at=None)  # both pending
    join = while_committing(
        monkeypatch,
        "membership.added",
        partial(services.accept_invitation_as, second.token, member),
        "membership.added",
    )
    services.accept_invitation_as(first.token, member)
    failures = join()
    assert len(failures) == 1 and isinstance(failures[0], ValidationError), failures
    assert list(Membership.objects.filter(user=member, organisation=organisation).values_list("role", flat=True)) == [
        "practitioner"
    ]
    assert Invitation.objects.get(pk=second.invitation.pk).accepted_at is None


def test_two_new_account_invitations_to_one_address_accepted_at_once_make_one_account(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two practices invited the same new person, who opened both links and accepted them
    at the same instant: each found no account under the address, and the second insert
    failed on the address's unique constraint, a 500. It is now refused next to the form."""
    alpha, beta = make_organisation("Cabinet Alpha"), make_organisation("Clinique Beta")
    first = services.invite_member(
        alpha, email="lea@example.org", role="practitioner", actor=make_user(alpha, role="admin")
    )
    second = services.invite_member(
        beta, email="lea@example.org", role="practitioner", actor=make_user(beta, role="admin")
    )
    password = "le soleil se leve sur la baie"
    accept = partial(services.accept_invitation, password=password, first_name="Léa", last_name="Bernard")
    join = while_committing(monkeypatch, "user.created", partial(accept, second.token), "user.created")
    accept(first.token)
    failures = join()
    # Told the address has an account: after the first commits (SQLite, one writer at a
    # time), or as it commits (PostgreSQL).
    assert len(failures) == 1, failures
    refusal = failures[0]
    if isinstance(refusal, services.InvitationProblem):
        assert refusal.code == "account_exists"
    else:
        assert isinstance(refusal, ValidationError) and "email" in refusal.message_dict, refusal
    assert User.objects.filter(email="lea@example.org").count() == 1
    assert Invitation.objects.get(pk=second.invitation.pk).accepted_at is None


def test_a_shared_mailbox_form_sent_twice_at_once_makes_one_mailbox(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A double click on « Créer »: the second request checked for the form's mailbox before
    the first had committed it, and made a second one."""
    organisation = make_organisation("Cabinet Alpha")
    admin = make_user(organisation, role="admin", email="alice@alpha.example.org")
    create = partial(
        services.create_shared_mailbox, organisation, "Secrétariat", [admin], actor=admin, submission="s" * 32
    )
    join = while_committing(monkeypatch, "mailbox.created", create, "mailbox.created")
    first = create()
    assert join() == []
    assert list(Mailbox.objects.filter(organisation=organisation, kind="organisational")) == [first]
