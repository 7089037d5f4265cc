"""Invitations: sent by an admin, accepted once through the e-mailed link, then a second
factor before anything else."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from accounts_helpers import extract_link, sign_in
from django.test import Client
from django.utils import timezone

from pli.accounts import services
from pli.accounts.models import Invitation, Mailbox, Membership, Organisation, User
from pli.audit.models import AuditEvent
from pli.testing.accounts import make_organisation, make_user, totp_code

NEW_PASSWORD = "le soleil se leve sur la baie"


def _invite(organisation: Organisation, admin: User, email: str = "new@example.org", role: str = "practitioner") -> str:
    return services.invite_member(organisation, email=email, role=role, actor=admin).token


def _accept_data(**overrides: str) -> dict[str, str]:
    data = {
        "first_name": "Léa",
        "last_name": "Bernard",
        "profession": "Médecin",
        "specialty": "Pédiatrie",
        "rpps": "10012345673",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
    }
    data.update(overrides)
    return data


def test_admin_invites_by_email_through_a_real_smtp_server(
    transactional_db: None, smtp_server: Any, settings: Any
) -> None:
    organisation = make_organisation("Maison de santé")
    admin = make_user(organisation, role="admin", first_name="Alice", last_name="Admin")
    client = Client()
    client.force_login(admin)
    response = client.post(
        f"/organisations/{organisation.slug}/members/invite/",
        {"email": "Lea.Bernard@Example.org", "role": "practitioner", "first_name": "Léa", "last_name": ""},
    )
    assert response.status_code == 302
    (mail,) = smtp_server.wait_for(1)
    assert mail.recipients == ["lea.bernard@example.org"]
    assert "Maison de santé" in mail.subject
    assert "Bonjour Léa" in mail.body and "Alice Admin vous invite" in mail.body
    link = extract_link(mail.body, "/invitation/")
    assert link.startswith(settings.PUBLIC_URL + "/invitation/")
    token = urlsplit(link).path.split("/")[2]
    assert len(token) >= 43  # 256 random bits, base64url
    invitation = Invitation.objects.get()
    assert token not in invitation.token_hash and invitation.token_hash != token
    assert (invitation.expires_at - timezone.now()).days == 6  # 7 days, minus a few seconds
    assert AuditEvent.objects.filter(action="invitation.sent", target_id=str(invitation.pk)).exists()
    assert "lea.bernard@example.org" in client.get(f"/organisations/{organisation.slug}/members/").content.decode()


def test_get_shows_the_form_and_changes_nothing(organisation: Organisation, admin: User, client: Client) -> None:
    token = _invite(organisation, admin)
    for _visit in range(3):
        page = client.get(f"/invitation/{token}/")
        assert page.status_code == 200
        assert "Créer votre compte" in page.content.decode()
    invitation = Invitation.objects.get()
    assert invitation.accepted_at is None
    assert not User.objects.filter(email="new@example.org").exists()


def test_accepting_creates_the_account_and_requires_a_second_factor(
    organisation: Organisation, admin: User, client: Client
) -> None:
    token = _invite(organisation, admin)
    response = client.post(f"/invitation/{token}/", _accept_data())
    assert response.status_code == 302 and response["Location"] == "/account/2fa/"
    user = User.objects.get(email="new@example.org")
    assert (user.first_name, user.last_name, user.rpps, user.specialty) == (
        "Léa",
        "Bernard",
        "10012345673",
        "Pédiatrie",
    )
    assert user.check_password(NEW_PASSWORD)
    assert Membership.objects.get(user=user).role == "practitioner"
    assert Mailbox.objects.get(owner=user).address == "lea.bernard@pli.localhost"
    # Signed in, but nothing is reachable before enrolment...
    assert client.get("/")["Location"] == "/account/2fa/"
    assert client.get("/account/")["Location"] == "/account/2fa/"
    # ...and enrolment starts without asking the brand-new password again.
    assert client.get("/account/2fa/totp/activate/").status_code == 200
    invitation = Invitation.objects.get()
    assert invitation.accepted_at is not None and invitation.accepted_by == user
    assert AuditEvent.objects.filter(action="invitation.accepted", target_id=str(invitation.pk)).exists()


def test_invitation_is_single_use(organisation: Organisation, admin: User) -> None:
    token = _invite(organisation, admin)
    assert Client().post(f"/invitation/{token}/", _accept_data()).status_code == 302
    again = Client().post(f"/invitation/{token}/", _accept_data(rpps="", first_name="Autre"))
    assert again.status_code == 410
    assert "déjà été utilisée" in again.content.decode()
    assert Client().get(f"/invitation/{token}/").status_code == 410
    assert User.objects.filter(email="new@example.org").count() == 1
    refused = AuditEvent.objects.filter(action="invitation.refused").latest("seq")
    assert (refused.outcome, refused.details["reason"]) == ("denied", "used")


def test_expired_invitation_is_refused(organisation: Organisation, admin: User) -> None:
    token = _invite(organisation, admin)
    Invitation.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    for response in (Client().get(f"/invitation/{token}/"), Client().post(f"/invitation/{token}/", _accept_data())):
        assert response.status_code == 410
        assert "a expiré" in response.content.decode()
    assert not User.objects.filter(email="new@example.org").exists()
    assert AuditEvent.objects.filter(action="invitation.refused", details__reason="expired").count() == 2


def test_wrong_token_is_refused(organisation: Organisation, admin: User) -> None:
    token = _invite(organisation, admin)
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "x", "a" * 200):
        response = Client().get(f"/invitation/{wrong}/")
        assert response.status_code == 404
        assert "n\u2019est pas valable" in response.content.decode()


def test_revoked_invitation_is_refused(organisation: Organisation, admin: User, admin_client: Client) -> None:
    token = _invite(organisation, admin)
    invitation = Invitation.objects.get()
    response = admin_client.post(f"/organisations/{organisation.slug}/invitations/{invitation.pk}/revoke/")
    assert response.status_code == 302
    assert Client().get(f"/invitation/{token}/").status_code == 410
    assert AuditEvent.objects.filter(action="invitation.revoked").exists()


def test_new_invitation_replaces_the_pending_one(organisation: Organisation, admin: User) -> None:
    first = _invite(organisation, admin)
    second = _invite(organisation, admin)
    assert Client().get(f"/invitation/{first}/").status_code == 410
    assert Client().get(f"/invitation/{second}/").status_code == 200


def test_inviting_the_same_address_again_says_what_it_replaced_and_keeps_the_names(
    organisation: Organisation, admin: User, admin_client: Client
) -> None:
    """Inviting a secretary again, the role left at its default « Praticien » and the names
    not typed a second time: the pending invitation was replaced in silence, its role
    changed and « Bonjour Sophie » became « Bonjour »."""
    url = f"/organisations/{organisation.slug}/members/invite/"
    first = {"email": "sophie@example.org", "role": "assistant", "first_name": "Sophie", "last_name": "Bernard"}
    admin_client.post(url, first)
    response = admin_client.post(url, {"email": "sophie@example.org", "role": "practitioner"}, follow=True)
    page = response.content.decode()
    sent_on = timezone.localtime(Invitation.objects.earliest("created_at").created_at).strftime("%d/%m/%Y")
    assert (
        f"Elle remplace l\u2019invitation envoyée le {sent_on} (rôle\u00a0: Assistant), dont le lien ne "
        "fonctionne plus\u00a0; le rôle est maintenant\u00a0: Praticien." in page
    )
    pending = Invitation.objects.get(revoked_at__isnull=True)
    assert (pending.role, pending.first_name, pending.last_name) == ("practitioner", "Sophie", "Bernard")
    # The same role again: nothing said of a role.
    again = admin_client.post(url, {"email": "sophie@example.org", "role": "practitioner"}, follow=True)
    assert "dont le lien ne fonctionne plus." in again.content.decode()
    assert "le rôle est maintenant" not in again.content.decode()
    # A first invitation says nothing of the kind.
    fresh = admin_client.post(url, {"email": "paul@example.org", "role": "practitioner"}, follow=True)
    assert "Elle remplace" not in fresh.content.decode()


@pytest.mark.parametrize(
    "overrides,field,message",
    [
        ({"rpps": "1234"}, "rpps", "exactement 11 chiffres"),
        ({"rpps": "1234567890a"}, "rpps", "que des chiffres"),
        ({"rpps": ""}, "rpps", "Saisissez votre numéro RPPS"),
        ({"adeli": "12345"}, "adeli", "exactement 9 chiffres"),
        ({"password1": "court", "password2": "court"}, "password1", "trop court"),
        ({"password1": "motdepasse2024!", "password2": "motdepasse2024!"}, "password1", "mot courant"),
        ({"password2": "autre chose entierement"}, "password2", "différents"),
        ({"first_name": ""}, "first_name", "obligatoire"),
    ],
)
def test_bad_input_is_refused_next_to_the_field(
    organisation: Organisation, admin: User, overrides: dict[str, str], field: str, message: str
) -> None:
    token = _invite(organisation, admin)
    response = Client().post(f"/invitation/{token}/", _accept_data(**overrides))
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body
    assert f'id="id_{field}_error"' in body
    assert 'aria-invalid="true"' in body
    assert not User.objects.filter(email="new@example.org").exists()
    assert Invitation.objects.get().accepted_at is None


def test_rpps_failing_luhn_is_accepted_with_a_warning(organisation: Organisation, admin: User) -> None:
    token = _invite(organisation, admin)
    client = Client()
    response = client.post(f"/invitation/{token}/", _accept_data(rpps="12345678901"), follow=True)
    assert response.status_code == 200
    assert "clé de Luhn" in response.content.decode()
    assert User.objects.get(email="new@example.org").rpps == "12345678901"


def test_assistant_gives_no_professional_number(organisation: Organisation, admin: User) -> None:
    token = _invite(organisation, admin, role="assistant")
    page = Client().get(f"/invitation/{token}/").content.decode()
    assert 'name="rpps"' not in page
    data = _accept_data(profession="Secrétaire médicale")
    for name in ("rpps", "specialty"):
        data.pop(name)
    assert Client().post(f"/invitation/{token}/", data).status_code == 302
    user = User.objects.get(email="new@example.org")
    assert user.rpps is None and Membership.objects.get(user=user).role == "assistant"


def test_existing_account_joins_after_signing_in(organisation: Organisation, admin: User) -> None:
    other_org = make_organisation("Clinique Beta")
    member = make_user(other_org, email="shared@example.org")
    token = _invite(organisation, admin, email="shared@example.org")
    anonymous = Client().get(f"/invitation/{token}/")
    assert anonymous.status_code == 200 and "Vous avez déjà un compte" in anonymous.content.decode()
    assert Client().post(f"/invitation/{token}/", {}).status_code == 403
    client = Client()
    client.force_login(member)
    assert client.post(f"/invitation/{token}/").status_code == 302
    assert Membership.objects.filter(user=member, organisation=organisation, role="practitioner").exists()
    assert Client().get(f"/invitation/{token}/").status_code == 410


def test_a_former_member_whose_account_was_switched_off_can_rejoin(organisation: Organisation, admin: User) -> None:
    """Leaving one's last organisation switches the account off, and a switched-off account
    cannot sign in: "sign in, then open the link again" was a dead end, so an administrator
    could never take a former colleague back. The link itself, sent to the account's
    address, switches it on with the new membership; signing in still takes the password
    and the second factor."""
    former = make_user(organisation, email="back@example.org")
    services.remove_member(Membership.objects.get(user=former), actor=admin)
    former.refresh_from_db()
    assert not former.is_active
    token = _invite(organisation, admin, email="back@example.org", role="assistant")
    client = Client()
    page = client.get(f"/invitation/{token}/")
    assert page.status_code == 200 and "désactivé" in page.content.decode()
    response = client.post(f"/invitation/{token}/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    former.refresh_from_db()
    assert former.is_active
    assert Membership.objects.filter(user=former, organisation=organisation, role="assistant").exists()
    assert Mailbox.objects.get(owner=former).is_active
    # Not signed in by the link: the password and the second factor, as before.
    assert client.get("/account/").status_code == 302
    assert sign_in(client, "back@example.org", code=totp_code())["Location"] == "/"
    assert Client().get(f"/invitation/{token}/").status_code == 410


def test_what_a_former_member_left_signed_in_does_not_come_back_with_the_account(
    organisation: Organisation, admin: User
) -> None:
    """Leaving one's last organisation ends one's sessions and revokes one's API tokens.
    Switched off, they only stopped working; rejoining (the test above) brought back a token
    left in the old practice's software, now opening the new organisation's mailboxes."""
    from django.contrib.sessions.models import Session

    from pli.api import services as api

    former = make_user(organisation, email="back@example.org")
    _token, raw = api.create_token(former, "Logiciel du cabinet")
    browser = Client()
    assert sign_in(browser, "back@example.org", code=totp_code())["Location"] == "/"
    services.remove_member(Membership.objects.get(user=former), actor=admin)
    session_key = browser.cookies["pli_session"].value
    assert not Session.objects.filter(session_key=session_key).exists()
    event = AuditEvent.objects.filter(action="api.token_revoked").latest("seq")
    assert (event.actor_id, event.details) == (str(admin.pk), {"reason": "deactivated"})
    token = _invite(organisation, admin, email="back@example.org")
    assert Client().post(f"/invitation/{token}/").status_code == 302
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert browser.get("/account/").status_code == 302


def test_a_switched_off_account_is_not_switched_on_by_someone_else_signed_in(
    organisation: Organisation, admin: User, admin_client: Client
) -> None:
    former = make_user(organisation, email="back@example.org")
    services.remove_member(Membership.objects.get(user=former), actor=admin)
    token = _invite(organisation, admin, email="back@example.org")
    assert admin_client.post(f"/invitation/{token}/").status_code == 403
    former.refresh_from_db()
    assert not former.is_active


def test_someone_else_signed_in_cannot_accept(organisation: Organisation, admin: User, admin_client: Client) -> None:
    token = _invite(organisation, admin)
    response = admin_client.post(f"/invitation/{token}/", _accept_data())
    assert response.status_code == 409
    assert not User.objects.filter(email="new@example.org").exists()


def test_resending_to_someone_who_became_a_member_meanwhile_says_so(
    organisation: Organisation, admin: User, admin_client: Client
) -> None:
    """The operator's `pli createuser` made the invitee a member while the invitation was
    pending: "send again" answered a 500 (the service's refusal went unhandled)."""
    invitation = services.invite_member(organisation, email="new@example.org", role="assistant", actor=admin).invitation
    make_user(organisation, email="new@example.org", second_factor=False)
    response = admin_client.post(f"/organisations/{organisation.slug}/invitations/{invitation.pk}/resend/", follow=True)
    assert response.status_code == 200
    assert "déjà membre" in response.content.decode()
    assert Invitation.objects.filter(email="new@example.org").count() == 1


def test_inviting_a_current_member_is_refused(organisation: Organisation, admin: User, admin_client: Client) -> None:
    response = admin_client.post(
        f"/organisations/{organisation.slug}/members/invite/", {"email": admin.email, "role": "assistant"}
    )
    assert response.status_code == 400
    assert "déjà membre" in response.content.decode()


def test_invitation_form_validates(organisation: Organisation, admin_client: Client) -> None:
    response = admin_client.post(
        f"/organisations/{organisation.slug}/members/invite/", {"email": "not-an-address", "role": "boss"}
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="id_email_error"' in body and 'id="id_role_error"' in body
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("address", ['"x\x0bab:Mkinv"@example.org', f"lea@{'a' * 70}.example.org"])
def test_an_address_no_email_can_carry_is_refused_without_a_500(
    organisation: Organisation, admin_client: Client, address: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Django's validator takes these; the e-mail package refuses them in the To header with
    # an error repeating the address, which made the invitation a 500 with it in the log.
    response = admin_client.post(
        f"/organisations/{organisation.slug}/members/invite/", {"email": address, "role": "practitioner"}
    )
    assert response.status_code == 400
    assert 'id="id_email_error"' in response.content.decode()
    assert not Invitation.objects.exists()
    assert "Mkinv" not in caplog.text and "a" * 70 not in caplog.text


def test_an_invitation_e_mail_that_cannot_be_written_is_not_sent_and_not_logged(
    transactional_db: None, smtp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from pli.notify.email import send_templated

    # Past the forms (an address stored before they refused it): refused before connecting.
    sent = send_templated(to='"x\x0bab:Mkinv"@example.org', template_prefix="accounts/email/invitation", context={})
    assert sent is False and smtp_server.messages == []
    assert "Mkinv" not in caplog.text and "not sent" in caplog.text


def test_posting_invitations_is_rate_limited(organisation: Organisation, admin: User) -> None:
    token = _invite(organisation, admin)
    client = Client(REMOTE_ADDR="192.0.2.50")
    statuses = [client.get(f"/invitation/{token}/").status_code for _attempt in range(10)]
    statuses += [client.post(f"/invitation/{token}/", _accept_data(rpps="1")).status_code for _attempt in range(11)]
    assert statuses[:10] == [200] * 10 and statuses[10:20] == [400] * 10 and statuses[20] == 429
    assert Client(REMOTE_ADDR="192.0.2.51").get(f"/invitation/{token}/").status_code == 200
