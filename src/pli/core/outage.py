"""The database out of reach (PostgreSQL restarting, the network cut), told apart from bugs.

Such a request fails as a whole, like any other, but it is not a bug and it will pass
again once the database answers (Django's connection health checks drop the broken
connection, so the next request reconnects). It is answered ``503 Service Unavailable`` with
``Retry-After``, saying so, instead of a 500 that reads like a fault of Pli: a web page with
:func:`pli.core.views.server_error`, the API with its ``detail``. A request cut short at its
commit may have been saved, which the text says, since the answer cannot know.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.utils.translation import gettext as _

from pli.crypto.errors import WrappingRefused

logger = logging.getLogger("pli.database")

SERVICE_UNAVAILABLE = 503
RETRY_AFTER = 5
# PostgreSQL's connection_exception class, admin_shutdown, crash_shutdown, cannot_connect_now.
_LOST_STATES = ("08", "57P01", "57P02", "57P03")


def lost_cause(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain that says the PostgreSQL server cannot be reached or
    the connection to it broke, or None. SQLite's errors never count: its file is local."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.InterfaceError):
            return current  # "the connection is closed"
        if isinstance(current, psycopg.OperationalError):
            state = current.sqlstate
            # Without an SQLSTATE the driver itself failed: no connection, or it broke.
            if state is None or state.startswith(_LOST_STATES):
                return current
        current = current.__cause__ or current.__context__
    return None


def keys_refused(exc: BaseException | None) -> bool:
    """The master keys could not be read again, and nothing new may be encrypted until they
    can be (pli.core.keys): the operator's to fix, not a bug; nothing was saved."""
    return isinstance(exc, WrappingRefused)


def is_unavailable(exc: BaseException | None) -> bool:
    return keys_refused(exc) or (isinstance(exc, OperationalError | InterfaceError) and lost_cause(exc) is not None)


def log_unavailable(exc: BaseException) -> None:
    """One line for the operator, with the driver's words (an address and a port, never
    content), instead of a traceback for each request while the database is away."""
    if keys_refused(exc):
        logger.error("%s: the request failed with 503", exc)
        return
    cause = lost_cause(exc) or exc
    reason = " ".join(str(cause).split())[:200]
    logger.error("database unreachable (%s: %s): the request failed with 503", type(cause).__name__, reason)


def message(exc: BaseException | None = None) -> str:
    if keys_refused(exc):
        return _(
            "The service is unavailable for a moment: Pli cannot read its encryption keys, and encrypts nothing "
            "new until it can. Nothing was saved. Please try again shortly."
        )
    return _(
        "The service is unavailable for a moment: the database does not answer. Please try again shortly. "
        "A request cut short may have been saved: check before sending it again."
    )


PAGE = "core/errors/503.html"
