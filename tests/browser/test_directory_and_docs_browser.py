"""The directory's search-as-you-type (htmx) and the API docs page, in a real browser, under
the CSP and with nothing fetched from outside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from pli.directory import services
from pli.testing import annuaire as synthetic
from pli.testing.accounts import make_organisation, make_user


def watch(page: Any) -> tuple[list[str], list[str]]:
    """Collect CSP violations / script errors, and requests leaving the live server."""
    problems: list[str] = []
    external: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if msg.type == "error" or "Content Security Policy" in msg.text else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "request",
        lambda req: (
            external.append(req.url) if not req.url.startswith(("http://localhost", "http://127.0.0.1")) else None
        ),
    )
    return problems, external


def sign_in(page: Any, live_server: Any) -> None:
    user = make_user(
        make_organisation("Cabinet du Parc"), email="web@example.org", first_name="Claire", last_name="Web"
    )
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )


@pytest.mark.browser
def test_directory_results_appear_as_you_type(page: Any, live_server: Any, tmp_path: Path) -> None:
    services.import_extract(synthetic.write(tmp_path / "annuaire.txt", 300, seed=21))
    make_user(make_organisation("Clinique Lumière"), email="lyon@example.org", first_name="Hélène", last_name="Lyonnet")
    sign_in(page, live_server)
    problems, external = watch(page)

    page.goto("/directory/")
    field = page.get_by_label("Rechercher un professionnel")
    field.press_sequentially("helene lyon", delay=40)
    # No submit: htmx asked /directory/results while typing and swapped the list in.
    result = page.locator("#directory-results .dir-result").first
    result.wait_for()
    assert "Lyonnet" in result.inner_text()
    assert result.get_attribute("data-kind") == "mailbox"
    assert page.url.endswith("/directory/")  # the page itself was not reloaded
    field.fill("")
    field.press_sequentially("zzzzzz", delay=40)
    page.locator("#directory-results", has_text="Personne ne correspond").wait_for()
    assert problems == []
    assert external == []


@pytest.mark.browser
def test_api_docs_render_under_the_csp(page: Any, live_server: Any) -> None:
    problems, external = watch(page)
    page.goto("/api/v1/docs/")
    page.get_by_text("/api/v1/me").first.wait_for()
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("Pli API")
    # The Bearer scheme is offered ("Authorize").
    assert page.locator("button.authorize").count() == 1
    assert problems == []
    assert external == []
