"""Shared REST API pieces: one error shape, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from pli.core import outage, storage

logger = logging.getLogger("pli.api")

# DRF's own answers that the API gives, translated again in Pli's catalogue (LOCALE_PATHS,
# read before DRF's): its French wrote the ASCII apostrophe, and « L'en-tête … n'a pas pu
# être satisfaite ». Listed so that makemessages keeps them.
DRF_TEXTS = (
    gettext_noop("Authentication credentials were not provided."),
    gettext_noop("Incorrect authentication credentials."),
    gettext_noop("You do not have permission to perform this action."),
    gettext_noop("Could not satisfy the request Accept header."),
    # « La date + heure n'a pas le bon format » (GET /api/v1/shares?created_before=…), and a
    # JSON body that is not an object « Attendait un dictionnaire, a reçu list ».
    gettext_noop("Datetime has wrong format. Use one of these formats instead: {format}."),
    gettext_noop("Datetime value out of range."),
    gettext_noop("Invalid data. Expected a dictionary, but got {datatype}."),
)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error as JSON ``{"detail": …}`` (or field → messages), whatever the view
    renders on success, and never a traceback or an HTML page."""
    response = _error_response(exc, context)
    if response is None and storage.is_full(exc):
        # Not a bug: the disk (the blobs' or the database's) has no room; nothing was saved.
        storage.log_full(exc)
        response = Response({"detail": storage.message()}, status=storage.INSUFFICIENT_STORAGE)
    if response is None and outage.is_unavailable(exc):
        # Not a bug either: PostgreSQL restarting or out of reach (the next requests
        # reconnect), or the master keys unreadable for a moment (the operator's to fix).
        outage.log_unavailable(exc)
        response = Response(
            {"detail": outage.message(exc)},
            status=outage.SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(outage.RETRY_AFTER)},
        )
    if response is None:
        if settings.DEBUG:
            return None  # Django's debug page, for a developer who asked for it
        # A bug: logged with its traceback for the operator, a bare JSON 500 for the client
        # (DRF's own message, which DRF translates).
        view = type(context.get("view")).__name__
        logger.error("unhandled %s in API view %s", type(exc).__name__, view, exc_info=exc)
        response = Response({"detail": _("A server error occurred.")}, status=500)
    request = context.get("request")
    if request is not None:
        # An endpoint that serves files (any Accept) still answers errors in JSON.
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = "application/json"
    return response


def _error_response(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus Django validation errors turned into 400s with field names."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        # What concerns no field is one text under ``detail``, as in every other answer.
        return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        return Response({"detail": _("Not found.")}, status=status.HTTP_404_NOT_FOUND)
    # Django's own limits on a body (DATA_UPLOAD_MAX_MEMORY_SIZE, _NUMBER_FIELDS, _NUMBER_FILES),
    # met while DRF parses one (a JSON or form body of a move or a share action): Django's
    # views answer them 400, and so does the API, not 500.
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": _("The request's body is too large.")}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return Response({"detail": _("The request has too many fields.")}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ParseError):
        return Response({"detail": _("Malformed request: %(reason)s") % {"reason": exc.detail}}, status=400)
    response = drf_exception_handler(exc, context)
    if (
        isinstance(exc, exceptions.ValidationError)
        and response is not None
        and isinstance(response.data, dict)
        and api_settings.NON_FIELD_ERRORS_KEY in response.data
    ):
        # What concerns no single field (a JSON body that is a list, not an object) is under
        # ``detail`` as one text, as every other API error has it; DRF names it
        # "non_field_errors", which neither the README nor the schema lists.
        data = dict(response.data)
        texts = [
            # DRF's "No data provided" (a JSON body of null) is English in any language.
            _("No data sent: send the fields in a JSON object.")
            if getattr(message, "code", "") == "null"
            else str(message)
            for message in data.pop(api_settings.NON_FIELD_ERRORS_KEY)
        ]
        response.data = {"detail": " ".join(texts), **data}
    return response


class AcceptHeaderNegotiation(DefaultContentNegotiation):
    """The answer's type is chosen by the ``Accept`` header only. DRF's ``?format=`` picked a
    renderer, and any value but ``json`` made an existing mailbox or share a 404 "Not found"
    (on GET /api/v1/me too), where every other parameter no operation lists is ignored.
    The schema's own view keeps it (``/api/v1/schema/?format=json``)."""

    # DRF's negotiation reads this one setting from here; None turns the override off.
    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)  # type: ignore[assignment]  # the one setting read


