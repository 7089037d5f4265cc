"""PostgreSQL out of reach (restarting, the network cut): a request that meets it is
answered 503 with Retry-After and a sentence saying so, on a page and in the API, not a
500 that reads like a fault of Pli. Other database errors stay 500s."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, InterfaceError, OperationalError

from messaging.factories import api_client, practitioner, web_client
from pli.messaging import services


def _raised(cause: Exception) -> DatabaseError:
    """As Django's wrapper raises the driver's error (on either database: SQLite's wrapper
    would not wrap psycopg's errors)."""
    wrapper = InterfaceError if isinstance(cause, psycopg.InterfaceError) else OperationalError
    exc = wrapper(*cause.args)
    exc.__cause__ = cause
    return exc


LOST = [
    psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
    psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 5432 failed'),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.errors.CannotConnectNow("the database system is starting up"),
    psycopg.InterfaceError("the connection is closed"),
]


def _failing(monkeypatch: pytest.MonkeyPatch, cause: Exception) -> None:
    def unread_counts(*args: Any, **kwargs: Any) -> Any:
        raise _raised(cause)

    monkeypatch.setattr(services, "unread_counts", unread_counts)


@pytest.mark.parametrize("cause", LOST, ids=lambda c: type(c).__name__ + str(c)[:20])
def test_the_api_says_the_database_is_away(db: None, monkeypatch: pytest.MonkeyPatch, cause: Exception) -> None:
    client = api_client(practitioner())
    _failing(monkeypatch, cause)
    response = client.get("/api/v1/mailboxes", HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    detail = response.json()["detail"]
    assert detail.startswith("Le service est momentanément indisponible\u00a0: la base de données ne répond pas.")
    assert "a pu être enregistrée" in detail


def test_a_page_says_the_database_is_away(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    client = web_client(practitioner())
    client.raise_request_exception = False
    _failing(monkeypatch, LOST[0])
    response = client.get("/messages/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.content.decode()
    assert "Service momentanément indisponible" in body
    assert "ne répond pas pour l\u2019instant" in body


def test_other_database_errors_stay_server_errors(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = psycopg.errors.UndefinedTable('relation "pli_message" does not exist')
    client = api_client(practitioner())
    _failing(monkeypatch, missing)
    assert client.get("/api/v1/mailboxes").status_code == 500
    page = web_client(practitioner())
    page.raise_request_exception = False
    assert page.get("/messages/").status_code == 500
