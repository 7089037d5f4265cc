"""``Authorization: Bearer <token>`` for the REST API (the only way in: no session)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

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
        request._request.pli_token_checked_at = time.monotonic()  # type: ignore[attr-defined]
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


# A request that has run this long since its token was checked (an upload of minutes) has
# the token read again when it commits: revoking a token, or deactivating its user, then
# stops what is still being sent. Shorter requests are not slowed by a second read: their
# window is that of any check made when a request starts.
RECHECK_AFTER_SECONDS = 2.0


def on_created(request: Request, then: Callable[[uuid.UUID], None] | None) -> Callable[[uuid.UUID], None]:
    """The callback a creating call's service runs in the transaction that commits the new
    object: a long request's token is read again, locked, and if it was revoked meanwhile
    (or its user deactivated) the whole creation rolls back with a 401; then ``then`` (the
    Idempotency-Key's completion) runs."""

    def created(object_id: uuid.UUID) -> None:
        checked_at = getattr(request._request, "pli_token_checked_at", None)
        token = request.auth
        if isinstance(token, ApiToken) and (
            checked_at is None or time.monotonic() - checked_at > RECHECK_AFTER_SECONDS
        ):
            active = ApiToken.objects.select_for_update(of=("self",)).filter(
                pk=token.pk, revoked_at__isnull=True, user__is_active=True
            )
            if not list(active.values_list("pk", flat=True)):
                raise exceptions.AuthenticationFailed(
                    _("This token was revoked while the request was being sent; nothing was saved.")
                )
        if then is not None:
            then(object_id)

    return created
