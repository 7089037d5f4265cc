"""Helpers for the accounts tests (imported as a plain module: tests/ is not a package)."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

from pli.testing.accounts import TEST_PASSWORD


def sign_in(client: Client, email: str, password: str = TEST_PASSWORD, code: str | None = None, **extra: Any) -> Any:
    """Password step, then (if asked) the second-factor step; returns the last response."""
    response = client.post("/login/", {"login": email, "password": password}, **extra)
    if code is None or response.status_code != 302 or response["Location"] != "/account/2fa/authenticate/":
        return response
    return client.post("/account/2fa/authenticate/", {"code": code}, **extra)


def extract_link(text: str, path: str) -> str:
    match = re.search(r"https?://[^\s]+" + re.escape(path) + r"[^\s]+", text)
    assert match, f"no {path} link in: {text}"
    return match.group(0)
