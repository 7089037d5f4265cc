"""Signing in: password + mandatory second factor (allauth), replay, recovery codes,
lockouts, password reset, sessions."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from accounts_helpers import extract_link, sign_in
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from pli.accounts.models import Organisation, User
from pli.audit.models import AuditEvent
from pli.testing.accounts import TEST_PASSWORD, TEST_TOTP_SECRET, make_user, totp_code


def _actions(user: User | None = None, **filters: Any) -> list[str]:
    if user is not None:
        filters.update(target_type="accounts.user", target_id=str(user.pk))
    return list(AuditEvent.objects.filter(**filters).order_by("seq").values_list("action", flat=True))


def test_password_then_totp_signs_in(organisation: Organisation, client: Client) -> None:
    user = make_user(organisation, email="doc@example.org")
    response = client.post("/login/", {"login": "doc@example.org", "password": TEST_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/account/2fa/authenticate/"
    # The password alone doesn't sign in.
    assert client.get("/account/").status_code == 302
    page = client.get("/account/2fa/authenticate/")
    assert page.status_code == 200 and "Second facteur" in page.content.decode()
    response = client.post("/account/2fa/authenticate/", {"code": totp_code()})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/account/").status_code == 200
    events = AuditEvent.objects.filter(target_id=str(user.pk), action__in=["auth.login", "auth.second_factor"])
    assert {(e.action, e.outcome) for e in events} == {("auth.login", "success"), ("auth.second_factor", "success")}


def test_login_is_by_email_only_and_case_insensitive(organisation: Organisation, client: Client) -> None:
    make_user(organisation, email="doc@example.org")
    response = sign_in(client, "DOC@Example.org", code=totp_code())
    assert response.status_code == 302 and response["Location"] == "/"


def test_wrong_password_is_refused_and_audited(organisation: Organisation, client: Client) -> None:
    user = make_user(organisation, email="doc@example.org")
    response = client.post("/login/", {"login": "doc@example.org", "password": "not the password"})
    assert response.status_code == 200
    assert "L’adresse e-mail ou le mot de passe sont incorrects" in response.content.decode()  # noqa: RUF001
    event = AuditEvent.objects.filter(action="auth.login").latest("seq")
    assert (event.outcome, event.target_id, event.details["reason"]) == ("failure", str(user.pk), "bad_credentials")
    client.post("/login/", {"login": "nobody@example.org", "password": "whatever it is"})
    event = AuditEvent.objects.filter(action="auth.login").latest("seq")
    assert (event.outcome, event.target_id, event.details["reason"]) == ("failure", "", "unknown_account")


def test_wrong_totp_code_is_refused_and_audited(organisation: Organisation, client: Client) -> None:
    user = make_user(organisation, email="doc@example.org")
    wrong = f"{(int(totp_code()) + 1) % 1_000_000:06d}"
    response = sign_in(client, "doc@example.org", code=wrong)
    assert response.status_code == 200
    assert "Code incorrect ou déjà utilisé" in response.content.decode()
    assert client.get("/account/").status_code == 302
    event = AuditEvent.objects.filter(action="auth.second_factor").latest("seq")
    assert (event.outcome, event.target_id) == ("failure", str(user.pk))


def test_replayed_totp_code_is_refused(organisation: Organisation) -> None:
    make_user(organisation, email="doc@example.org")
    code = totp_code()
    first, second = Client(), Client()
    assert sign_in(first, "doc@example.org", code=code)["Location"] == "/"
    response = sign_in(second, "doc@example.org", code=code)
    assert response.status_code == 200
    assert "déjà utilisé" in response.content.decode()
    assert second.get("/account/").status_code == 302


def test_recovery_code_signs_in_once(organisation: Organisation) -> None:
    user = make_user(organisation, email="doc@example.org")
    codes = RecoveryCodes.activate(user).generate_codes()
    assert sign_in(Client(), "doc@example.org", code=codes[0])["Location"] == "/"
    again = sign_in(Client(), "doc@example.org", code=codes[0])
    assert again.status_code == 200


def test_signed_in_user_without_second_factor_reaches_only_enrolment(
    organisation: Organisation, client: Client
) -> None:
    user = make_user(organisation, second_factor=False)
    client.force_login(user)
    for path in ("/", "/account/", "/account/sessions/", "/account/password/change/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"] == "/account/2fa/", path
    page = client.get("/account/2fa/")
    assert page.status_code == 200
    assert "second-factor-required" in page.content.decode()
    assert client.get("/account/2fa/totp/activate/").status_code in (200, 302)
    assert client.get("/account/2fa/webauthn/add/").status_code in (200, 302)
    assert client.get("/logout/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_totp_enrolment_through_the_pages(transactional_db: None, organisation: Organisation, client: Client) -> None:
    # Transactional: allauth announces new factors after commit, inside the request.
    user = make_user(organisation, email="new@example.org", second_factor=False)
    response = sign_in(client, "new@example.org")
    assert response.status_code == 302
    assert client.get("/")["Location"] == "/account/2fa/"
    # allauth asks for the password again before a factor is added.
    response = client.get("/account/2fa/totp/activate/")
    assert response.status_code == 302 and response["Location"].startswith("/account/reauthenticate/")
    response = client.post(response["Location"], {"password": TEST_PASSWORD})
    assert response.status_code == 302
    page = client.get("/account/2fa/totp/activate/")
    assert page.status_code == 200
    secret = page.context["form"].secret
    assert secret in page.content.decode()
    wrong = client.post(
        "/account/2fa/totp/activate/", {"code": "000000" if totp_code(secret) != "000000" else "111111"}
    )
    assert wrong.status_code == 200 and "Code incorrect" in wrong.content.decode()
    code = totp_code(secret)
    response = client.post("/account/2fa/totp/activate/", {"code": code})
    assert response.status_code == 302 and response["Location"] == "/account/2fa/recovery-codes/"
    assert Authenticator.objects.filter(user=user, type="totp").exists()
    assert Authenticator.objects.filter(user=user, type="recovery_codes").exists()
    codes_page = client.get("/account/2fa/recovery-codes/")
    assert codes_page.status_code == 200
    reached = client.get("/", follow=True)
    assert reached.status_code == 200
    assert all("/account/2fa/" not in url for url, _ in reached.redirect_chain)
    assert _actions(user, action="auth.second_factor.added")
    # The code typed to enrol is spent: it can't sign in again.
    client.post("/logout/")
    assert sign_in(client, "new@example.org", code=code).status_code == 200


def test_enrolment_sent_twice_at_once_is_not_a_500(
    transactional_db: None, organisation: Organisation, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """« Activer » clicked twice (or the page sent again after a slow answer): the second
    request checked the code before the first had saved the factor, then failed on the
    one-TOTP-per-account constraint, a 500 shown to the practitioner at first sign-in. The
    code is spent by the first; the second is refused like any used code."""
    from allauth.mfa.totp.internal.auth import TOTP

    user = make_user(organisation, email="new@example.org", second_factor=False)
    sign_in(client, "new@example.org")
    client.post(client.get("/account/2fa/totp/activate/")["Location"], {"password": TEST_PASSWORD})
    secret = client.get("/account/2fa/totp/activate/").context["form"].secret
    code = totp_code(secret)
    real, second = TOTP.activate.__func__, []  # type: ignore[attr-defined]

    def activate(cls: type[TOTP], user: Any, secret: str) -> TOTP:
        if not second:  # the second click arrives as the first saves its factor
            second.append(None)
            second[0] = client.post("/account/2fa/totp/activate/", {"code": code})
        return real(cls, user, secret)  # type: ignore[no-any-return]

    monkeypatch.setattr(TOTP, "activate", classmethod(activate))
    first = client.post("/account/2fa/totp/activate/", {"code": code})
    assert first.status_code == 302 and first["Location"] == "/account/2fa/recovery-codes/"
    assert second[0].status_code == 200 and "Code incorrect" in second[0].content.decode()
    assert Authenticator.objects.filter(user=user, type="totp").count() == 1


def test_last_second_factor_cannot_be_removed(organisation: Organisation, client: Client) -> None:
    user = make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    client.post("/account/reauthenticate/", {"password": TEST_PASSWORD})
    page = client.get("/account/2fa/totp/deactivate/")
    assert page.status_code == 200
    response = client.post("/account/2fa/totp/deactivate/")
    assert response.status_code == 200
    assert "seul second facteur" in response.content.decode()
    assert Authenticator.objects.filter(user=user, type="totp").exists()


def test_recovery_codes_alone_are_not_a_second_factor(organisation: Organisation, client: Client) -> None:
    """They stand in for the authenticator app once in a while: they do not let the app be
    removed, nor open the pages without it."""
    user = make_user(organisation, email="doc@example.org")
    RecoveryCodes.activate(user)
    sign_in(client, "doc@example.org", code=totp_code())
    client.post("/account/reauthenticate/", {"password": TEST_PASSWORD})
    response = client.post("/account/2fa/totp/deactivate/")
    assert "seul second facteur" in response.content.decode()
    assert Authenticator.objects.filter(user=user, type="totp").exists()
    Authenticator.objects.filter(user=user, type="totp").delete()  # removed some other way
    assert client.get("/account/")["Location"] == "/account/2fa/"


def test_second_factor_changes_are_audited(transactional_db: None, organisation: Organisation, client: Client) -> None:
    user = make_user(organisation, email="doc@example.org")
    RecoveryCodes.activate(user)
    sign_in(client, "doc@example.org", code=totp_code())
    client.post("/account/reauthenticate/", {"password": TEST_PASSWORD})
    response = client.post("/account/2fa/recovery-codes/generate/")
    assert response.status_code == 302
    assert "auth.second_factor.reset" in _actions(user)


# --- Attempt limits --------------------------------------------------------------------


def test_account_locks_after_five_failures_and_says_what_to_do(organisation: Organisation) -> None:
    make_user(organisation, email="doc@example.org")
    for attempt in range(5):
        # Different addresses: only the per-account limit applies.
        response = sign_in(Client(), "doc@example.org", "wrong password !", REMOTE_ADDR=f"10.0.0.{attempt + 1}")
        assert "verrouillé" not in response.content.decode()
    response = sign_in(Client(), "doc@example.org", REMOTE_ADDR="10.0.0.99")  # even the right password
    body = response.content.decode()
    assert response.status_code == 200
    assert "verrouillé pour 5 minutes" in body and "administrateur" in body
    assert AuditEvent.objects.filter(action="auth.login", outcome="denied").exists()


def test_second_factor_attempts_are_limited_per_account(organisation: Organisation) -> None:
    make_user(organisation, email="doc@example.org")
    client = Client()
    client.post("/login/", {"login": "doc@example.org", "password": TEST_PASSWORD})
    wrong = f"{(int(totp_code()) + 7) % 1_000_000:06d}"
    for _attempt in range(5):
        client.post("/account/2fa/authenticate/", {"code": wrong})
    response = client.post("/account/2fa/authenticate/", {"code": totp_code()})
    assert response.status_code == 200
    assert "verrouillé" in response.content.decode()


def test_second_factor_attempts_refused_by_a_limit_are_audited(organisation: Organisation, settings: Any) -> None:
    """A code refused because the account is locked is what an attacker holding the password
    keeps sending: like a refused password, it is written to the trail, not dropped."""
    user = make_user(organisation, email="doc@example.org")
    client = Client()
    client.post("/login/", {"login": "doc@example.org", "password": TEST_PASSWORD})
    wrong = f"{(int(totp_code()) + 7) % 1_000_000:06d}"
    for _attempt in range(5):
        client.post("/account/2fa/authenticate/", {"code": wrong})
    assert "verrouillé" in client.post("/account/2fa/authenticate/", {"code": wrong}).content.decode()
    events = AuditEvent.objects.filter(action="auth.second_factor", target_id=str(user.pk)).order_by("seq")
    assert [e.outcome for e in events] == ["failure"] * 5 + ["denied"]
    assert events.last().details == {"reason": "account_or_address_limit", "reauthentication": False}  # type: ignore[union-attr]

    settings.PLI_GLOBAL_RATE_LIMITS = {**settings.PLI_GLOBAL_RATE_LIMITS, "second_factor_failed": "0/m"}
    other = make_user(organisation, email="other@example.org")
    response = sign_in(Client(), "other@example.org", code=totp_code(), REMOTE_ADDR="203.0.113.20")
    assert "codes erronés" in response.content.decode()
    event = AuditEvent.objects.filter(action="auth.second_factor", target_id=str(other.pk)).latest("seq")
    assert (event.outcome, event.details["reason"]) == ("denied", "instance_limit")


def test_attempts_are_limited_per_address(organisation: Organisation) -> None:
    for number in range(11):
        make_user(organisation, email=f"person{number}@example.org")
    for number in range(10):
        sign_in(Client(), f"person{number}@example.org", "wrong password !", REMOTE_ADDR="192.0.2.7")
    response = sign_in(Client(), "person10@example.org", REMOTE_ADDR="192.0.2.7")
    assert "verrouillé" in response.content.decode() or response.status_code == 429
    # Another address is not affected.
    assert sign_in(Client(), "person10@example.org", REMOTE_ADDR="192.0.2.8")["Location"].startswith("/account/2fa/")


def test_instance_wide_limit_stops_spraying(organisation: Organisation, settings: Any) -> None:
    settings.PLI_GLOBAL_RATE_LIMITS = {**settings.PLI_GLOBAL_RATE_LIMITS, "login_failed": "3/m"}
    for number in range(4):
        make_user(organisation, email=f"person{number}@example.org")
    for number in range(3):
        sign_in(Client(), f"person{number}@example.org", "wrong password !", REMOTE_ADDR=f"198.51.100.{number}")
    response = sign_in(Client(), "person3@example.org", REMOTE_ADDR="198.51.100.50")
    body = response.content.decode()
    assert response.status_code == 200 and "nombre inhabituel" in body
    event = AuditEvent.objects.filter(action="auth.login", outcome="denied").latest("seq")
    assert event.details["reason"] == "instance_limit"


def test_successful_logins_do_not_count_against_the_instance(organisation: Organisation, settings: Any) -> None:
    settings.PLI_GLOBAL_RATE_LIMITS = {**settings.PLI_GLOBAL_RATE_LIMITS, "login_failed": "2/m"}
    make_user(organisation, email="doc@example.org")
    for number in range(4):
        response = sign_in(Client(), "doc@example.org", REMOTE_ADDR=f"203.0.113.{number}")
        assert response["Location"] == "/account/2fa/authenticate/"


def test_instance_wide_limit_on_second_factor_codes(organisation: Organisation, settings: Any) -> None:
    settings.PLI_GLOBAL_RATE_LIMITS = {**settings.PLI_GLOBAL_RATE_LIMITS, "second_factor_failed": "2/m"}
    for number in range(3):
        make_user(organisation, email=f"person{number}@example.org")
    wrong = f"{(int(totp_code()) + 3) % 1_000_000:06d}"
    for number in range(2):
        sign_in(Client(), f"person{number}@example.org", code=wrong, REMOTE_ADDR=f"203.0.113.{number}")
    response = sign_in(Client(), "person2@example.org", code=totp_code(), REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200 and "codes erronés" in response.content.decode()


def test_limits_live_in_the_shared_database_cache(settings: Any) -> None:
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert (
        "key" in settings.ACCOUNT_RATE_LIMITS["login_failed"] and "ip" in settings.ACCOUNT_RATE_LIMITS["login_failed"]
    )


# --- Password reset ----------------------------------------------------------------------


def test_password_reset_reveals_nothing_and_works(organisation: Organisation, smtp_server: Any) -> None:
    user = make_user(organisation, email="doc@example.org")
    known = Client().post("/account/password/reset/", {"email": "doc@example.org"})
    unknown = Client().post("/account/password/reset/", {"email": "stranger@example.org"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == "/account/password/reset/done/"
    done = Client().get("/account/password/reset/done/").content.decode()
    assert "Si cette adresse" in done
    mails = smtp_server.wait_for(1)
    time.sleep(0.2)
    assert len(smtp_server.messages) == 1 and mails[0].recipients == ["doc@example.org"]
    link = extract_link(mails[0].body, "/account/password/reset/key/")
    client = Client()
    form_page = client.get(urlsplit(link).path, follow=True)
    assert form_page.status_code == 200 and "Choisir un nouveau mot de passe" in form_page.content.decode()
    response = client.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else urlsplit(link).path,
        {"password1": "une toute nouvelle phrase", "password2": "une toute nouvelle phrase"},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("une toute nouvelle phrase")
    assert "auth.password.reset" in _actions(user)
    # The second factor is still required after a reset.
    assert sign_in(Client(), "doc@example.org", "une toute nouvelle phrase")["Location"] == "/account/2fa/authenticate/"


def test_password_reset_link_is_on_the_public_url_whatever_the_host(
    organisation: Organisation, smtp_server: Any, settings: Any
) -> None:
    # allauth built the link from the request's Host: with PLI_ALLOWED_HOSTS=* (or any extra
    # name someone else controls), a request sent with "Host: evil.example" mailed the
    # victim a link carrying their reset key to evil.example.
    settings.ALLOWED_HOSTS = ["*"]
    make_user(organisation, email="doc@example.org")
    Client(HTTP_HOST="evil.example").post("/account/password/reset/", {"email": "doc@example.org"})
    mails = smtp_server.wait_for(1)
    link = extract_link(mails[0].body, "/account/password/reset/key/")
    assert link.startswith(settings.PUBLIC_URL + "/account/password/reset/key/"), link
    assert "evil.example" not in mails[0].body


def test_password_reauthentication_is_audited_as_such(organisation: Organisation, client: Client) -> None:
    """Typing the password again unlocks what outlives the session (an API token, a new
    second factor): it is in the trail like a second-factor reauthentication, under the
    signed-in user, and a wrong one is not written as an anonymous failed sign-in."""
    user = make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    client.post("/account/reauthenticate/", {"password": "not the password"})
    client.post("/account/reauthenticate/", {"password": TEST_PASSWORD})
    events = AuditEvent.objects.filter(action="auth.reauthentication").order_by("seq")
    assert [(e.actor_id, e.target_id, e.outcome, e.details) for e in events] == [
        (str(user.pk), str(user.pk), "failure", {"method": "password"}),
        (str(user.pk), str(user.pk), "success", {"method": "password"}),
    ]
    assert not AuditEvent.objects.filter(action="auth.login", outcome="failure").exists()
    # Locked after five wrong ones: refused, and recorded as such, not as a sign-in.
    for _attempt in range(5):
        client.post("/account/reauthenticate/", {"password": "not the password"})
    assert "verrouillé" in client.post("/account/reauthenticate/", {"password": TEST_PASSWORD}).content.decode()
    last = AuditEvent.objects.filter(action="auth.reauthentication").latest("seq")
    assert (last.actor_id, last.outcome, last.details["reason"]) == (str(user.pk), "denied", "account_or_address_limit")
    assert not AuditEvent.objects.filter(action="auth.login", outcome="denied").exists()


def test_wrong_current_passwords_on_the_change_page_lock_and_are_audited(
    organisation: Organisation, client: Client
) -> None:
    """The password change page checks the current password: with a session left open it
    was a password oracle outside the account's lockout (5 tries a minute, for ever) and
    outside the trail. Its wrong guesses now count and are recorded like any other."""
    user = make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    new = "une toute nouvelle phrase"
    for attempt in range(5):
        guess = {"oldpassword": f"guess number {attempt}", "password1": new, "password2": new}
        assert client.post("/account/password/change/", guess).status_code == 200
    failures = AuditEvent.objects.filter(action="auth.reauthentication", outcome="failure", target_id=str(user.pk))
    assert failures.count() == 5
    # The account is now locked, as after five wrong passwords at sign-in.
    assert "verrouillé" in sign_in(Client(), "doc@example.org", REMOTE_ADDR="10.9.9.9").content.decode()


def test_password_reset_requests_are_limited_per_address_book_entry(organisation: Organisation) -> None:
    make_user(organisation, email="doc@example.org")
    for _attempt in range(3):
        assert Client().post("/account/password/reset/", {"email": "doc@example.org"}).status_code == 302
    assert Client().post("/account/password/reset/", {"email": "doc@example.org"}).status_code == 429


def test_weak_new_passwords_are_refused(organisation: Organisation, client: Client) -> None:
    make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    for weak in ("court", "motdepasse2024!", "azertyuiop123", "doc@example.org1"):
        response = client.post(
            "/account/password/change/", {"oldpassword": TEST_PASSWORD, "password1": weak, "password2": weak}
        )
        assert response.status_code == 200, weak
        assert 'aria-invalid="true"' in response.content.decode()


def test_password_change_is_audited(organisation: Organisation, client: Client) -> None:
    user = make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    new = "un autre matin tranquille"
    response = client.post(
        "/account/password/change/", {"oldpassword": TEST_PASSWORD, "password1": new, "password2": new}
    )
    assert response.status_code == 302
    assert "auth.password.changed" in _actions(user)


def test_passwords_are_hashed_with_argon2id(organisation: Organisation, settings: Any) -> None:
    from pli import settings as project_settings

    settings.PASSWORD_HASHERS = project_settings.PASSWORD_HASHERS
    user = make_user(organisation)
    assert user.password.startswith("argon2$argon2id$")


# --- Sessions ----------------------------------------------------------------------------


def test_sessions_expire_after_thirty_idle_minutes(organisation: Organisation, client: Client, settings: Any) -> None:
    assert settings.PLI_SESSION_IDLE_MINUTES == 30
    assert settings.SESSION_COOKIE_AGE == 30 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    assert client.get("/account/").status_code == 200
    session = Session.objects.get(session_key=client.session.session_key)
    assert (session.expire_date - timezone.now()).total_seconds() == pytest.approx(1800, abs=5)
    # 31 minutes later, without activity:
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - timezone.timedelta(minutes=1))
    assert client.get("/account/")["Location"].startswith("/login/")


def test_a_session_ends_twelve_hours_after_sign_in_however_active(
    organisation: Organisation, client: Client, settings: Any
) -> None:
    assert settings.PLI_SESSION_MAX_HOURS == 12
    user = make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    assert client.get("/account/").status_code == 200
    session = client.session
    session["pli_signed_in_at"] -= 11 * 3600  # used all day: still open
    session.save()
    assert client.get("/account/").status_code == 200
    session = client.session
    session["pli_signed_in_at"] -= 3600 + 60
    session.save()
    assert client.get("/account/")["Location"].startswith("/login/")
    assert "auth.session_expired" in _actions(user)
    assert client.get("/account/")["Location"].startswith("/login/")  # signed out for good


def test_logout_ends_the_session(organisation: Organisation, client: Client) -> None:
    user = make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    key = client.session.session_key
    assert client.post("/logout/").status_code == 302
    assert not Session.objects.filter(session_key=key).exists()
    assert client.get("/account/").status_code == 302
    assert "auth.logout" in _actions(user)


def test_user_sees_and_ends_other_sessions(organisation: Organisation) -> None:
    user = make_user(organisation, email="doc@example.org")
    laptop, phone, tablet = (
        Client(HTTP_USER_AGENT="Laptop"),
        Client(HTTP_USER_AGENT="Phone"),
        Client(HTTP_USER_AGENT="Tablet"),
    )
    sign_in(laptop, "doc@example.org", code=totp_code(TEST_TOTP_SECRET))
    for device in (phone, tablet):
        device.post("/login/", {"login": "doc@example.org", "password": TEST_PASSWORD})
        RecoveryCodes.activate(user) if not Authenticator.objects.filter(
            user=user, type="recovery_codes"
        ).exists() else None
        code = RecoveryCodes(Authenticator.objects.get(user=user, type="recovery_codes")).get_unused_codes()[0]
        assert device.post("/account/2fa/authenticate/", {"code": code})["Location"] == "/"
    page = laptop.get("/account/sessions/")
    body = page.content.decode()
    assert page.status_code == 200 and "Phone" in body and "Tablet" in body
    phone_session = next(s for s in page.context["sessions"] if s.user_agent == "Phone")
    assert laptop.post("/account/sessions/", {"session": phone_session.pk}).status_code == 302
    assert phone.get("/account/").status_code == 302
    assert tablet.get("/account/").status_code == 200
    laptop.post("/account/sessions/", {"session": "others"})
    assert tablet.get("/account/").status_code == 302
    assert laptop.get("/account/").status_code == 200
    assert _actions(user, action="auth.sessions.ended") == ["auth.sessions.ended"] * 2


def test_cannot_end_someone_elses_session(organisation: Organisation) -> None:
    make_user(organisation, email="one@example.org")
    make_user(organisation, email="two@example.org")
    one, two = Client(), Client()
    sign_in(one, "one@example.org", code=totp_code())
    two.post("/login/", {"login": "two@example.org", "password": TEST_PASSWORD})
    other = User.objects.get(email="two@example.org")
    RecoveryCodes.activate(other)
    code = RecoveryCodes(Authenticator.objects.get(user=other, type="recovery_codes")).get_unused_codes()[0]
    two.post("/account/2fa/authenticate/", {"code": code})
    from allauth.usersessions.models import UserSession

    their_session = UserSession.objects.get(user=other)
    one.post("/account/sessions/", {"session": their_session.pk})
    assert two.get("/account/").status_code == 200


def test_too_many_sign_in_requests_get_the_explained_429_page(organisation: Organisation, settings: Any) -> None:
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login": "2/m/ip"}
    make_user(organisation, email="doc@example.org")
    for _attempt in range(2):
        Client().post("/login/", {"login": "doc@example.org", "password": "wrong password !"}, REMOTE_ADDR="192.0.2.9")
    response = Client().post(
        "/login/", {"login": "doc@example.org", "password": TEST_PASSWORD}, REMOTE_ADDR="192.0.2.9"
    )
    assert response.status_code == 429
    body = response.content.decode()
    assert "Trop de tentatives" in body and "Patientez quelques minutes" in body


def test_deactivated_account_is_told_to_contact_the_administrator(organisation: Organisation, admin: User) -> None:
    from pli.accounts.models import Membership
    from pli.accounts.services import remove_member

    member = make_user(organisation, email="gone@example.org")
    remove_member(Membership.objects.get(user=member), actor=admin)
    response = sign_in(Client(), "gone@example.org", follow=True)
    body = response.content.decode()
    assert "désactivé" in body and "administrateur" in body
    assert response.wsgi_request.user.is_anonymous


@pytest.mark.parametrize("value,expected", [("45", "2700"), ("", "1800")])
def test_idle_timeout_is_configurable(tmp_path: Any, value: str, expected: str) -> None:
    import subprocess
    import sys

    code = "import django; django.setup(); from django.conf import settings as s; print(s.SESSION_COOKIE_AGE)"
    env = {
        "PLI_DATA_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "pli.settings",
        "PLI_SESSION_IDLE_MINUTES": value,
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected


def test_bad_idle_timeout_is_one_clear_line(tmp_path: Any) -> None:
    import subprocess
    import sys

    env = {"PLI_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PLI_SESSION_IDLE_MINUTES": "soon"}
    result = subprocess.run(
        [sys.executable, "-c", "from pli.cli import main; main()", "check"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "PLI_SESSION_IDLE_MINUTES must be a whole number of minutes" in result.stderr


def test_there_is_no_open_sign_up(db: None, client: Client) -> None:
    for path in ("/signup/", "/account/signup/", "/accounts/signup/", "/account/email/"):
        assert client.get(path).status_code == 404, path
    from pli.accounts.adapter import AccountAdapter

    assert AccountAdapter().is_open_for_signup(None) is False  # type: ignore[arg-type]


def test_removing_a_factor_when_another_remains_is_audited(
    transactional_db: None, organisation: Organisation, client: Client
) -> None:
    user = make_user(organisation, email="doc@example.org")
    Authenticator.objects.create(
        user=user, type=Authenticator.Type.WEBAUTHN, data={"name": "Clé USB", "credential": {}}
    )
    sign_in(client, "doc@example.org", code=totp_code())
    client.post("/account/reauthenticate/", {"password": TEST_PASSWORD})
    response = client.post("/account/2fa/totp/deactivate/")
    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=user, type="totp").exists()
    assert "auth.second_factor.removed" in _actions(user)
    # The security key is now the last factor: it can't be removed.
    key = Authenticator.objects.get(user=user, type="webauthn")
    response = client.post(f"/account/2fa/webauthn/keys/{key.pk}/remove/")
    assert response.status_code == 302
    assert Authenticator.objects.filter(pk=key.pk).exists()
    assert "seul second facteur" in client.get(response["Location"]).content.decode()


def test_a_refused_second_factor_code_is_typed_again_not_corrected(organisation: Organisation, client: Client) -> None:
    """The wrong code came back in the field, with the focus: the next code, typed at once,
    joined the old one's digits and was refused too, counting towards the lockout."""
    make_user(organisation, email="doc@example.org")
    wrong = f"{(int(totp_code()) + 1) % 10**6:06d}"
    response = sign_in(client, "doc@example.org", code=wrong)
    assert response.status_code == 200
    page = response.content.decode()
    field = re.search(r'<input type="text" name="code"[^>]*>', page)
    assert field is not None and "autofocus" in field.group(0) and 'aria-invalid="true"' in field.group(0)
    assert "value=" not in field.group(0), field.group(0)
    assert wrong not in page


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("fr", ["Bonjour,", "Votre mot de passe a été modifié.", "l\u2019administrateur de votre organisation"]),
        ("en", ["Hello,", "Your password has been changed.", "your organisation's administrator"]),
    ],
)
def test_the_security_notice_after_a_change_speaks_as_pli(
    organisation: Organisation, client: Client, mailoutbox: list[Any], language: str, expected: list[str]
) -> None:
    """The e-mail that tells a user their password or second factor changed was allauth's:
    « Bonjour, c'est pli.example.org ! » … « Merci d'utiliser pli.example.org ! » (the host
    name where Pli is meant), and an unclear « prenez les mesures de sécurité qui
    s'imposent » where the user needs to know whom to tell."""
    make_user(organisation, email="doc@example.org")
    sign_in(client, "doc@example.org", code=totp_code())
    new = "une toute nouvelle phrase"
    response = client.post(
        "/account/password/change/",
        {"oldpassword": TEST_PASSWORD, "password1": new, "password2": new},
        HTTP_ACCEPT_LANGUAGE=language,
    )
    assert response.status_code == 302
    (mail,) = mailoutbox
    for text in expected:
        assert text in mail.body, mail.body
    assert "testserver" not in mail.body and "c'est" not in mail.body and "Hello from" not in mail.body
    assert mail.body.rstrip().endswith("-- \nPli"), mail.body