def refuse_repeated(data: Any, names: Iterable[str]) -> None:
    """Raise a 400 naming each of ``names`` (single-value fields or query parameters) that
    ``data`` (a QueryDict) gives more than once. Django and DRF keep the last value and drop
    the others without a word: ``folder=inbox&folder=trash`` filed the message in the trash."""
    getlist = getattr(data, "getlist", None)
    if not callable(getlist):
        return  # a JSON object holds each name once
    repeated = {
        name: [_("This field is given more than once: send it once.")] for name in names if len(getlist(name)) > 1
    }
    if repeated:
        raise exceptions.ValidationError(repeated)


def refuse_unknown(data: Any, accepted: Iterable[str], files: Iterable[str] = (), *, query: bool = False) -> None:
    """Raise a 400 naming each field of the body (``data``, and the names of a multipart
    body's ``files``), or with ``query`` each query parameter, that the endpoint does not
    take. Ignored without a word, a misspelt optional one did not do what its sender meant:
    ``allow_replies=true`` made a share the patient could not answer, ``patient_nir`` a
    letter without its patient, ``?statut=locked`` listed every share."""
    if not isinstance(data, Mapping):
        return  # a JSON body that is not an object: the serializer names the problem
    known = set(accepted)
    given = [*data.keys(), *files]
    unknown = sorted({name for name in given if name not in known})
    if not unknown:
        return
    if not known:
        message = _("This request takes no query parameter.") if query else _("This request takes no field.")
    else:
        text = (
            _("This request takes no parameter of this name: check its spelling. Its parameters: %(fields)s.")
            if query
            else _("This request has no field of this name: check its spelling. Its fields: %(fields)s.")
        )
        message = text % {"fields": ", ".join(sorted(known))}
    raise exceptions.ValidationError({name: [message] for name in unknown})


def search_criteria(data: Any, accepted: Collection[str]) -> dict[str, str]:
    """A search's criteria sent in a body (a JSON object or a form), as the listing's query
    would give them: text, JSON numbers and booleans as their words (``"50"``, ``"true"``).
    A 400 names a criterion the search does not take, one given twice, one of another type
    (a list, an object, null), or says that the body is no object at all."""
    if not isinstance(data, Mapping):
        raise exceptions.ValidationError({"detail": _("Send the criteria as a JSON object or a form.")})
    refuse_unknown(data, accepted)
    refuse_repeated(data, accepted)
    given: dict[str, str] = {}
    wrong: dict[str, list[str]] = {}
    for name in accepted:
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = str(value)
        if isinstance(value, str):
            given[name] = value
        else:
            wrong[name] = [_("Give this criterion as text (or a number, or true or false).")]
    if wrong:
        raise exceptions.ValidationError(wrong)
    return given


def form_error_body(errors: Mapping[str, Iterable[Any]]) -> dict[str, Any]:
    """A form's errors as the API answers them: field → messages, and what concerns no
    single field as one text under ``detail``, like every other API error."""
    body: dict[str, Any] = {}
    for name, messages in errors.items():
        texts = [str(message) for message in messages]
        if name == "__all__":
            body["detail"] = " ".join(texts)
        else:
            body[name] = texts
    return body


def field_error_body(field: str, message: str) -> dict[str, Any]:
    """One refusal as the API answers it: ``{"detail": "…"}`` for the request as a whole,
    ``{field: ["…"]}`` for one field."""
    return {"detail": message} if field == "detail" else {field: [message]}
