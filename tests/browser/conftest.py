"""Browser tests: Playwright for Python driving Debian's Chromium against a live server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
# Without these Chromium keeps trying to reach Google's services, which this network refuses.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are ordinary synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url, locale="fr-FR", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


# --- Accessibility: axe-core, as bundled by axe-playwright-python --------------------------

# WCAG 2.0 and 2.1, levels A and AA: what French public-sector rules (RGAA 4) build on.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


class AxeAudit:
    """Runs axe on each page shown to it and keeps every violation, so that one failing run
    lists them all (page, rule, impact, element, advice) rather than the first only."""

    def __init__(self) -> None:
        from axe_playwright_python.base import AXE_SCRIPT  # the package's bundled axe.min.js

        self._script = AXE_SCRIPT
        self.checked: list[str] = []
        self.problems: list[str] = []

    def check(self, page: Any, name: str, *, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Check ``page`` as it is now. ``exclude`` takes CSS selectors of elements that a
        rule misjudges; each use must say why where it is passed."""
        # Injected through the DevTools protocol, which the page's CSP does not govern; the
        # script is the package's own file: nothing is fetched.
        if not page.evaluate("typeof window.axe === 'object'"):
            page.evaluate(self._script)
        context: dict[str, Any] = {"include": [["html"]]}
        if exclude:
            context["exclude"] = [[selector] for selector in exclude]
        options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
        violations: list[dict[str, Any]] = page.evaluate(
            "([context, options]) => axe.run(context, options).then(results => results.violations)",
            [context, options],
        )
        self.checked.append(name)
        for violation in violations:
            for node in violation["nodes"]:
                target = " ".join(str(part) for part in node["target"])
                # The first check's message says what is wrong here ("contrast of 2.1…").
                checks = node.get("any", []) + node.get("all", []) + node.get("none", [])
                detail = f" ({checks[0]['message']})" if checks else ""
                self.problems.append(
                    f"[{name}] {violation['id']} ({violation['impact']}) at {target}: {violation['help']}{detail}"
                    f"\n    {node['html'][:200]}"
                )
        return violations

    def assert_clean(self) -> None:
        assert not self.problems, f"{len(self.problems)} accessibility violation(s):\n" + "\n".join(self.problems)


@pytest.fixture
def axe() -> AxeAudit:
    return AxeAudit()
