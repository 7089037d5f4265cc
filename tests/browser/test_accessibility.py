"""Automated accessibility checks (axe-core, WCAG 2.0/2.1 A and AA) on the pages people use:
the patient's, on a phone, and the practitioner's mailbox and shares, on a desktop screen.

Each group walks through its pages in one browser context and fails once, listing every
violation found on every page. axe cannot judge everything: what it misses on the patient
pages (errors tied to their field, focus, language, input modes, target sizes) is checked
here by hand."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from pli.accounts import demo as accounts_demo
from pli.accounts.models import User
from pli.messaging import demo as messaging_demo
from pli.sharing import demo as sharing_demo
from pli.sharing import services as sharing_services
from pli.sharing.services import MAX_BIRTH_DATE_FAILURES
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import Patient, last_code, make_share, run_tasks

PHONE = {"width": 375, "height": 667}
DESKTOP = {"width": 1280, "height": 800}


def _outboxes(settings: Any, tmp_path: Path) -> None:
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    settings.PLI_SMS_URL = f"file://{tmp_path / 'sms'}"


def _other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _outside_requests(context: Any) -> list[str]:
    """Filled with every request that leaves the machine (axe's script is injected, never
    fetched; the pages load nothing from elsewhere)."""
    outside: list[str] = []
    local = ("http://localhost", "http://127.0.0.1", "data:", "about:")
    context.on("request", lambda request: None if request.url.startswith(local) else outside.append(request.url))
    return outside


def _assert_error_tied_to_field(page: Any, field_id: str, error_id: str = "") -> None:
    """The refused field says so, names its error, and has the focus."""
    error_id = error_id or f"{field_id}_error"
    field = page.locator(f"#{field_id}")
    assert field.get_attribute("aria-invalid") == "true"
    described = (field.get_attribute("aria-describedby") or "").split()
    assert error_id in described, described
    assert page.locator(f"#{error_id}").inner_text().strip()
    # The browser applies autofocus once it has rendered the new page, which may come after
    # its load event: wait for it (a timeout if the focus never gets there).
    page.wait_for_function("id => document.activeElement && document.activeElement.id === id", arg=field_id)


# Run on every patient page, for what axe does not judge; each finding is reported with axe's.
_MANUAL_CHECKS = """() => {
    const problems = [];
    const visible = el => el.getClientRects().length && !el.closest('.visually-hidden');
    // Touch targets of at least 24 by 24 CSS px (WCAG 2.2's 2.5.8, not among axe's 2.1 rules).
    // A link inside a sentence is exempt, as the criterion says.
    const controls = 'a[href], button, input:not([type=hidden]), select, textarea, summary';
    for (const el of document.querySelectorAll(controls)) {
        if (!visible(el)) continue;
        const sentence = el.closest('p, li');
        if (el.tagName === 'A' && !el.classList.contains('button') && sentence
            && sentence.textContent.trim() !== el.textContent.trim()) continue;
        const r = el.getBoundingClientRect();
        if (r.width < 24 || r.height < 24)
            problems.push(`target ${Math.round(r.width)}x${Math.round(r.height)}: ${el.outerHTML.slice(0, 100)}`);
    }
    // A visible <label> for every field: axe accepts a placeholder instead, which disappears
    // as soon as one types.
    for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
        if (visible(el) && !el.labels.length) problems.push(`no label: ${el.outerHTML.slice(0, 100)}`);
    }
    return problems;
}"""


@pytest.mark.browser
def test_patient_pages_on_a_phone(browser: Any, live_server: Any, settings: Any, tmp_path: Path, axe: Any) -> None:
    cache.clear()
    _outboxes(settings, tmp_path)
    doctor = make_user(make_organisation("Cabinet des Lilas", city="Lyon"), first_name="Jeanne", last_name="Martin")
    _share, token = make_share(doctor, allow_reply=True)
    context = browser.new_context(
        base_url=live_server.url, locale="fr-FR", viewport=PHONE, is_mobile=True, has_touch=True
    )
    outside = _outside_requests(context)
    page = context.new_page()
    page.set_default_timeout(15_000)

    def audit(name: str) -> None:
        axe.check(page, name)
        axe.problems.extend(f"[{name}] {problem}" for problem in page.evaluate(_MANUAL_CHECKS))

    try:
        page.goto(f"/p/{token}")
        assert page.get_attribute("html", "lang") == "fr"
        # Digits from a phone's keypad; the browser may fill in the birth date it knows.
        birth_date = page.locator("#id_birth_date")
        assert birth_date.get_attribute("inputmode") == "numeric"
        assert birth_date.get_attribute("autocomplete") == "bday"
        audit("landing")

        birth_date.fill("01/01/1990")
        page.click("button[type=submit]:has-text('Continuer')")
        page.wait_for_selector("#id_birth_date_error")
        _assert_error_tied_to_field(page, "id_birth_date")
        audit("landing, wrong birth date")

        page.fill("#id_birth_date", "15021984")
        page.click("button[type=submit]:has-text('Continuer')")
        page.wait_for_url(f"**/p/{token}/code**")
        code = page.locator("#id_code")
        assert code.get_attribute("inputmode") == "numeric"
        assert code.get_attribute("autocomplete") == "one-time-code"
        audit("code")

        run_tasks()
        right_code = last_code()
        code.fill(_other_code(right_code))
        page.click("button[type=submit]:has-text('Ouvrir mes documents')")
        page.wait_for_selector("#id_code_error")
        _assert_error_tied_to_field(page, "id_code")
        audit("code, wrong code")

        page.fill("#id_code", right_code)
        page.click("button[type=submit]:has-text('Ouvrir mes documents')")
        page.wait_for_url(f"**/p/{token}/documents")
        assert page.locator("#id_text").count() == 1  # the reply form
        audit("documents, with the reply form")

        # An empty reply is refused: the message says why, and the box points to it.
        page.click("button[type=submit]:has-text('Envoyer ma réponse')")
        page.wait_for_selector("#reply-error")
        _assert_error_tied_to_field(page, "id_text", "reply-error")
        audit("documents, reply refused")

        # A file refused: its field has the focus, and the reason is beside it, on screen.
        page.fill("#id_text", "Voici la photo.")
        disguised = {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": b"MZ\x90\x00" + bytes(200)}
        page.set_input_files("#id_files", files=[disguised])
        page.click("button[type=submit]:has-text('Envoyer ma réponse')")
        page.wait_for_selector("#reply-error:has-text('photo.jpg')")
        _assert_error_tied_to_field(page, "id_files", "reply-error")
        shown = page.evaluate("document.getElementById('reply-error').getBoundingClientRect().toJSON()")
        assert shown["top"] >= 0 and shown["bottom"] <= PHONE["height"], shown
        audit("documents, file refused")

        # The language switch, from the refused reply's address (which takes only a POST):
        # back to the documents, in English, and the page says so.
        page.click(".lang-switch button[value=en]")
        page.wait_for_selector("html[lang=en]")
        assert page.url.endswith(f"/p/{token}/documents")
        assert "Your documents" in page.locator("h1").inner_text()
        audit("documents, in English")
        page.fill("#id_text", "Thank you, doctor.")
        page.click("form[action$='/reply'] button[type=submit]")
        page.wait_for_url("**/documents?replied=1")
        # The new page says at once that the reply went (a screen reader reads the focus). The
        # focus is the page's autofocus, applied once the page is rendered, which may come
        # after its load event when both cores are busy: waited for.
        page.wait_for_function(
            "() => document.activeElement && document.activeElement.textContent.trim() === 'Your reply has been sent.'"
        )
        audit("documents, reply sent")
        page.click(".patient-leave button")
        # The page answers the POST to …/leave, and its script at once makes the history entry
        # the link itself: waiting for …/leave raced with it.
        page.wait_for_selector("h1:has-text('You have left')")
        assert page.url.endswith(f"/p/{token}")
        audit("left")
        page.click(".lang-switch button[value=fr]")
        page.wait_for_selector("html[lang=fr]")
        assert page.url.endswith(f"/p/{token}")

        # A share locked by wrong birth dates, a revoked one, and a link that opens nothing.
        _locked, locked_token = make_share(doctor)
        patient = Patient(locked_token)
        refusals = [patient.birth_date("01/01/1990").status_code for _ in range(MAX_BIRTH_DATE_FAILURES)]
        assert refusals[-1] == 403, refusals
        page.goto(f"/p/{locked_token}")
        assert "verrouillé" in page.locator("h1").inner_text()
        audit("locked share")
        revoked, revoked_token = make_share(doctor)
        sharing_services.revoke(doctor, revoked.pk)
        page.goto(f"/p/{revoked_token}")
        assert "retiré" in page.locator("h1").inner_text()
        audit("revoked link")
        page.goto(f"/p/{secrets.token_urlsafe(32)}")
        audit("unknown link")
    finally:
        context.close()
    axe.assert_clean()
    assert outside == []


# A 375 px phone at 200 % zoom (WCAG 1.4.4 and 1.4.10): 188 CSS pixels across.
PHONE_ZOOMED = {"width": 188, "height": 667}

# What sticks out of the screen, or of its card: either way the patient has to scroll
# sideways, or cannot read or reach it at all.
_OVERFLOWS = """() => {
    const width = document.documentElement.clientWidth;
    const problems = [];
    if (document.documentElement.scrollWidth > width)
        problems.push(`page ${document.documentElement.scrollWidth} px wide for ${width}`);
    for (const el of document.querySelectorAll('main *')) {
        const r = el.getBoundingClientRect();
        if (!r.width || el.closest('.visually-hidden')) continue;
        const card = el.parentElement.closest('.card');
        const right = card ? card.getBoundingClientRect().right : width;
        if (r.right > right + 0.5)
            problems.push(`${Math.round(r.right - right)} px out: ${el.outerHTML.slice(0, 100)}`);
        // A word wider than its box (its text runs out, the box does not).
        else if (getComputedStyle(el).display !== 'inline' && el.scrollWidth > el.clientWidth + 1
                 && getComputedStyle(el).overflowX === 'visible')
            problems.push(`text ${el.scrollWidth - el.clientWidth} px out: ${el.outerHTML.slice(0, 100)}`);
    }
    return problems;
}"""


@pytest.mark.browser
def test_patient_pages_zoomed_on_a_phone_need_no_sideways_scrolling(
    browser: Any, live_server: Any, settings: Any, tmp_path: Path
) -> None:
    """Zoomed in, the reply's file picker pushed the page to 336 px (sideways scrolling of
    the whole page), and a long word, a button or the host name spilled out of its card."""
    cache.clear()
    _outboxes(settings, tmp_path)
    doctor = make_user(make_organisation("Cabinet des Lilas", city="Lyon"), first_name="Jeanne", last_name="Martin")
    _share, token = make_share(doctor, allow_reply=True)
    patient = Patient(token)
    assert patient.sign_in().status_code == 200
    context = browser.new_context(
        base_url=live_server.url, locale="fr-FR", viewport=PHONE_ZOOMED, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    try:
        page.goto(f"/p/{token}")
        page.click(".patient-help summary")  # the host name, shown when opened
        problems += [f"[landing] {problem}" for problem in page.evaluate(_OVERFLOWS)]
        cookie = patient.client.cookies["pli_patient"]
        context.add_cookies([{"name": "pli_patient", "value": cookie.value, "url": f"{live_server.url}/p/"}])
        page.goto(f"/p/{token}/documents")
        assert page.locator("#id_files").count() == 1
        problems += [f"[documents] {problem}" for problem in page.evaluate(_OVERFLOWS)]
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def _sign_in(page: Any, user: User, axe: Any) -> None:
    page.goto("/messages/")
    page.wait_for_url("**/login/**")
    axe.check(page, "sign-in")
    page.fill("#id_login", user.email)
    page.fill("#id_password", accounts_demo.DEMO_PASSWORD)
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_selector("#id_code")
    axe.check(page, "sign-in, second factor")
    page.fill("#id_code", accounts_demo.current_totp_code(accounts_demo.totp_secret(user) or ""))
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_url("**/messages/**/inbox/")


def _demo() -> tuple[Any, Any, User]:
    """The demo: an inbox with a read and an unread message, a thread with a patient banner
    and a PDF, and two patient shares; with its GP."""
    seeded = accounts_demo.seed_demo()
    assert seeded is not None
    sent = messaging_demo.seed_demo_messages(seeded.organisation)
    assert sent is not None
    assert sharing_demo.seed_demo_shares(seeded.organisation)
    return seeded, sent, User.objects.get(email=messaging_demo.GP)


@pytest.mark.browser
def test_practitioner_pages_on_a_desktop(
    browser: Any, live_server: Any, settings: Any, tmp_path: Path, axe: Any
) -> None:
    cache.clear()
    _outboxes(settings, tmp_path)
    _seeded, sent, gp = _demo()
    context = browser.new_context(base_url=live_server.url, locale="fr-FR", viewport=DESKTOP)
    outside = _outside_requests(context)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _sign_in(page, gp, axe)
        assert page.locator(".mail-row.is-unread").count() == 1
        axe.check(page, "inbox")
        # The sign-out button's words sat 4 px above the links' beside it (no padding where
        # they have it).
        text_tops = page.evaluate(
            """[...document.querySelectorAll('.main-nav a:not(:has(*)), .main-nav .logout-form button')]
                .filter(e => e.getClientRects().length).map(e => {
                const range = document.createRange(); range.selectNodeContents(e);
                return range.getBoundingClientRect().top; })"""
        )
        assert max(text_tops) - min(text_tops) < 1, text_tops
        # "Skip to content" skips the mailboxes' links too: the next Tab is in the folder.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        assert page.evaluate("!!document.activeElement.closest('.mail-main')"), page.evaluate(
            "document.activeElement.outerHTML"
        )

        page.click("text=Écrire un message")
        page.wait_for_url("**/messages/compose/**")
        axe.check(page, "compose")
        page.fill("#id_subject", "Sans destinataire")
        page.click("#send-button")
        page.wait_for_selector("#id_to_error")
        # Refused by XHR, the page stays: its title must say so as a reloaded one would.
        assert page.title().startswith("Erreur\u00a0: Écrire un message"), page.title()
        axe.check(page, "compose, refused")

        # A search's results, ticked like a folder's list, each saying which folder it is in.
        page.goto("/messages/")
        page.fill("#quick-q", "cardiologique")
        page.press("#quick-q", "Enter")
        page.wait_for_url("**/search/?s=*")
        assert page.locator(".mail-row-folder").count() >= 1
        assert page.locator("input[name=message][form=mail-selection]").count() >= 1
        axe.check(page, "search results")

        page.goto(f"/messages/m/{sent.opinion.pk}/")
        assert page.locator(".patient-banner").count() >= 1
        assert page.locator(".mail-attachments li").count() >= 1
        axe.check(page, "thread with a patient and an attachment")

        page.goto("/shares/new")
        axe.check(page, "new share")
        page.click("#share-submit")
        page.wait_for_selector("#id_patient_family_name_error")
        assert page.title().startswith("Erreur\u00a0: "), page.title()
        axe.check(page, "new share, refused")
        page.goto("/shares/")
        own = list(sharing_services.shares_for(gp))
        assert own and page.locator(".share-status").count() == len(own)
        axe.check(page, "shares list")
        page.goto(f"/shares/{own[0].pk}")
        axe.check(page, "share detail")
        active = next(s for s in own if s.effective_status() in ("sent", "opened", "downloaded"))
        page.goto(f"/shares/{active.pk}")
        page.click(".share-contacts summary")
        page.fill("#id_patient_mobile", "")
        page.fill("#id_patient_email", "")
        page.click(".share-contacts button[type=submit]")
        page.wait_for_selector("#id_patient_mobile_error")
        assert page.evaluate("document.activeElement.id") == "id_patient_mobile"
        assert page.title().startswith("Erreur\u00a0: "), page.title()
        axe.check(page, "share detail, contacts correction refused")
    finally:
        context.close()
    axe.assert_clean()
    assert outside == []


@pytest.mark.browser
def test_practitioner_pages_on_a_phone_need_no_sideways_scrolling(
    browser: Any, live_server: Any, settings: Any, tmp_path: Path, axe: Any
) -> None:
    """A GP reading a thread or a share on her phone had the whole page scroll sideways: the
    share's facts (a patient's e-mail address) and its notifications table, and a letter's
    receipts table, were wider than the screen; so were her account's facts (her e-mail
    address), her sessions and her organisation's members. And an INS or a date beside its
    label broke over two lines."""
    cache.clear()
    _outboxes(settings, tmp_path)
    seeded, sent, gp = _demo()
    context = browser.new_context(base_url=live_server.url, locale="fr-FR", viewport=PHONE, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    wide: list[str] = []
    try:
        _sign_in(page, gp, axe)
        pages = ["/messages/", "/messages/compose/", f"/messages/m/{sent.opinion.pk}/", "/shares/", "/shares/new"]
        pages += [f"/shares/{share.pk}" for share in sharing_services.shares_for(gp)]
        pages += ["/account/", "/account/sessions/", f"/organisations/{seeded.organisation.slug}/members/"]
        pages += [
            f"/organisations/{seeded.organisation.slug}/audit/",
            f"/organisations/{seeded.organisation.slug}/settings/",
        ]
        for url in pages:
            page.goto(url)
            width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            if width[0] > width[1]:
                wide.append(f"{url}: {width[0]} px wide for {width[1]}")
            # A short value (an INS, a date and time, an e-mail address) stays on one line.
            broken = page.evaluate(
                """[...document.querySelectorAll('.facts dd')].filter(d => d.textContent.trim().length <= 30)
                .filter(d => { const r = document.createRange(); r.selectNodeContents(d);
                    return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1; })
                .map(d => d.textContent.trim())"""
            )
            if broken:
                wide.append(f"{url}: {broken} broken over several lines")
            if url == "/shares/":
                # What the practitioner comes to see, on the screen without scrolling sideways:
                # the status, and every other column of a share, each under its name.
                status = page.locator(".share-table tbody tr").first.locator(".badge").first.bounding_box()
                if status is None or status["x"] + status["width"] > PHONE["width"]:
                    wide.append(f"{url}: the first share's status is off the screen ({status})")
                cells = page.evaluate(
                    """[...document.querySelector('.share-table tbody tr').cells].map(td => [
                        td.getBoundingClientRect().right, getComputedStyle(td, '::before').content])"""
                )
                off = [right for right, _label in cells if right > PHONE["width"]]
                if off:
                    wide.append(f"{url}: the first share's columns end at {off} px, off the screen")
                labels = [label for _right, label in cells[2:]]
                if labels[:1] != ['"Envoyé le\u00a0: "']:
                    wide.append(f"{url}: a share's columns are not named on a phone ({labels})")
            # A disclosure that wraps on a phone reads as one label: lines of 40 px (a 44 px
            # target made by line-height) split « Patient concerné » from « (facultatif) ».
            spaced = page.evaluate(
                """[...document.querySelectorAll('summary')].filter(e => e.offsetParent !== null)
                .filter(e => { const style = getComputedStyle(e);
                    return parseFloat(style.lineHeight) > 1.6 * parseFloat(style.fontSize); })
                .map(e => e.textContent.trim())"""
            )
            if spaced:
                wide.append(f"{url}: {spaced} with lines spaced apart")
            axe.check(page, f"{url} on a phone")
    finally:
        context.close()
    assert not wide, "\n".join(wide)
    axe.assert_clean()


@pytest.mark.browser
def test_axe_reports_a_field_without_a_label(browser: Any, axe: Any) -> None:
    """The check itself works: a page with an unlabelled field fails, naming the rule."""
    page = browser.new_page()
    try:
        page.set_content('<html lang="fr"><head><title>t</title></head><body><main><input id="x"></main></body></html>')
        violations = axe.check(page, "unlabelled field")
    finally:
        page.close()
    assert [v["id"] for v in violations] == ["label"]
    assert "[unlabelled field] label (critical) at #x" in axe.problems[0]
