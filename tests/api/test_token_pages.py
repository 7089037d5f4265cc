from __future__ import annotations

import re
import time

import pytest
from django.test import Client

from pli.accounts.models import User
from pli.api import services
from pli.api.models import ApiToken
from pli.audit.models import AuditEvent
from pli.testing.accounts import TEST_PASSWORD, make_user

TOKEN = re.compile(r"pli_[A-Za-z0-9]{52}")


@pytest.fixture
def user(db: None) -> User:
    return make_user(email="doc@example.org", first_name="Jeanne", last_name="Martin")


@pytest.fixture
def signed_in(user: User) -> Client:
    """Signed in, and the password given again a moment ago (creating a token asks for it)."""
    client = Client()
    client.force_login(user)
    session = client.session
    # allauth's record of a password given again (what its reauthentication page writes).
    session["account_authentication_methods_user"] = str(user.pk)
    session["account_authentication_methods"] = [{"method": "password", "at": time.time(), "reauthenticated": True}]
    session.save()
    return client


def test_creating_a_token_asks_for_the_password_again(user: User) -> None:
    """A session left open or stolen must not become lasting API access."""
    client = Client()
    client.force_login(user)
    assert client.get("/settings/tokens/").status_code == 200  # the list needs nothing more
    response = client.post("/settings/tokens/", {"name": "Script", "scopes": ["messages:read"]})
    assert response.status_code == 302 and response["Location"].startswith("/account/reauthenticate/")
    assert not ApiToken.objects.exists()


def test_a_new_password_revokes_every_token(user: User, signed_in: Client) -> None:
    tokens = [services.create_token(user, name)[1] for name in ("Logiciel", "Script")]
    response = signed_in.post(
        "/account/password/change/",
        {
            "oldpassword": TEST_PASSWORD,
            "password1": "Nouveau-mot-de-passe-2026!",
            "password2": "Nouveau-mot-de-passe-2026!",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AuditEvent.objects.filter(action="auth.password.changed", target_id=str(user.pk)).exists()
    assert all(services.authenticate_token(raw) is None for raw in tokens)
    revoked = AuditEvent.objects.filter(action="api.token_revoked")
    assert revoked.count() == 2 and all(e.ip == "127.0.0.1" for e in revoked)  # from where: recorded


def test_a_password_set_any_other_way_revokes_them_too(user: User) -> None:
    """`pli changepassword`, the admin: whatever saves a new password."""
    _, raw = services.create_token(user, "Logiciel")
    user.set_password(TEST_PASSWORD)  # the same password again (a rehash at sign-in): kept
    user.save()
    assert services.authenticate_token(raw) is not None
    user.set_password("Un-tout-autre-mot-de-passe-2026")
    assert services.authenticate_token(raw) is not None  # not before it is saved
    user.save()
    assert services.authenticate_token(raw) is None


def test_list_shows_tokens_without_their_secret(user: User, signed_in: Client) -> None:
    token, raw = services.create_token(user, "Logiciel du cabinet", ["messages:read"])
    services.authenticate_token(raw)
    response = signed_in.get("/settings/tokens/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Jetons d\u2019API" in body
    assert "Logiciel du cabinet" in body and f"{token.prefix}…" in body
    assert "messages:read" in body
    assert raw not in body and not TOKEN.search(body)
    assert "jamais" not in body.split("Logiciel du cabinet", 1)[1].split("</tr>", 1)[0]  # it was used


def test_create_shows_the_token_once(user: User, signed_in: Client) -> None:
    response = signed_in.post(
        "/settings/tokens/", {"name": "Script de tri", "scopes": ["messages:read", "shares:read"]}
    )
    assert response.status_code == 200
    body = response.content.decode()
    raw = TOKEN.search(body)
    assert raw is not None
    assert "ne sera plus jamais affiché" in body
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=user)
    assert token.name == "Script de tri" and token.scopes == ["messages:read", "shares:read"]
    assert services.authenticate_token(raw.group(0)) == token
    again = signed_in.get("/settings/tokens/").content.decode()
    assert raw.group(0) not in again and "Script de tri" in again


def test_create_with_bad_input_names_the_field(user: User, signed_in: Client) -> None:
    response = signed_in.post("/settings/tokens/", {"name": "", "scopes": []})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'aria-invalid="true"' in body
    assert "Choisissez au moins une action." in body
    assert not ApiToken.objects.exists()
    response = signed_in.post("/settings/tokens/", {"name": "ok", "scopes": ["everything"]})
    assert response.status_code == 400 and not ApiToken.objects.exists()


def test_revoke_asks_for_confirmation_then_revokes(user: User, signed_in: Client) -> None:
    token, raw = services.create_token(user, "Ancien logiciel")
    page = signed_in.get(f"/settings/tokens/{token.pk}/revoke/")
    assert page.status_code == 200
    assert "Révoquer le jeton" in page.content.decode()
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None  # a GET changes nothing
    response = signed_in.post(f"/settings/tokens/{token.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/settings/tokens/"
    assert services.authenticate_token(raw) is None
    assert AuditEvent.objects.filter(action="api.token_revoked", target_id=str(token.pk)).exists()
    listing = signed_in.get("/settings/tokens/").content.decode()
    assert "révoqué" in listing


def test_someone_elses_token_is_not_found(user: User, signed_in: Client) -> None:
    other = make_user(email="other@example.org")
    token, raw = services.create_token(other, "Jeton-de-Paul")
    assert signed_in.get(f"/settings/tokens/{token.pk}/revoke/").status_code == 404
    assert signed_in.post(f"/settings/tokens/{token.pk}/revoke/").status_code == 404
    assert services.authenticate_token(raw) == token
    assert "Jeton-de-Paul" not in signed_in.get("/settings/tokens/").content.decode()


def test_token_pages_need_a_signed_in_user(db: None, client: Client) -> None:
    response = client.get("/settings/tokens/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.post("/settings/tokens/", {"name": "x"}).status_code == 302
    assert not ApiToken.objects.exists()
