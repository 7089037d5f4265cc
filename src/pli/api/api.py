"""Endpoints of the API itself: who am I, and the JSON 404 for unknown /api/ paths."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from pli.accounts.models import Membership, User
from pli.accounts.services import mailboxes_for
from pli.api.serializers import MeSerializer
from pli.api.strict import StrictView


class MeView(StrictView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="me",
        summary="The token's user, their organisations and their mailboxes",
        responses=MeSerializer,
        tags=["account"],
    )
    def get(self, request: Request) -> Response:
        user = request.user
        assert isinstance(user, User)  # noqa: S101 — IsAuthenticated let only token owners in
        memberships = Membership.objects.filter(user=user).select_related("organisation").order_by("organisation__name")
        data: dict[str, Any] = {
            "id": user.pk,
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "profession": user.profession,
            "specialty": user.specialty,
            "rpps": user.rpps,
            "organisations": [
                {
                    "id": membership.organisation.pk,
                    "slug": membership.organisation.slug,
                    "name": membership.organisation.name,
                    "role": membership.role,
                }
                for membership in memberships
            ],
            "mailboxes": [
                {"id": mailbox.pk, "address": mailbox.address, "name": mailbox.name, "kind": mailbox.kind}
                for mailbox in mailboxes_for(user)
            ],
        }
        return Response(MeSerializer(data).data)


@csrf_exempt  # a POST or DELETE to a wrong path gets this 404, not the CSRF page
@login_not_required
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any /api/ path that matches no endpoint: a JSON answer, like the rest of the API.

    A path that differs from an endpoint's by its final slash only (/api/v1/messages/,
    as many HTTP libraries and habits from other APIs write it) says how the API writes
    it: a bare "Not found" sent integrators looking for a missing permission or object."""
    detail = _("Not found.")
    # Says how the API spells the address, not that an object is there: the endpoint's own
    # 404 says that, to callers allowed to know. (The schema and docs answer both ways.)
    if request.path_info.endswith("/") and _is_endpoint(request.path_info[:-1]):
        # request.path: with the prefix Pli may be served under, as the caller wrote it.
        detail = _("Unknown address: the API writes it without the final slash, %(address)s.") % {
            "address": request.path[:-1]
        }
    # Written as DRF's renderer writes the other answers: compact, UTF-8.
    return JsonResponse(
        {"detail": detail}, status=404, json_dumps_params={"separators": (",", ":"), "ensure_ascii": False}
    )


def _is_endpoint(path: str) -> bool:
    try:
        return resolve(path).url_name != NOT_FOUND_NAME
    except Resolver404:
        return False


NOT_FOUND_NAME = "api-not-found"
