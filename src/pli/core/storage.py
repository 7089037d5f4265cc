"""A full disk, told apart from other failures so that people are told what happened.

When the file system of the blobs, or the database's, has no room left, the request fails
as a whole: the upload's blobs are discarded and the transaction rolled back, so nothing is
half-saved (the tests in tests/messaging/test_disk_full.py and on a real tmpfs check it).
What was a 500 and a traceback is answered ``507 Insufficient Storage`` with a sentence in
the reader's language, and logged as one error line naming the cause, never content. The
forms that upload files (a message, a share, a patient's reply) come back filled in, with
that sentence; any other page gets it as its error page (:class:`StorageFullMiddleware`)
and the API as its ``detail``.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

logger = logging.getLogger("pli.storage")

INSUFFICIENT_STORAGE = 507
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_POSTGRESQL_DISK_FULL = "53100"


def full_cause(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain that says a disk is full (ENOSPC or a quota, SQLite's
    SQLITE_FULL, PostgreSQL's disk_full), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return current
        code = getattr(current, "sqlite_errorcode", None) if isinstance(current, sqlite3.Error) else None
        if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
            return current
        if getattr(current, "sqlstate", None) == _POSTGRESQL_DISK_FULL:
            return current
        current = current.__cause__ or current.__context__
    return None


def is_full(exc: BaseException) -> bool:
    return full_cause(exc) is not None


def log_full(exc: BaseException) -> None:
    """One line for the operator: which disk (by the error's own words: an errno, or the
    database's message, neither of which holds content) and that nothing was saved."""
    cause = full_cause(exc) or exc
    if isinstance(cause, OSError):
        reason = f"{errno.errorcode.get(cause.errno or 0, cause.errno)} on the data directory"
    else:
        reason = f"the database: {type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}"
    logger.error("storage full (%s): the request failed and nothing was saved; free some space", reason)


def message() -> str:
    return _(
        "The server has no storage space left: nothing was saved. Please try again later; if the problem "
        "persists, tell the administrator of your Pli instance."
    )


def patient_message() -> str:
    return _(
        "The server has no storage space left: nothing was saved. Please try again later, or contact the "
        "practice directly."
    )


class StorageFullMiddleware:
    """Any page that fails for a full disk is a 507 saying so (the views with a form answer
    it themselves, with the form)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_full(exception):
            return None
        log_full(exception)
        from pli.core.views import storage_full

        return storage_full(request)
