"""WebAuthn in a real browser, with Chromium's virtual authenticator: allauth's scripts run
under the CSP (static files, JSON data blocks), a key is registered, then used to sign in."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from django.core.cache import cache

from pli.testing.accounts import TEST_PASSWORD, make_organisation, make_user, totp_code


@pytest.mark.browser
def test_register_and_sign_in_with_a_security_key(page: Any, live_server: Any) -> None:
    cache.clear()
    csp_violations: list[str] = []
    page.on("console", lambda msg: csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    # WebAuthn needs a domain as relying party: "localhost", not an IP address.
    assert "localhost" in live_server.url
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    user = make_user(make_organisation("Cabinet des Clés"), email="cle@example.org")

    page.goto("/login/")
    page.fill("#id_login", user.email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]:has-text('Se connecter')")
    page.fill("#id_code", totp_code())
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_url("**/messages/**/inbox/")

    page.goto("/account/2fa/webauthn/add/")
    if "/reauthenticate/" in page.url:
        page.fill("#id_password", TEST_PASSWORD)
        page.click("button:has-text('Confirmer')")
        page.wait_for_url("**/account/2fa/webauthn/add/")
    page.fill("#id_name", "Clé USB")
    with page.expect_navigation():
        page.click("#mfa_webauthn_add")  # the browser talks to the key, then submits the form
    assert "Clé de sécurité ajoutée" in page.locator("main").inner_text()
    assert Authenticator.objects.filter(user=user, type="webauthn").count() == 1

    page.click("button:has-text('Se déconnecter')")
    page.wait_for_url("**/login/")
    page.fill("#id_login", user.email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]:has-text('Se connecter')")
    with page.expect_navigation():
        page.click("#mfa_webauthn_authenticate")
    page.wait_for_url("**/messages/**/inbox/")
    assert csp_violations == []
