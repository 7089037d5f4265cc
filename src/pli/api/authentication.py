"""``Authorization: Bearer <token>`` for the REST API (the only way in: no session)."""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from pli.accounts.models import User
from pli.api import services
from pli.api.models import ApiToken


class BearerTokenAuthentication(BaseAuthentication):
    """``request.user`` is the token's owner and ``request.auth`` the ``ApiToken``.

    No header: not authenticated (the permission check then answers 401). A Bearer header
    with a wrong, revoked or malformed token: 401 at once. Both carry
    ``WWW-Authenticate: Bearer``.
    """

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(_("The Authorization header must read “Bearer <token>”."))
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked token.")) from None
        token = services.authenticate_token(raw, request=request._request)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked token."))
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
