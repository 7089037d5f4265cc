"""Every page of this part renders in French, under the CSP (no inline script or style),
with its static files served locally."""

from __future__ import annotations

import re

import pytest
from accounts_helpers import sign_in
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from django.test import Client
from django.urls import reverse

from pli.accounts import services
from pli.accounts.models import Membership, Organisation, User
from pli.testing.accounts import TEST_PASSWORD, make_user, totp_code

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"\s(on[a-z]+|style)\s*=", re.IGNORECASE)


def _check_page(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.get("Location"))
    body = response.content.decode()
    assert not INLINE_SCRIPT.search(body), path
    assert not INLINE_HANDLER.search(body), path
    assert 'lang="fr"' in body
    for src in re.findall(r'<script[^>]*\bsrc="([^"]+)"', body):
        assert src.startswith("/static/"), src
        assert client.get(src).status_code == 200, src
    return body


def test_public_pages(db: None, client: Client) -> None:
    for path in ("/login/", "/account/password/reset/", "/account/password/reset/done/", "/account/inactive/"):
        _check_page(client, path)
    assert "Mot de passe oublié" in _check_page(client, "/login/")


def test_signed_in_pages(organisation: Organisation, admin: User, client: Client) -> None:
    RecoveryCodes.activate(admin)
    sign_in(client, admin.email, code=totp_code())
    client.post("/account/reauthenticate/", {"password": TEST_PASSWORD})
    member = make_user(organisation)
    mailbox = services.create_shared_mailbox(organisation, "Accueil", [member])
    membership = Membership.objects.get(user=member)
    slug = organisation.slug
    pages = [
        "/account/",
        "/account/sessions/",
        "/account/password/change/",
        "/account/2fa/",
        "/account/2fa/totp/deactivate/",
        "/account/2fa/recovery-codes/",
        "/account/2fa/recovery-codes/generate/",
        "/account/2fa/webauthn/",
        "/account/2fa/webauthn/add/",
        "/account/2fa/reauthenticate/",
        "/account/reauthenticate/",
        f"/organisations/{slug}/members/",
        f"/organisations/{slug}/members/invite/",
        f"/organisations/{slug}/members/{membership.pk}/",
        f"/organisations/{slug}/mailboxes/",
        f"/organisations/{slug}/mailboxes/new/",
        f"/organisations/{slug}/mailboxes/{mailbox.pk}/",
        f"/organisations/{slug}/audit/",
    ]
    for path in pages:
        _check_page(client, path)
    add_key = _check_page(client, "/account/2fa/webauthn/add/")
    # allauth's WebAuthn code is a static file fed by JSON data blocks: nothing inline to execute.
    assert '<script id="js_data" type="application/json">' in add_key
    assert "/static/mfa/js/webauthn.js" in add_key


def test_second_factor_step_page(organisation: Organisation, client: Client) -> None:
    user = make_user(organisation)
    client.post("/login/", {"login": user.email, "password": TEST_PASSWORD})
    body = _check_page(client, "/account/2fa/authenticate/")
    assert 'autocomplete="one-time-code"' in body
    assert "Utiliser une clé de sécurité" in body


def test_enrolment_pages(organisation: Organisation, client: Client) -> None:
    user = make_user(organisation, second_factor=False)
    sign_in(client, user.email)
    client.post("/account/reauthenticate/", {"password": TEST_PASSWORD})
    assert "Une dernière étape" in _check_page(client, "/account/2fa/")
    body = _check_page(client, "/account/2fa/totp/activate/")
    assert 'src="data:image/svg+xml;base64,' in body  # the QR code, allowed by img-src data:
    assert re.search(r'id="totp-secret">[A-Z2-7]{32}<', body)


def test_invitation_pages(organisation: Organisation, admin: User, client: Client) -> None:
    token = services.invite_member(organisation, email="new@example.org", role="practitioner", actor=admin).token
    body = _check_page(client, f"/invitation/{token}/")
    assert '<datalist id="professions">' in body
    for name in ("first_name", "last_name", "rpps", "password1", "password2"):
        assert f'<label for="id_{name}"' in body


