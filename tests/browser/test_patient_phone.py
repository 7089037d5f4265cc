"""The patient's path on a phone, as a patient lives it: mistakes, the back button."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from sharing.helpers import last_code, last_sms, make_share, run_tasks


def _phone(browser: Any, live_server: Any) -> Any:
    context = browser.new_context(
        base_url=live_server.url,
        locale="fr-FR",
        viewport={"width": 360, "height": 740},
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def _open_documents(page: Any, token: str, birth_date: str, typed: Callable[[], str]) -> None:
    """The patient's way in: the birth date, then what ``typed`` gives of the SMS received."""
    page.goto(f"/p/{token}")
    page.get_by_label("Votre date de naissance").fill(birth_date)
    page.click("form.patient-form button[type=submit]")
    page.wait_for_url(f"**/p/{token}/code**")
    run_tasks()
    page.get_by_label("Code reçu").fill(typed())
    page.click("form.patient-form button[type=submit]")
    page.wait_for_url(f"**/p/{token}/documents")


@pytest.mark.browser
def test_back_after_a_mistake_shows_a_page_not_a_browser_error(browser: Any, live_server: Any) -> None:
    """A wrong birth date or code is answered by the POST that sent it. Left so in the
    history, the back button from the next page showed Chromium's « ERR_CACHE_MISS »
    (« Confirmer le nouvel envoi du formulaire »: the pages are no-store), a dead end for a
    patient, whose only way on was to post the wrong value again."""
    cache.clear()
    _share, token = make_share()
    page = _phone(browser, live_server)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"/p/{token}")
    page.get_by_label("Votre date de naissance").fill("1/3/1985")
    page.click("form.patient-form button[type=submit]")
    page.wait_for_selector("#id_birth_date_error")
    page.get_by_label("Votre date de naissance").fill("15 02 1984")
    page.click("form.patient-form button[type=submit]")
    page.wait_for_url(f"**/p/{token}/code**")
    # Back from the code page: the birth date step, which sends the patient on to the code.
    page.go_back()
    page.wait_for_url(f"**/p/{token}/code**")
    assert page.get_by_label("Code reçu").is_visible()

    run_tasks()
    page.get_by_label("Code reçu").fill("000 000")
    page.click("form.patient-form button[type=submit]")
    page.wait_for_selector("#id_code_error")
    code = last_code()
    page.get_by_label("Code reçu").fill(f"{code[:3]} {code[3:]}")
    page.click("form.patient-form button[type=submit]")
    page.wait_for_url(f"**/p/{token}/documents")
    # Back from the documents: a page of Pli's (the documents again, the code being used),
    # never the browser's error page.
    page.go_back()
    page.wait_for_load_state()
    assert page.url.startswith(live_server.url)
    assert page.url.endswith(f"/p/{token}/documents")
    assert page.get_by_role("heading", level=1).count() == 1
    # Only the two refusals' 400s: the script is allowed by the page's CSP and runs cleanly.
    assert [e for e in errors if "400" not in e] == []
    page.context.close()


@pytest.mark.browser
def test_the_whole_sms_pasted_in_the_code_field_opens_the_documents(browser: Any, live_server: Any) -> None:
    """On a phone « copy » often takes the SMS as a whole (« Votre code Pli : 123456. Il
    est valable… »). The field kept its first 12 characters and the code was lost; the
    patient had to pick six digits out of a message by hand."""
    cache.clear()
    _share, token = make_share()
    page = _phone(browser, live_server)
    _open_documents(page, token, "15021984", last_sms)
    page.context.close()


@pytest.mark.browser
def test_download_after_the_session_ended_shows_the_page_not_a_file(browser: Any, live_server: Any) -> None:
    """« Télécharger » carried the download attribute: once the patient's session had ended,
    the phone saved the birth-date page as a file named after the secret link (in the
    Downloads folder), and nothing was said on screen."""
    from pli.sharing.models import PatientSession

    cache.clear()
    _share, token = make_share()
    page = _phone(browser, live_server)
    _open_documents(page, token, "15/02/1984", last_code)
    # While it is open, the document downloads as a file, under its own name.
    with page.expect_download() as download:
        page.locator("a:has-text('Télécharger')").first.click()
    assert download.value.suggested_filename.endswith(".pdf")

    PatientSession.objects.update(last_seen_at=timezone.now() - datetime.timedelta(hours=1))
    downloads: list[Any] = []
    page.on("download", lambda download: downloads.append(download))
    page.locator("a:has-text('Télécharger')").first.click()
    page.wait_for_url(f"**/p/{token}**")
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).count() == 1
    assert downloads == []
    page.context.close()