def test_allauth_texts_about_the_second_factor_use_pli_words_in_french() -> None:
    """The security notice's subject read « Nouveaux codes de récupération générés », where
    every Pli page says « codes de secours », and the flash and subject after setting up
    the app « Application d'authentification activée », with the ASCII apostrophe."""
    from django.template.loader import render_to_string
    from django.utils import translation

    context = {"ip": "203.0.113.5", "user_agent": "Firefox", "timestamp": "", "user": None}
    with translation.override("fr"):
        texts = {
            name: render_to_string(name, context).strip()
            for name in (
                "mfa/email/recovery_codes_generated_subject.txt",
                "mfa/email/recovery_codes_generated_message.txt",
                "mfa/messages/recovery_codes_generated.txt",
                "mfa/email/totp_activated_subject.txt",
                "mfa/messages/totp_activated.txt",
                "mfa/email/totp_deactivated_message.txt",
            )
        }
    assert texts["mfa/email/recovery_codes_generated_subject.txt"] == "Nouveaux codes de secours générés"
    notice = texts["mfa/email/recovery_codes_generated_message.txt"]
    assert "Une nouvelle série de codes de secours a été générée." in notice
    assert texts["mfa/email/totp_activated_subject.txt"] == "Application d\u2019authentification activée"
    assert texts["mfa/messages/totp_activated.txt"] == "Application d\u2019authentification activée."
    for name, text in texts.items():
        assert "récupération" not in text and "'" not in text, (name, text)


IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
WINDOWS_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
CHROMEBOOK = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("user_agent", "language", "shown"),
    [
        (IPHONE, "fr", "Mobile Safari 17 sur iOS 17 (iPhone)"),
        (WINDOWS_FIREFOX, "fr", "Firefox 133 sur Windows 10"),
        (WINDOWS_FIREFOX, "en", "Firefox 133 on Windows 10"),
        ("curl/8.5.0", "fr", "curl 8"),
        (MAC_SAFARI, "fr", "Safari 17 sur macOS"),
        (CHROMEBOOK, "fr", "Chrome 131 sur ChromeOS"),
        ("Pli-Desktop/1.2 (Windows)", "fr", "Pli-Desktop/1.2 (Windows)"),
        ("Logiciel-du-cabinet", "fr", "Logiciel-du-cabinet"),
        ("", "fr", "Appareil inconnu"),
    ],
)
def test_the_sessions_list_names_browsers_and_systems(
    organisation: Organisation, user_agent: str, language: str, shown: str
) -> None:
    """The list showed raw user agent strings, cut at 80 characters: a GP could not tell
    which line was her phone before ending the others."""
    make_user(organisation, email="doc@example.org")
    client = Client(HTTP_USER_AGENT=user_agent)
    sign_in(client, "doc@example.org", code=totp_code(TEST_TOTP_SECRET))
    client.cookies["django_language"] = language
    body = client.get("/account/sessions/").content.decode()
    cell = body.split("<tbody>", 1)[1].split("</td>", 1)[0]
    assert f">{shown}</span>" in cell
    if user_agent:
        assert f'title="{user_agent}"' in cell  # the whole string, for whoever needs it
