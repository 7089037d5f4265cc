"""The link's token is a path segment: no log line may carry it (gunicorn's access log, the
application's logs), and the audit trail never records it. Nor may a log line carry the
values of query parameters that can hold health data (a search's words)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pli.audit.models import AuditEvent
from pli.core.logging import redact
from sharing.helpers import Patient, make_share

FAKE_TOKEN = "Zq" * 21 + "x"  # the shape of a real token (43 URL-safe characters)


def test_every_patient_path_is_masked() -> None:
    paths = [
        f"/p/{FAKE_TOKEN}",
        f"/p/{FAKE_TOKEN}/code?sent=sms",
        f"/p/{FAKE_TOKEN}/documents/7f1f0c4e-2b4a-4a39-8d8e-3f2b9c1f0a11/download",
        f'"GET /p/{FAKE_TOKEN}/reply HTTP/1.1" 303',
    ]
    for path in paths:
        assert FAKE_TOKEN not in redact(path)
        assert "/p/[redacted]" in redact(path)


def test_query_values_are_masked_unless_known_to_be_harmless() -> None:
    line = '"GET /api/v1/mailboxes/b1/messages?q=Dupont%20269054958815780&cursor=c2 HTTP/1.1" 200'
    assert redact(line) == '"GET /api/v1/mailboxes/b1/messages?q=[redacted]&cursor=c2 HTTP/1.1" 200'
    assert redact("/messages/b1/search/?sender=paul&date_from=1958-04-12") == (
        "/messages/b1/search/?sender=[redacted]&date_from=[redacted]"
    )
    assert redact("/messages/m/1/?mailbox=2") == "/messages/m/1/?mailbox=2"
    # The README says a switch is written as it is: an operator looking into a practice
    # software's polling must see whether it asks for the unread letters alone.
    polling = "/api/v1/mailboxes/b1/messages?unread=true&limit=50&cursor=c2"
    assert redact(polling) == polling
    # A sign-in page's next= holds a whole URL, its words included.
    assert "DUPONTEL" not in redact("/login/?next=/messages/b1/search/%3Fq%3DDUPONTEL%2BJean")
    # Spelled so that only the decoded path shows the parameter, beside a token.
    assert "Dupont" not in redact(f"/p/{FAKE_TOKEN}%3Fq%3DDupont")


def test_the_token_is_masked_however_the_path_is_spelled() -> None:
    """Routing decodes the path: these all reach the patient pages."""
    for line in [
        f'"GET /%70/{FAKE_TOKEN} HTTP/1.1" 200',
        f'"GET /p%2F{FAKE_TOKEN}/code HTTP/1.1" 200',
        f'"GET /P/{FAKE_TOKEN} HTTP/1.1" 404',
        f"Mozilla/5.0 {FAKE_TOKEN}",
    ]:
        assert FAKE_TOKEN not in redact(line)
    # Decoding for the search must not let a request write a line of its own.
    forged = redact('"GET /p/x%0A127.0.0.1 - admin "GET /admin/ HTTP/1.1" 200')
    assert "\n" not in forged and "%0A" in forged
    # What is not a token stays readable.
    uuid_path = "/api/v1/messages/7f1f0c4e-2b4a-4a39-8d8e-3f2b9c1f0a11"
    assert redact(uuid_path) == uuid_path
    assert redact("/directory/r%C3%A9sultats?cursor=%2Fx%2F") == "/directory/r%C3%A9sultats?cursor=%2Fx%2F"


def test_an_api_token_after_bearer_is_masked() -> None:
    """An API token is longer than a link's token: only its "Bearer" shows it for what it is."""
    raw = "pli_" + "A1b2C3d4" * 6 + "E5f6"  # "pli_" and 52 letters and digits
    for line in (f"Authorization: Bearer {raw}", f'"HTTP_AUTHORIZATION": "bearer {raw}"'):
        masked = redact(line)
        assert raw[4:] not in masked and "[redacted]" in masked


