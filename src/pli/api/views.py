"""Settings → API tokens: list, create (the token is shown once), revoke."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from allauth.account.decorators import reauthentication_required
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from pli.accounts.models import User
from pli.api import services
from pli.api.forms import TokenForm
from pli.api.models import ApiToken
from pli.api.scopes import SCOPES

# A token outlives the session: making one asks for the password (or second factor) again,
# so that a session left open or stolen cannot be turned into lasting API access.
_reauthenticated = cast(
    Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]], reauthentication_required(allow_get=True)
)


def _user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # the login middleware lets only signed-in users here
        raise Http404
    return user


@require_http_methods(["GET", "POST"])
@_reauthenticated
def token_list(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = TokenForm(request.POST if request.method == "POST" else None)
    created: ApiToken | None = None
    plaintext = ""
    if request.method == "POST" and form.is_valid():
        try:
            created, plaintext = services.create_token(
                user, form.cleaned_data["name"], form.cleaned_data["scopes"], request=request
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            # Rendered straight away, never redirected through the session: the plaintext
            # exists only in this one response (which no cache may keep: Cache-Control).
            form = TokenForm()
    status = 400 if request.method == "POST" and form.errors else 200
    return render(
        request,
        "api/tokens.html",
        {
            "form": form,
            "tokens": services.tokens_of(user),
            "created": created,
            "plaintext": plaintext,
            "scope_labels": SCOPES,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    user = _user(request)
    token = get_object_or_404(ApiToken, pk=pk, user=user)
    if request.method == "POST":
        services.revoke_token(user, token.pk, request=request)
        messages.success(
            request, _("The token “%(name)s” is revoked: it no longer opens the API.") % {"name": token.name}
        )
        return HttpResponseRedirect(reverse("tokens:list"))
    return render(request, "api/token_revoke.html", {"token": token})
