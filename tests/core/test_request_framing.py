"""Request bodies Django would read wrongly or not at all get a clear 4xx, in French first."""

from __future__ import annotations

import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.http import HttpRequest, UnreadablePostError
from django.test import Client

from pli.core.middleware import RequestFramingMiddleware


def _call_wsgi(path: str, **environ: str) -> tuple[str, bytes]:
    """Through Pli's own WSGI entry, as gunicorn calls it (the test client builds its
    requests another way)."""
    from pli.wsgi import application

    env: dict[str, Any] = {"PATH_INFO": path, "HTTP_HOST": "testserver", "SERVER_NAME": "testserver", **environ}
    setup_testing_defaults(env)
    env["wsgi.input"] = io.BytesIO(b"")
    statuses: list[str] = []
    body = b"".join(application(env, lambda status, headers, *exc: statuses.append(status)))
    return statuses[0], body


@pytest.mark.parametrize("content_type", ["text/plain; charset*=x''y%20", "multipart/form-data; boundary*=bogus''%41"])
@pytest.mark.parametrize("path", ["/api/v1/me", "/login/", "/p/abc"])
def test_an_unreadable_content_type_is_a_400_not_a_500(db: None, content_type: str, path: str) -> None:
    """Django failed while building the request, before any middleware: gunicorn's bare 500."""
    status, body = _call_wsgi(path, CONTENT_TYPE=content_type, REQUEST_METHOD="POST")
    assert status.startswith("400"), (status, body[:300])
    text = body.decode()
    assert "Content-Type" in text and "illisible" in text
    if path.startswith("/api/"):
        assert json.loads(body)["detail"].endswith("tête Content-Type de la requête est illisible.")


def test_a_readable_content_type_still_reaches_the_view(db: None) -> None:
    status, body = _call_wsgi("/api/v1/me", CONTENT_TYPE="text/plain; charset=utf-8")
    assert status.startswith("401"), body  # the API's own answer to a missing token


def test_a_chunked_body_is_refused_rather_than_read_as_empty(db: None) -> None:
    response = Client().post("/api/v1/messages", {"subject": "x"}, HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 411
    assert "Content-Length" in response.json()["detail"]


def test_a_compressed_body_is_refused_in_the_callers_language(db: None) -> None:
    response = Client().post(
        "/api/v1/shares", {"message": "x"}, HTTP_CONTENT_ENCODING="gzip", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 415
    assert response.json() == {"detail": "Send the request's body uncompressed: Content-Encoding is not accepted."}
    page = Client().post("/login/", {"x": "y"}, HTTP_CONTENT_ENCODING="br")
    assert page.status_code == 415
    assert "sans compression" in page.content.decode()


def test_identity_encoding_is_accepted(db: None) -> None:
    response = Client().get("/healthz", HTTP_CONTENT_ENCODING="identity")
    assert response.status_code == 200


def test_a_body_cut_off_while_read_is_a_400() -> None:
    """A client that stopped sending (or was let go, see ClientTimeoutMiddleware)."""
    middleware = RequestFramingMiddleware(lambda request: pytest.fail("not reached"))
    request = HttpRequest()
    request.path = "/api/v1/messages"
    response = middleware.process_exception(request, UnreadablePostError("timed out"))
    assert response is not None and response.status_code == 400
    assert middleware.process_exception(request, ValueError("other")) is None


@pytest.mark.parametrize("charset", ["idna", "punycode", "utf-16", "hex", "ebcdic", "x-unknown"])
def test_a_charset_django_cannot_read_forms_in_is_refused(db: None, charset: str) -> None:
    """Django decodes the form's text with it (idna raised a 500), or, with a name Python does
    not know, reads it as UTF-8 without a word."""
    body = b'--B\r\nContent-Disposition: form-data; name="subject"\r\n\r\nx\r\n--B--\r\n'
    response = Client().generic("POST", "/api/v1/messages", body, f"multipart/form-data; boundary=B; charset={charset}")
    assert response.status_code == 415
    assert "UTF-8" in response.json()["detail"]


def test_a_media_type_in_capitals_is_read(db: None) -> None:
    from messaging.factories import api_client, personal_mailbox, practitioner

    alice, bob = practitioner(), practitioner()
    fields = {"sender": personal_mailbox(alice).address, "to": personal_mailbox(bob).address, "subject": "x"}
    body = b"".join(
        f'--Bnd\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    response = api_client(alice).generic(
        "POST", "/api/v1/messages", body + b"--Bnd--\r\n", "Multipart/Form-Data; boundary=Bnd; charset=UTF-8"
    )
    assert response.status_code == 201, response.content
