"""A share stays with the organisation it was made in: a practitioner who leaves loses it, the
organisation's administrators take it over, and patients' replies do not follow the
practitioner elsewhere."""

from __future__ import annotations

from typing import Any

from django.test import Client

from pli.accounts import services as accounts
from pli.accounts.models import Membership, User
from pli.api.services import create_token
from pli.sharing import services
from pli.sharing.models import PatientShare, ShareReply, Status
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import Patient, make_share


def _api(user: User) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {create_token(user, 'test')[1]}")


def _status(user: User, share: PatientShare) -> int:
    return int(_api(user).get(f"/api/v1/shares/{share.pk}").status_code)


def _leaves(user: User, organisation: Any, admin: User) -> None:
    """``user`` joins another organisation, then ``admin`` removes them from ``organisation``."""
    elsewhere = make_organisation()
    other_admin = make_user(elsewhere, role="admin")
    accounts.add_member(elsewhere, user, "practitioner", actor=other_admin)
    accounts.remove_member(Membership.objects.get(user=user, organisation=organisation), actor=admin)


def test_the_creator_alone_acts_on_a_share_while_a_member(db: None) -> None:
    org = make_organisation()
    admin, paul, colleague = make_user(org, role="admin"), make_user(org), make_user(org)
    share, _token = make_share(paul)
    assert [_status(u, share) for u in (paul, admin, colleague)] == [200, 404, 404]


def test_a_practitioner_who_leaves_loses_the_share_and_the_admins_take_it_over(db: None) -> None:
    org = make_organisation()
    admin, paul, colleague = make_user(org, role="admin"), make_user(org), make_user(org)
    share, _token = make_share(paul)
    _leaves(paul, org, admin)

    assert _status(paul, share) == 404
    assert Client().get("/shares/").status_code in (302, 403)  # anonymous: nothing
    paul_web = Client()
    paul_web.force_login(paul)
    assert paul_web.get(f"/shares/{share.pk}").status_code == 404
    assert _status(colleague, share) == 404  # not an administrator
    # The organisation keeps control: its administrator can see, unlock, revoke.
    assert _status(admin, share) == 200
    assert _api(admin).post(f"/api/v1/shares/{share.pk}/revoke").status_code == 200
    share.refresh_from_db()
    assert share.status == Status.REVOKED
    assert share.pk in {s.pk for s in services.shares_for(admin)}
    assert share.pk not in {s.pk for s in services.shares_for(paul)}


def test_a_patients_reply_does_not_follow_a_practitioner_who_left(db: None) -> None:
    org = make_organisation()
    admin, paul = make_user(org, role="admin"), make_user(org)
    _share, token = make_share(paul, allow_reply=True)
    _leaves(paul, org, admin)
    patient = Patient(token)
    assert 'name="files"' not in patient.sign_in().content.decode()
    response = patient.client.post(patient.url("/reply"), {"text": "Merci docteur"})
    assert response.status_code == 400
    assert not ShareReply.objects.exists()


def test_an_admin_does_not_see_shares_of_other_organisations(db: None) -> None:
    org, other = make_organisation(), make_organisation()
    admin, paul = make_user(org, role="admin"), make_user(other)
    other_admin = make_user(other, role="admin")
    share, _token = make_share(paul)
    _leaves(paul, other, other_admin)
    assert _status(admin, share) == 404
    assert _status(other_admin, share) == 200


def test_someone_removed_then_added_elsewhere_shares_in_the_new_organisation(db: None) -> None:
    """Removed from their last organisation (account and mailbox switched off), then added
    to another: their mailbox and their new shares belong to the new one, not the old."""
    org, elsewhere = make_organisation(), make_organisation()
    admin, paul = make_user(org, role="admin"), make_user(org)
    make_user(org, role="admin")  # so that the organisation keeps one once Paul is gone
    accounts.remove_member(Membership.objects.get(user=paul, organisation=org), actor=admin)
    accounts.add_member(elsewhere, paul, "practitioner", actor=make_user(elsewhere, role="admin"))
    paul.refresh_from_db()
    share, _token = make_share(paul, allow_reply=True)
    assert share.organisation_id == elsewhere.pk
    assert share.reply_mailbox is not None and share.reply_mailbox.organisation_id == elsewhere.pk
    assert [_status(u, share) for u in (paul, admin)] == [200, 404]


def test_the_admin_taking_over_a_share_is_told_replies_stopped_with_its_author(db: None) -> None:
    """Paul allowed replies and his patient answered once; then he left. His administrator,
    who now looks after the share, must not read « Réponses : autorisées » (the patient can
    no longer answer) nor be sent to a reply « à lire dans votre messagerie » that is in
    Paul's mailbox, which she cannot open."""
    org = make_organisation()
    admin, paul = make_user(org, role="admin"), make_user(org, first_name="Paul", last_name="Martin")
    share, token = make_share(paul, allow_reply=True)
    patient = Patient(token)
    patient.sign_in()
    assert patient.client.post(patient.url("/reply"), {"text": "Merci docteur"}).status_code in (302, 303)
    paul_web = Client()
    paul_web.force_login(paul)
    page = paul_web.get(f"/shares/{share.pk}").content.decode()
    assert "<dd>autoris\u00e9es</dd>" in page and "\u00e0 lire dans votre messagerie" in page

    _leaves(paul, org, admin)
    admin_web = Client()
    admin_web.force_login(admin)
    page = admin_web.get(f"/shares/{share.pk}").content.decode()
    assert "<dd>autoris\u00e9es</dd>" not in page
    assert "plus possibles\u00a0: Paul Martin n\u2019est plus membre de l\u2019organisation" in page
    assert "\u00e0 lire dans votre messagerie" not in page
    assert "dans la messagerie de Paul Martin" in page


def test_the_patient_is_told_replies_stopped_when_the_practitioner_left(db: None) -> None:
    """The patient was invited to answer; the practitioner has left since. The page showed
    no reply form and said nothing: the patient is now told to contact the practice."""
    org = make_organisation()
    admin, paul = make_user(org, role="admin"), make_user(org)
    _share, token = make_share(paul, allow_reply=True)
    stopped = "Il n\u2019est plus possible de r\u00e9pondre sur cette page\u00a0: contactez directement le cabinet."
    patient = Patient(token)
    assert stopped not in patient.sign_in().content.decode()
    _leaves(paul, org, admin)
    page = patient.get("/documents").content.decode()
    assert 'name="files"' not in page
    assert stopped in page


def test_the_admin_sees_whose_share_she_took_over(db: None) -> None:
    """The administrator's list mixes her own shares with those of a practitioner who has
    left: each of his says who sent it, and his share's page does not call his message to
    the patient « Votre message »."""
    org = make_organisation()
    admin = make_user(org, role="admin", first_name="Alice", last_name="Durand")
    paul = make_user(org, first_name="Paul", last_name="Martin")
    theirs, _token = make_share(paul, message="Voici vos r\u00e9sultats.")
    mine, _token = make_share(admin, message="Bonne r\u00e9ception.")
    _leaves(paul, org, admin)
    web = Client()
    web.force_login(admin)
    listing = web.get("/shares/").content.decode()
    assert listing.count("envoy\u00e9 par Paul Martin") == 1
    assert "Alice Durand" not in listing
    page = web.get(f"/shares/{theirs.pk}").content.decode()
    assert "<dt>Envoy\u00e9 par</dt><dd>Paul Martin</dd>" in page
    assert "Votre message" not in page and "Message au patient" in page
    page = web.get(f"/shares/{mine.pk}").content.decode()
    assert "Envoy\u00e9 par" not in page and "Votre message" in page
