"""A new member's whole path in a real browser: invitation e-mail (from a real SMTP server
on loopback) → link → password → authenticator app → sign out → sign in with password and
code → sign out."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache

from pli.accounts.models import Mailbox, User
from pli.testing.accounts import TEST_PASSWORD, make_organisation, make_user, totp_code

NEW_PASSWORD = "la marée monte doucement ce soir"


@pytest.mark.browser
def test_invitation_to_second_sign_in(page: Any, live_server: Any, smtp_server: Any) -> None:
    cache.clear()
    csp_violations: list[str] = []
    page.on("console", lambda msg: csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    organisation = make_organisation("Maison de santé des Quais")
    admin = make_user(organisation, role="admin", email="admin@quais.example.org", first_name="Alice")

    # The administrator signs in and sends the invitation.
    page.goto("/organisations/")
    assert "/login/" in page.url
    page.fill("#id_login", admin.email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]:has-text('Se connecter')")
    page.fill("#id_code", totp_code())
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_url(f"**/organisations/{organisation.slug}/members/")
    page.click("text=Inviter une personne")
    page.fill("#id_email", "lea.bernard@example.org")
    page.select_option("#id_role", "practitioner")
    page.fill("#id_first_name", "Léa")
    page.click("button:has-text('Envoyer l’invitation')")  # noqa: RUF001
    assert page.locator(".flash").inner_text().startswith("Invitation envoyée à lea.bernard@example.org")
    page.click("button:has-text('Se déconnecter')")
    page.wait_for_url("**/login/")

    # The invitee opens the link from the e-mail.
    (mail,) = smtp_server.wait_for(1)
    assert mail.recipients == ["lea.bernard@example.org"]
    link = re.search(r"http://\S+/invitation/\S+/", mail.body)
    assert link is not None
    page.goto(urlsplit(link.group(0)).path)
    assert page.locator("h1").inner_text() == "Créer votre compte"
    assert page.input_value("#id_first_name") == "Léa"
    page.fill("#id_last_name", "Bernard")
    page.fill("#id_profession", "Médecin")
    page.fill("#id_specialty", "Pédiatrie")
    page.fill("#id_rpps", "10012345673")
    page.fill("#id_password1", NEW_PASSWORD)
    page.fill("#id_password2", NEW_PASSWORD)
    page.click("button:has-text('Créer mon compte')")

    # Straight to the mandatory second factor; nothing else is reachable.
    page.wait_for_url("**/account/2fa/")
    assert page.locator("#second-factor-required").is_visible()
    page.goto("/account/")
    page.wait_for_url("**/account/2fa/")
    page.click("text=Configurer une application d’authentification")  # noqa: RUF001
    page.wait_for_url("**/account/2fa/totp/activate/")
    qr = page.locator("img.totp-qr")
    assert qr.evaluate("img => img.naturalWidth") > 0
    secret = page.locator("#totp-secret").inner_text().strip()
    enrolment_code = totp_code(secret)
    page.fill("#id_code", enrolment_code)
    page.click("button:has-text('Activer')")
    page.wait_for_url("**/account/2fa/recovery-codes/")
    assert page.locator("#recovery_codes li").count() == 10
    page.click("text=Je les ai conservés — continuer")
    page.goto("/account/")
    assert "lea.bernard@pli.localhost" in page.locator("main").inner_text()
    page.click("button:has-text('Se déconnecter')")
    page.wait_for_url("**/login/")

    # Sign in again: password, then a fresh code (the enrolment code is spent; the next
    # 30-second step's code is accepted, as from a phone whose clock runs a little ahead).
    page.fill("#id_login", "lea.bernard@example.org")
    page.fill("#id_password", NEW_PASSWORD)
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_url("**/account/2fa/authenticate/")
    next_code = totp_code(secret, time.time() + 30)
    assert next_code != enrolment_code
    page.fill("#id_code", next_code)
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_url("**/messages/**/inbox/")
    page.goto("/account/")
    assert "Léa Bernard" in page.locator("h2#identity-title").inner_text()
    page.click("button:has-text('Se déconnecter')")
    page.wait_for_url("**/login/")
    page.goto("/account/")
    assert "/login/" in page.url

    user = User.objects.get(email="lea.bernard@example.org")
    assert user.rpps == "10012345673"
    assert Mailbox.objects.get(owner=user).address == "lea.bernard@pli.localhost"
    assert csp_violations == []
