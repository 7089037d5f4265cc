from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from pli.accounts.models import User
from pli.core import public
from pli.testing.accounts import enrol_totp


def test_healthz_is_public_and_reports_ready(db: None, client: Client, settings: Any) -> None:
    settings.PLI_DISK_MIN_FREE_MB = 0  # whatever the test machine's disk holds
    response = client.get("/healthz")
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["status"] == "ok"
    assert body["database"] == "ok" and body["keys"] == "ok" and body["disk"] == "ok"
    assert response["Cache-Control"] == "no-store"
    assert body["mode"] == "development"  # a monitor sees an instance started without PLI_ENV


def test_healthz_answers_a_head_probe(db: None, client: Client, settings: Any) -> None:
    # Load balancers and uptime monitors often probe with HEAD (HAProxy's
    # `option httpchk HEAD /healthz`): a 405 read as "down" for a healthy instance.
    settings.PLI_DISK_MIN_FREE_MB = 0
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
    # The view itself sends no body (the test client drops it; gunicorn logged a warning
    # at every probe for a body sent to a HEAD).
    from django.test import RequestFactory

    from pli.core.views import healthz

    answer = healthz(RequestFactory().head("/healthz"))
    assert answer.status_code == 200 and answer.content == b""


def test_healthz_blames_the_database_when_its_tables_are_missing(
    db: None, client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Started before `pli migrate`, the instance answered "database": "ok", "keys": "error"
    # and logged that the master keys did not load: the operator looked at the keys.
    from django.db import ProgrammingError

    from pli.core import keys

    def missing_table() -> bool:
        raise ProgrammingError('relation "pli_data_key" does not exist')

    settings.PLI_DISK_MIN_FREE_MB = 0
    monkeypatch.setattr(keys, "keyring_checked", missing_table)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["database"] == "error" and body["keys"] == "ok"
    assert "has `pli migrate` run?" in caplog.text


def test_healthz_reports_a_low_disk_without_failing(
    db: None, client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.PLI_DISK_MIN_FREE_MB = 0
    assert json.loads(client.get("/healthz").content)["disk"] == "ok"
    # More free space asked for than any disk has: the data directory's real disk is "low".
    settings.PLI_DISK_MIN_FREE_MB = 10**9
    for _ in range(2):
        response = client.get("/healthz")
        assert response.status_code == 200  # still serving: not taken out of a load balancer
        body = json.loads(response.content)
        assert body["status"] == "degraded" and body["disk"] == "low"
    # Said once when it becomes low, not at every probe.
    assert [r.levelname for r in caplog.records if "PLI_DISK_MIN_FREE_MB" in r.getMessage()] == ["WARNING"]
    settings.PLI_DISK_MIN_FREE_MB = 0
    body = json.loads(client.get("/healthz").content)
    assert body["status"] == "ok" and body["disk"] == "ok"


def test_healthz_says_nothing_of_the_mode_in_production(db: None, client: Client, settings: Any) -> None:
    settings.PLI_ENV = "production"
    assert "mode" not in json.loads(client.get("/healthz").content)


def test_pages_require_login_by_default(db: None, client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/")


def test_a_form_sent_after_the_session_ended_leads_back_to_its_page(db: None, client: Client) -> None:
    """An action button (archive, revoke...) clicked once the session had ended led, after
    signing in, to the action's URL, which answers GET with 405: the browser's bare error
    page. The sign-in now leads back to the page the form was on, saying nothing was done."""
    thread = "/messages/m/5f19d515-2554-4d9a-a93a-03261f603ec3/?mailbox=cc4e98cc-8b0c-437e-acae-c7eef2fac8ec"
    response = client.post(
        "/messages/m/5f19d515-2554-4d9a-a93a-03261f603ec3/move/",
        {"folder": "archive"},
        headers={"referer": f"http://testserver{thread}"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=" + quote(thread, safe="/")
    page = client.get(response["Location"])
    assert "Votre session a pris fin\u00a0: rien n\u2019a été fait." in page.content.decode()
    # Another site's page, or none: the sign-in leads home, not to the action.
    for headers in ({"referer": "https://elsewhere.example/page"}, {}):
        response = client.post("/shares/4f6f7d1e-0000-4000-8000-000000000000/revoke", headers=headers)
        assert response["Location"] == "/login/?next=/"
    # A page asked for still comes back after signing in.
    assert client.get("/shares/?status=locked")["Location"] == "/login/?next=/shares/%3Fstatus%3Dlocked"


def test_only_named_views_are_public() -> None:
    """Adding a public view must be a deliberate act: it has to be on the named list."""
    found: set[str] = set()

    def walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif getattr(pattern.callback, "login_required", True) is False:
                found.add(pattern.lookup_str)

    walk(get_resolver().url_patterns)
    assert found <= public.PUBLIC_VIEWS, f"public views not on the list: {found - public.PUBLIC_VIEWS}"


def test_security_headers_on_every_page(db: None, client: Client) -> None:
    response = client.get("/healthz")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "camera=()" in response["Permissions-Policy"]
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_hsts_and_secure_cookies_in_production(db: None, client: Client, settings: object, tmp_path: Path) -> None:
    from django.conf import settings as live

    assert live.SESSION_COOKIE_HTTPONLY and live.CSRF_COOKIE_HTTPONLY
    assert live.SESSION_COOKIE_SAMESITE == "Lax"
    # Production values are computed from PLI_ENV at start-up; check them via the config loader.
    import subprocess
    import sys

    code = (
        "import django, os; django.setup(); from django.conf import settings as s;"
        "print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.DEBUG)"
    )
    env = {
        "PLI_ENV": "production",
        "PLI_SECRET_KEY": "x" * 30 + "Zq8!mR2#vL9@xT4$wN6%aa",
        "PLI_MASTER_KEY": "1:" + base64.b64encode(os.urandom(32)).decode(),
        "PLI_PUBLIC_URL": "https://pli.example.fr",
        "PLI_EMAIL_URL": "smtp://127.0.0.1:25",
        "PLI_SMS_URL": "twilio://ACxxxxxxxx:secret@api.twilio.com?from=Pli",
        "PLI_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "pli.settings",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    hsts, session_secure, csrf_secure, debug = out.split()
    assert int(hsts) >= 31536000
    assert (session_secure, csrf_secure, debug) == ("True", "True", "False")


@pytest.mark.parametrize("language,text", [("fr", "Page introuvable"), ("en", "Page not found")])
def test_error_pages_are_translated_and_leak_nothing(db: None, client: Client, language: str, text: str) -> None:
    user = User.objects.create_user("doc@example.fr", password="irrelevant-pass-123")
    enrol_totp(user)  # without a second factor every page redirects to enrolment
    client.force_login(user)
    response = client.get("/no-such-page/secret-token", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 404
    body = response.content.decode()
    assert text in body
    assert "secret-token" not in body
    assert "Traceback" not in body
    for leak in ("SECRET_KEY", "INSTALLED_APPS", "DJANGO_SETTINGS_MODULE", "DEBUG"):
        assert leak not in body
    # Signed in, the page keeps the navigation: without it it looked as if they had been signed out.
    assert 'class="main-nav"' in body
    anonymous = Client().get("/no-such-page/", HTTP_ACCEPT_LANGUAGE=language)
    assert anonymous.status_code == 404 and 'class="main-nav"' not in anonymous.content.decode()


def test_server_error_page_reveals_nothing(db: None) -> None:
    from django.test import RequestFactory

    from pli.core.views import server_error

    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    body = response.content.decode()
    assert "Une erreur est survenue" in body
    assert "Traceback" not in body


def test_french_is_the_default_language(db: None, client: Client) -> None:
    user = User.objects.create_user("doc@example.fr", password="irrelevant-pass-123")
    enrol_totp(user)  # without a second factor every page redirects to enrolment
    client.force_login(user)
    body = client.get("/", follow=True).content.decode()
    assert 'lang="fr"' in body
    assert "Aller au contenu" in body


def test_page_titles_name_the_page_then_pli(db: None, client: Client) -> None:
    """The separator was never printed: "Se connecterPli"."""
    assert "<title>Se connecter · Pli</title>" in client.get("/login/").content.decode()


def test_static_assets_are_local(db: None, client: Client) -> None:
    user = User.objects.create_user("doc@example.fr", password="irrelevant-pass-123")
    enrol_totp(user)  # without a second factor every page redirects to enrolment
    client.force_login(user)
    body = client.get("/", follow=True).content.decode()
    assert "https://" not in body and "http://" not in body.replace('xmlns="http://www.w3.org', "")
    assert client.get("/static/pli/pli.css").status_code == 200


def test_forwarded_for_is_trusted_only_from_configured_proxies(settings: Any) -> None:
    from django.test import RequestFactory

    from pli.core.middleware import TrustedProxyMiddleware

    seen: list[str] = []

    def view(request: Any) -> Any:
        seen.append(request.META["REMOTE_ADDR"])
        return HttpResponse()

    factory = RequestFactory()
    forged = {"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}
    settings.PLI_TRUSTED_PROXIES = ()
    TrustedProxyMiddleware(view)(factory.get("/", **forged))
    settings.PLI_TRUSTED_PROXIES = ("10.0.0.0/8",)
    TrustedProxyMiddleware(view)(factory.get("/", **forged))
    proxied = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.5, 10.0.0.9"}
    TrustedProxyMiddleware(view)(factory.get("/", **proxied))
    assert seen == ["198.51.100.7", "198.51.100.7", "203.0.113.5"]


def test_a_patients_error_page_leads_back_to_their_link(db: None) -> None:
    # An expired form on a patient page (CSRF failure) and a mistyped address under the
    # link: "/" would be the professionals' sign-in, which means nothing to a patient.
    client = Client(enforce_csrf_checks=True)
    token = "AbC-123_xyz"
    for response in (
        client.post(f"/p/{token}", {"birth_date": "01/01/1980"}),
        client.get(f"/p/{token}/no-such-step"),
    ):
        assert response.status_code in (403, 404)
        body = response.content.decode()
        assert f'<input name="next" type="hidden" value="/p/{token}">' in body
        assert f'<a href="/p/{token}">Revenir à votre lien sécurisé</a>' in body
        assert "no-such-step" not in body
    # Anywhere else the error page still points home, never at the requested address.
    body = client.get("/px/AbC-123_xyz").content.decode()
    assert '<input name="next" type="hidden" value="/">' in body and "AbC-123" not in body


def test_the_error_title_never_validates_a_form_itself() -> None:
    # Some forms act when validated (sign-in authenticates, a second factor uses its code):
    # the page shell only reads the errors the view already found.
    from django import forms
    from django.template import Context

    from pli.core.templatetags.pli_pages import page_has_errors

    validated: list[str] = []

    class Acting(forms.Form):
        code = forms.CharField()

        def clean(self) -> dict[str, Any]:
            validated.append("clean")
            raise forms.ValidationError("refused")

    fresh = Acting({"code": "123456"})
    assert page_has_errors(Context({"form": fresh})) is False and validated == []
    assert not fresh.is_valid() and validated == ["clean"]
    assert page_has_errors(Context({"form": fresh})) is True and validated == ["clean"]
    given = Acting()  # an unbound form given its error by the view, as the compose page does
    given.cleaned_data = {}
    given.add_error("code", "refused")
    assert page_has_errors(Context({"form": given})) is True


def test_an_action_address_opened_by_hand_says_nothing_was_done_and_leads_back(db: None) -> None:
    # Django answered these with an empty 405: a blank page.
    from pli.testing.accounts import make_user

    user = make_user()
    client = Client(HTTP_ACCEPT_LANGUAGE="fr")
    client.force_login(user)
    response = client.get("/shares/00000000-0000-0000-0000-000000000000/revoke")
    assert response.status_code == 405 and response["Allow"] == "POST"
    body = response.content.decode()
    assert "Rien n\u2019a été fait" in body and '<a href="/">Retour à l\u2019accueil</a>' in body
    # A patient's step that takes only a POST (a bookmarked « nouveau code »): back to their link.
    token = "AbC-123_xyz"
    body = Client(HTTP_ACCEPT_LANGUAGE="fr").get(f"/p/{token}/code/new").content.decode()
    assert "Rien n\u2019a été fait" in body and f'<a href="/p/{token}">Revenir à votre lien sécurisé</a>' in body
    # The API says it in JSON, unchanged.
    api = client.get("/api/v1/shares/00000000-0000-0000-0000-000000000000/revoke")
    assert api.status_code in (401, 405) and api["Content-Type"].startswith("application/json")
