"""Pli's WSGI entry: Django's, with a request that survives an unreadable Content-Type.

Django parses the Content-Type header while it builds the request object, before any
middleware runs; a parameter it cannot read (``charset*=x''y%20``, an RFC 2231 value in an
unknown charset) raised there, and gunicorn answered with its bare 500 page, on any URL and
without authentication. Here the header is read as absent and the request marked, and
:class:`pli.core.middleware.RequestFramingMiddleware` answers 400.
"""

from __future__ import annotations

from typing import Any

import django
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest


class PliWSGIRequest(WSGIRequest):
    unreadable_content_type = False

    def _set_content_type_params(self, meta: dict[str, Any]) -> None:
        try:
            super()._set_content_type_params(meta)  # type: ignore[misc]  # private in the stubs
        except ValueError:
            self.content_type, self.content_params = "", {}
            self.unreadable_content_type = True


class PliWSGIHandler(WSGIHandler):
    request_class = PliWSGIRequest


def get_wsgi_application() -> PliWSGIHandler:
    django.setup(set_prefix=False)
    return PliWSGIHandler()
