"""The directory page, and the search endpoints used while typing (see urls.py)."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from pli.accounts.models import User
from pli.directory import services

DEFAULT_LIMIT = 20
MAX_LIMIT = 50


def _user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # the login middleware lets only signed-in users here
        raise Http404
    return user


def _parameters(request: HttpRequest) -> tuple[str, int, dict[str, list[str]]]:
    """``(q, limit, errors)``, errors keyed by parameter name."""
    errors: dict[str, list[str]] = {}
    query = request.GET.get("q", "").strip()
    if len(query) > services.MAX_QUERY_LENGTH:
        errors["q"] = [_("The search is too long (%(max)d characters at most).") % {"max": services.MAX_QUERY_LENGTH}]
    limit = DEFAULT_LIMIT
    raw_limit = request.GET.get("limit", "").strip()
    if raw_limit:
        if raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_LIMIT:
            limit = int(raw_limit)
        else:
            errors["limit"] = [_("The limit must be a whole number from 1 to %(max)d.") % {"max": MAX_LIMIT}]
    return query, limit, errors


def _context(request: HttpRequest) -> tuple[dict[str, Any], int]:
    query, limit, errors = _parameters(request)
    results = [] if errors or not query else services.search(query, user=_user(request), limit=limit)
    return {"q": query, "results": results, "errors": errors}, 400 if errors else 200


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context, status = _context(request)
    return render(request, "directory/index.html", context, status=status)


@require_GET
def results(request: HttpRequest) -> HttpResponse:
    context, status = _context(request)
    return render(request, "directory/_results.html", context, status=status)


@require_GET
def search_json(request: HttpRequest) -> JsonResponse:
    query, limit, errors = _parameters(request)
    if errors:
        return JsonResponse(errors, status=400)
    found = services.search(query, user=_user(request), limit=limit) if query else []
    return JsonResponse({"query": query, "results": [result.as_dict() for result in found]})
