"""The base of Pli's API views: what a request gives that the endpoint does not take is refused."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from rest_framework.request import Request
from rest_framework.views import APIView

from pli.api import throttling
from pli.core.api import refuse_unknown
from pli.core.uploads import dropped_files

# DRF's renderer choice, which clients used to DRF add by habit: ignored (JSON is the only
# answer), as before parameters were checked.
TOLERATED = ("format",)

# Where a token stands against its rate limit (pli.api.throttling), on every answer to it:
# the limit per period, what is left of it, the seconds until the period ends.
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


class StrictView(APIView):
    """An API view that refuses, with a 400 naming them, the query parameters it does not
    take (``query_parameters``, per method: none by default) and any body sent with a
    DELETE, once the caller is authenticated and allowed. Ignored, ``?mailbox=…`` on a move
    filed the copies of every mailbox, ``{"mailbox": …}`` as a DELETE's body deleted the
    team's copy for good, ``?statut=locked`` listed every share."""

    query_parameters: ClassVar[Mapping[str, Collection[str]]] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        method = "GET" if request.method == "HEAD" else str(request.method)
        given = {name: True for name in request.query_params if name not in TOLERATED}
        refuse_unknown(given, self.query_parameters.get(method, ()), query=True)
        if method == "DELETE":
            refuse_unknown(request.data, (), dropped_files(request._request))

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        counted = request._request.__dict__.get(throttling.RATE_LIMIT)
        if counted is not None:
            for name, value in zip(RATE_LIMIT_HEADERS, counted, strict=True):
                response[name] = str(value)
        return response