@pytest.mark.parametrize("language,text", [("fr", "Se connecter"), ("en", "Sign in")])
def test_login_page_languages(db: None, client: Client, language: str, text: str) -> None:
    body = client.get("/login/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert text in body


def test_navigation_for_signed_in_users(organisation: Organisation, admin_client: Client) -> None:
    body = admin_client.get("/account/").content.decode()
    assert 'action="/logout/"' in body and "Se déconnecter" in body
    assert 'href="/organisations/"' in body


def test_login_page_offers_one_password_reset_link(db: None, client: Client) -> None:
    body = client.get("/login/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    link = f'href="{reverse("account_reset_password")}"'
    assert body.count(link) == 1 and "Mot de passe oublié" in body
    # After the password, so that Tab goes from the e-mail address to the password.
    assert body.index('name="login"') < body.index('name="password"') < body.index(link)


def test_a_wrong_password_is_said_without_pointing_at_fields(db: None, client: Client) -> None:
    body = client.post(
        "/login/", {"login": "nobody@example.org", "password": "wrong password"}, HTTP_ACCEPT_LANGUAGE="fr"
    ).content.decode()
    assert 'role="alert"' in body and "signalés ci-dessous" not in body


def test_a_refused_account_form_puts_the_focus_on_what_to_correct(db: None) -> None:
    """The sign-in page came back refused with the focus nowhere: a screen reader read the
    page from its top, and the alert, present at load, was not announced."""
    user = make_user()
    client = Client()
    # A field refused: that field takes the focus (and is read with its error).
    page = client.post("/login/", {"login": "", "password": "x"}).content.decode()
    assert re.search(r'<input type="email" name="login"[^>]* autofocus[^>]* id="id_login">', page), page
    assert page.count("autofocus") == 1
    # Refused as a whole (a wrong password): the message above the fields does.
    page = client.post("/login/", {"login": user.email, "password": "not the password"}).content.decode()
    assert re.search(r'<div class="form-errors" role="alert" id="form-errors" tabindex="-1" autofocus>', page), page
    assert page.count("autofocus") == 1


@pytest.mark.parametrize(("language", "label"), [("fr", "Adresse e-mail"), ("en", "E-mail address")])
def test_sign_in_and_reset_pages_name_the_address_as_every_other_page(
    db: None, client: Client, language: str, label: str
) -> None:
    """allauth's own label read « Courriel » (“Email”) on these two pages only, where the
    text above it and every other page of Pli say « adresse e-mail »."""
    for path, name in (("/login/", "login"), ("/account/password/reset/", "email")):
        body = client.get(path, HTTP_ACCEPT_LANGUAGE=language).content.decode()
        assert re.search(rf'<label for="id_{name}"[^>]*>\s*{label}', body), (path, body)
        assert "Courriel" not in body and "Email:" not in body
        assert f'placeholder="{label}"' in body, (path, body)


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("fr", "Utilisez votre application d\u2019authentification ou un code de secours"),
        ("en", "Use your authenticator app or a recovery code"),
    ],
)
def test_confirming_it_is_you_offers_the_second_factor_in_pli_words(
    organisation: Organisation, client: Client, language: str, text: str
) -> None:
    """The link read allauth's « Utilisez une application d'authentification ou un code »:
    which code, the page did not say (Pli calls them codes de secours)."""
    user = make_user(organisation)
    sign_in(client, user.email, code=totp_code())
    body = client.get("/account/reauthenticate/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert text in body, body
    assert "application d'authentification" not in body


def test_a_spent_reset_link_says_so_in_french(db: None, client: Client) -> None:
    """The heading read « Lien plus valable », a French no one writes."""
    body = client.get("/account/password/reset/key/1-not-a-key/", HTTP_ACCEPT_LANGUAGE="fr", follow=True)
    assert "<h1>Ce lien n\u2019est plus valable</h1>" in body.content.decode()