def test_the_audit_trail_never_holds_the_token(db: None) -> None:
    _share, token = make_share()
    patient = Patient(token)
    patient.get()
    patient.birth_date("01/01/1999")
    patient.sign_in()
    Patient("B" * 43).get()
    for event in AuditEvent.objects.all():
        assert token not in str(event.details) and token not in event.target_id


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_gunicorn_access_log_masks_the_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLI_DATABASE")}
    env.update(PLI_DATA_DIR=str(tmp_path / "data"), PLI_ENV="development", PLI_TESTING="0")
    pli = [sys.executable, "-m", "pli.cli"]
    subprocess.run([*pli, "migrate", "--no-input", "-v", "0"], env=env, check=True, timeout=120)
    port = _free_port()
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen(
        [*pli, "serve", "--port", str(port), "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).close()  # noqa: S310 - loopback
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        paths = [f"/p/{FAKE_TOKEN}", f"/p/{FAKE_TOKEN}/code", f"/%70/{FAKE_TOKEN}", f"/p%2F{FAKE_TOKEN}"]
        for path in [*paths, "/api/v1/mailboxes/b1/messages?q=DUPONTMARKER"]:
            try:
                urllib.request.urlopen(f"{base}{path}", timeout=5).close()  # noqa: S310
            except urllib.error.HTTPError as exc:
                assert exc.code in (401, 404)
                exc.close()
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    log.seek(0)
    output = log.read()
    assert "/p/[redacted]" in output
    assert FAKE_TOKEN not in output
    assert "/api/v1/mailboxes/b1/messages?q=[redacted]" in output
    assert "DUPONTMARKER" not in output
    # Each access line carries the request's id, which the response gives back too.
    assert re.search(r'/healthz HTTP/1\.1" 200 .* rid=[0-9a-f]{16}$', output, re.MULTILINE)


def test_gunicorn_error_log_masks_the_token(tmp_path: Path) -> None:
    """gunicorn names the request in its error log when a response fails before its first
    byte (a patient's document whose blob does not authenticate) and when it refuses a
    request line: the token must be masked there too."""
    from gunicorn.config import Config

    from pli.core.server import RedactingLogger

    config = Config()
    config.set("errorlog", str(tmp_path / "error.log"))
    log = RedactingLogger(config)
    log.setup(config)  # as a configuration reload does: still masked, and masked once
    uri = f"/p/{FAKE_TOKEN}/documents/7f1f0c4e-2b4a-4a39-8d8e-3f2b9c1f0a11/view"
    try:
        raise ValueError("segment 0 failed authentication")
    except ValueError:
        log.exception("Error handling request %s %s", "GET", uri)
    log.warning(f"Invalid request from ip=127.0.0.1: Invalid Request Line 'GET {uri} x HTTP/1.1'")
    for handler in log.error_log.handlers:
        handler.flush()
    output = (tmp_path / "error.log").read_text()
    assert FAKE_TOKEN not in output
    assert output.count("/p/[redacted]/documents/") == 2
    assert "segment 0 failed authentication" in output  # the traceback is still there


def test_a_wrong_host_header_is_one_warning_line(db: None, caplog: Any) -> None:
    """A load balancer probing by IP, or a scanner: expected, not an error with a traceback."""
    from django.test import Client

    with caplog.at_level("WARNING", logger="django.security.DisallowedHost"):
        assert Client(HTTP_HOST="203.0.113.9").get("/healthz").status_code == 400
    records = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert records and all(r.levelname == "WARNING" and r.exc_info is None for r in records)
    # It names the variable the operator sets, not Django's ALLOWED_HOSTS, built from it.
    assert all(
        r.getMessage()
        == "Invalid HTTP_HOST header: '203.0.113.9'. You may need to add '203.0.113.9' to PLI_ALLOWED_HOSTS "
        "if it is a name of this instance, or have the reverse proxy pass the Host header of PLI_PUBLIC_URL."
        for r in records
    )


@pytest.mark.parametrize(
    ("data", "logger"),
    [
        ("x=" + "a" * 3_000_000, "django.security.RequestDataTooBig"),
        ("&".join(["a=1"] * 1200), "django.security.TooManyFieldsSent"),
    ],
)
def test_a_form_over_djangos_limits_is_one_warning_line(db: None, caplog: Any, data: str, logger: str) -> None:
    """Anyone can post a form too large or with too many fields, to any page: a 400 for
    them, and for the operator one line, not an error with a traceback at every request."""
    from django.test import Client

    with caplog.at_level("WARNING", logger=logger):
        response = Client().post("/login/", data, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    records = [r for r in caplog.records if r.name == logger]
    assert records and all(r.levelname == "WARNING" and r.exc_info is None for r in records)


def test_a_request_id_joins_the_response_and_the_log_lines(db: None, caplog: Any, settings: Any) -> None:
    from django.test import Client

    from pli.core.logging import RequestIdFilter

    handler_filter = RequestIdFilter()
    caplog.handler.addFilter(handler_filter)
    with caplog.at_level("WARNING", logger="django.security.DisallowedHost"):
        response = Client(HTTP_HOST="203.0.113.9").get("/healthz")
    rid = response["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    assert [r.request_id for r in caplog.records if r.name == "django.security.DisallowedHost"] == [rid]
    # Django's own line for an error response is written after the middleware returned.
    from pli.core import keys

    with caplog.at_level("ERROR", logger="django.request"), pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys, "keyring_checked", lambda: False)
        failed = Client().get("/healthz")
    assert failed.status_code == 503
    lines = [r for r in caplog.records if r.name == "django.request"]
    assert lines and all(r.request_id == failed["X-Request-Id"] for r in lines)
    # An id from the trusted reverse proxy is kept; from anyone else, replaced. (Each new
    # client builds the middleware again, which reads the setting.)
    settings.PLI_TRUSTED_PROXIES = ("127.0.0.1",)
    proxied = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_REQUEST_ID="nginx-req-0042").get("/healthz")
    assert proxied["X-Request-Id"] == "nginx-req-0042"
    forged = Client(REMOTE_ADDR="198.51.100.7", HTTP_X_REQUEST_ID="nginx-req-0042").get("/healthz")
    assert forged["X-Request-Id"] != "nginx-req-0042"
