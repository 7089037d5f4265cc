"""Scope checks: ``permission_classes = [IsAuthenticated, HasScope]`` with, on the view,
``required_scopes = ["messages:read"]`` or, per HTTP method,
``required_scopes = {"GET": ["messages:read"], "POST": ["messages:send"]}``."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from pli.api.models import ApiToken


def required_scopes(view: Any, method: str) -> list[str]:
    declared = getattr(view, "required_scopes", [])
    if isinstance(declared, dict):
        return list(declared.get(method.upper(), []))
    return list(declared)


class HasScope(BasePermission):
    message: Any = gettext_lazy("This token does not have the scope this request needs.")

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return False
        missing = [scope for scope in required_scopes(view, request.method or "GET") if scope not in token.scopes]
        if missing:
            # DRF builds a new permission object per request: the message is this request's.
            self.message = _("This token lacks the scope(s) %(scopes)s; create a token that has them.") % {
                "scopes": ", ".join(missing)
            }
            return False
        return True
