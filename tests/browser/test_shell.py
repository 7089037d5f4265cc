from __future__ import annotations

from typing import Any


def test_health_and_csp_in_a_real_browser(page: Any) -> None:
    """The page loads with its stylesheet under the CSP, and nothing is blocked or external."""
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    external: list[str] = []
    page.on(
        "request",
        lambda req: external.append(req.url) if "127.0.0.1" not in req.url and "localhost" not in req.url else None,
    )
    response = page.goto("/healthz")
    assert response.status == 200
    page.goto("/static/pli/pli.css")
    assert external == []
    assert violations == []
