"""The second factor is mandatory: a signed-in user without one reaches only the pages that
let them enrol one (or sign out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse

from pli.accounts.adapter import has_second_factor

# URL names reachable before enrolment. Recovery-code pages come right after the first
# factor is added; reauthentication is what allauth asks before adding one.
ENROLMENT_VIEWS = frozenset(
    {
        "mfa_index",
        "mfa_activate_totp",
        "mfa_add_webauthn",
        "mfa_view_recovery_codes",
        "mfa_download_recovery_codes",
        "account_reauthenticate",
        "account_logout",
        "set_language",
        "healthz",
        "accounts:invitation",
    }
)


class SecondFactorRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        # Public views (the API, which authenticates by token; the patient pages) don't
        # act on the session's user, so there is nothing to protect behind enrolment.
        if getattr(view_func, "login_required", True) is False:
            return None
        match = request.resolver_match
        if match is not None and match.view_name in ENROLMENT_VIEWS:
            return None
        if has_second_factor(user):
            return None
        return HttpResponseRedirect(reverse("mfa_index"))
