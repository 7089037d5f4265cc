"""The second factor is mandatory: a signed-in user without one reaches only the pages that
let them enrol one (or sign out)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from allauth.usersessions.middleware import UserSessionsMiddleware as AllauthUserSessionsMiddleware
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.views import redirect_to_login
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.contrib.sessions.models import Session
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _

from pli.accounts.adapter import has_second_factor
from pli.audit import services as audit

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


SIGNED_IN_AT = "pli_signed_in_at"


class SessionLifetimeMiddleware:
    """End a session PLI_SESSION_MAX_HOURS after its sign-in. The idle timeout alone let a
    session that is used now and then (a stolen cookie, say) last for ever."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = int(time.time())
            started = request.session.get(SIGNED_IN_AT)
            if not isinstance(started, int):
                # Signed in before this check existed: counted from now.
                request.session[SIGNED_IN_AT] = now
            elif now - started > settings.PLI_SESSION_MAX_HOURS * 3600:
                logout(request)
                audit.record("auth.session_expired", actor=user, target=user, request=request)
        return self.get_response(request)


@dataclass(frozen=True)
class SessionDeadline:
    """When the signed-in session ends if nothing more is done, in seconds from now; and
    whether activity can push it back (not once PLI_SESSION_MAX_HOURS is the nearer end)."""

    seconds: int
    extendable: bool


def _deadline(idle_left: float, request: HttpRequest) -> SessionDeadline:
    started = request.session.get(SIGNED_IN_AT)
    limit_left = float("inf")
    if isinstance(started, int):
        limit_left = started + settings.PLI_SESSION_MAX_HOURS * 3600 - time.time()
    return SessionDeadline(max(0, int(min(idle_left, limit_left))), idle_left < limit_left)


def deadline_after_this_request(request: HttpRequest) -> SessionDeadline:
    """For a page being made: a real request, after which the session is saved with a new
    idle expiry (SESSION_SAVE_EVERY_REQUEST)."""
    return _deadline(settings.SESSION_COOKIE_AGE, request)


def stored_deadline(request: HttpRequest) -> SessionDeadline | None:
    """For a passive request, which leaves the session as it is: its stored expiry (the
    database's session store); None without a stored session."""
    key = request.session.session_key
    expiry = Session.objects.filter(session_key=key).values_list("expire_date", flat=True).first() if key else None
    if expiry is None:
        return None
    return _deadline((expiry - timezone.now()).total_seconds(), request)


def record_sign_in(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """user_logged_in receiver: the start of the session's lifetime."""
    if request is not None and hasattr(request, "session"):
        request.session[SIGNED_IN_AT] = int(time.time())


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Django's, except for a form sent once the session has ended (an action button on a
    page left open: archive, move to trash, revoke a link...). Django's sign-in led back to
    the action's own URL, which answers GET with 405: the browser's bare error page. It now
    leads back to the page the form was on, and says that nothing was done."""

    def handle_no_permission(self, request: HttpRequest, view_func: Any) -> HttpResponseRedirect:
        if request.method in ("GET", "HEAD"):
            return super().handle_no_permission(request, view_func)
        target = "/"
        referer = request.headers.get("Referer", "")
        if referer and url_has_allowed_host_and_scheme(
            referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            parts = urlsplit(referer)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        if hasattr(request, "_messages"):
            messages.warning(request, _("Your session had ended: nothing was done. Sign in again, then do it again."))
        return redirect_to_login(
            target, resolve_url(self.get_login_url(view_func)), self.get_redirect_field_name(view_func)
        )


# Polled by the pages left open (unread counts, new letters): a tab left open all day must
# not keep its session alive, so these requests are not activity. The session still ends
# PLI_SESSION_IDLE_MINUTES after the person's last real request; the poll then stops.
PASSIVE_VIEWS = ("messaging:activity",)


@functools.cache
def _passive_paths() -> frozenset[str]:
    return frozenset(reverse(name) for name in PASSIVE_VIEWS)


def is_passive(request: HttpRequest) -> bool:
    return request.path_info in _passive_paths()


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, except that a passive request leaves the session as it was: not saved
    (SESSION_SAVE_EVERY_REQUEST would push its idle expiry back), no new cookie."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session = getattr(request, "session", None)
        if session is not None and not session.modified and is_passive(request):
            patch_vary_headers(response, ("Cookie",))
            return response
        return super().process_response(request, response)


class UserSessionsMiddleware:
    """allauth's, except that a passive request is not the session's « last activity » in
    the list of signed-in sessions."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self._tracking = AllauthUserSessionsMiddleware(get_response)

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if is_passive(request):
            return self.get_response(request)
        response: HttpResponseBase = self._tracking(request)
        return response
