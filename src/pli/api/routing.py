from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver
from rest_framework.views import APIView


def token_authenticated(patterns: Sequence[URLPattern | URLResolver]) -> None:
    """Exempt the API's views from the session login middleware.

    They authenticate each request themselves (Bearer token, DRF permissions). Anything
    else found here would become public, so it is refused at start-up.
    """
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            token_authenticated(pattern.url_patterns)
            continue
        view = pattern.callback
        view_class = getattr(view, "cls", None)
        if not (isinstance(view_class, type) and issubclass(view_class, APIView)):
            raise ImproperlyConfigured(f"{pattern.lookup_str} is under /api/ but is not a DRF view")
        view.login_required = False  # type: ignore[attr-defined]
