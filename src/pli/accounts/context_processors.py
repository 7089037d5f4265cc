from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def accounts(request: HttpRequest) -> dict[str, Any]:
    def user_administers_organisation() -> bool:
        # Called by the template only when the navigation is drawn: no query otherwise.
        from pli.accounts.models import Membership

        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return False
        return Membership.objects.filter(user=user, role=Membership.Role.ADMIN).exists()

    def session_deadline() -> Any:
        from pli.accounts.middleware import deadline_after_this_request

        return deadline_after_this_request(request)

    return {
        "user_administers_organisation": user_administers_organisation,
        # For activity.js's warning before the session ends (drawn for signed-in users only).
        "pli_session_deadline": session_deadline,
        "pli_session_idle_seconds": settings.SESSION_COOKIE_AGE,
        "PLI_SESSION_IDLE_MINUTES": settings.PLI_SESSION_IDLE_MINUTES,
        "PLI_SESSION_MAX_HOURS": settings.PLI_SESSION_MAX_HOURS,
        "PLI_INVITATION_DAYS": settings.PLI_INVITATION_DAYS,
    }
