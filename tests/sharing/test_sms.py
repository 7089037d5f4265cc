"""SMS: phone numbers, PLI_SMS_URL, the file backend and Twilio's Messages API, checked
against a loopback HTTP server that verifies the request as Twilio documents it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pli.notify import sms
from pli.sharing import services
from pli.sharing.models import Channel, ShareNotification
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import MOBILE, link_token, make_due, make_share, run_tasks, sms_messages

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "s3cr3t-auth-token"


# -- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("0781234567", "+33781234567"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("0690 12 34 56", "+590690123456"),  # Guadeloupe, typed the national way
        ("0692 12 34 56", "+262692123456"),  # La Réunion
        ("+594 694 12 34 56", "+594694123456"),  # Guyane
    ],
)
def test_french_mobiles_are_normalised_to_e164(raw: str, expected: str) -> None:
    assert sms.normalise_mobile(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("01 45 67 89 01", "not_mobile"),  # a Paris landline
        ("+32 470 12 34 56", "region"),  # a Belgian mobile
        ("12", "invalid"),
        ("", "empty"),
        ("06 12 34", "invalid"),
    ],
)
def test_other_numbers_are_refused_with_a_reason(raw: str, code: str) -> None:
    with pytest.raises(sms.InvalidPhoneNumber) as caught:
        sms.normalise_mobile(raw)
    assert caught.value.code == code


def test_allowed_regions_can_be_widened() -> None:
    assert sms.normalise_mobile("+32 470 12 34 56", ("FR", "BE")) == "+32470123456"
    assert sms.parse_allowed_regions("fr, be,FR") == ("FR", "BE")
    assert sms.parse_allowed_regions("") == sms.DEFAULT_ALLOWED_REGIONS
    with pytest.raises(sms.SmsConfigError, match="PLI_SMS_ALLOWED_REGIONS"):
        sms.parse_allowed_regions("France")


@given(st.text(max_size=60))
def test_any_text_is_either_a_mobile_or_a_clear_refusal(raw: str) -> None:
    try:
        number = sms.normalise_mobile(raw)
    except sms.InvalidPhoneNumber as exc:
        assert exc.code in {"empty", "invalid", "region", "not_mobile"}
    else:
        assert number.startswith("+") and number[1:].isdigit()


def test_mask_shows_only_the_last_digits() -> None:
    assert sms.mask_number("+33612345678") == "+33 6 •• •• •• 78"


# -- PLI_SMS_URL ------------------------------------------------------------------------------


def test_file_url() -> None:
    backend = sms.parse_sms_url("file:///var/lib/pli/sms")
    assert isinstance(backend, sms.FileBackend) and backend.directory == Path("/var/lib/pli/sms")


def test_twilio_url() -> None:
    backend = sms.parse_sms_url(f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=%2B33700000000")
    assert isinstance(backend, sms.TwilioBackend)
    assert backend.messages_url == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert backend.sender == "+33700000000"
    assert AUTH_TOKEN not in repr(backend)


def test_a_sender_number_written_with_its_plus_keeps_it() -> None:
    # The query was read as a form, "+" as a space: "?from=+33700000000" sent From
    # 33700000000, which Twilio refuses (400, so every SMS failed for good).
    backend = sms.parse_sms_url(f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=+33700000000")
    assert isinstance(backend, sms.TwilioBackend)
    assert backend.sender == "+33700000000"
    assert b"From=%2B33700000000" in (backend.request_for("+33612345678", "x").data or b"")
    spaced = sms.parse_sms_url(f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=Cabinet%20Pli")
    assert isinstance(spaced, sms.TwilioBackend) and spaced.sender == "Cabinet Pli"


def test_a_port_given_with_the_twilio_host_is_kept() -> None:
    # It was dropped: the requests went to port 443 of that host whatever the URL said.
    backend = sms.parse_sms_url(f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@sms-proxy.internal:8443?from=Pli")
    assert isinstance(backend, sms.TwilioBackend)
    assert backend.endpoint == "https://sms-proxy.internal:8443"


def test_twilio_api_key_url() -> None:
    backend = sms.parse_sms_url(
        f"twilio://SK123:keysecret@api.twilio.com?account_sid={ACCOUNT_SID}&messaging_service_sid=MG1"
    )
    assert isinstance(backend, sms.TwilioBackend)
    assert backend.username == "SK123" and backend.account_sid == ACCOUNT_SID and backend.messaging_service_sid == "MG1"


TWILIO_URL = f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=Pli"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sms.example.org", "PLI_SMS_URL"),
        ("ftp://x", "not supported"),
        ("file://relative/dir", "three slashes"),
        (f"twilio://{ACCOUNT_SID}@api.twilio.com?from=Pli", "AUTH_TOKEN"),
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com", "from="),
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=Pli&sender=x", "unknown parameters"),
        (f"twilio://SK1:{AUTH_TOKEN}@api.twilio.com?from=Pli", "Account SID"),
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=Pli&endpoint=http://sms.example.org", "loopback"),
        # urlsplit raises ValueError on an unclosed IPv6 bracket: it was a traceback at start.
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@[::1?from=Pli", "invalid host"),
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=Pli&endpoint=http://[::1", "invalid host"),
        # A port that is no number was accepted, and every SMS then failed (or was sent to
        # the default port): said at start instead.
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com:abc?from=Pli", "invalid port"),
        # From the operator's review: accepted at start-up, refused by Twilio for every SMS.
        ("twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?from=Pli", "documentation's placeholders"),
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=0612345678", "in E.164"),
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=%2B33", "in E.164"),
        (f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=ThisIsMoreThan11", "at most 11"),
        (f"{TWILIO_URL}&endpoint=http://127.0.0.1:abc", "invalid host or port"),
        (f"{TWILIO_URL}&endpoint=https://u:p@sms.example.org", "base URL"),
    ],
)
def test_bad_urls_are_explained_without_echoing_secrets(url: str, words: str) -> None:
    with pytest.raises(sms.SmsConfigError) as caught:
        sms.parse_sms_url(url)
    assert words in str(caught.value)
    assert AUTH_TOKEN not in str(caught.value)


def test_a_bad_url_stops_pli_at_start_up(tmp_path: Path) -> None:
    env = {**os.environ, "PLI_DATA_DIR": str(tmp_path), "PLI_SMS_URL": f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@x"}
    result = subprocess.run(
        [sys.executable, "-m", "pli.cli", "check"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "PLI_SMS_URL" in result.stderr and AUTH_TOKEN not in result.stderr


# -- the file backend -------------------------------------------------------------------------


def test_file_backend_writes_private_json(tmp_path: Path) -> None:
    backend = sms.FileBackend(tmp_path / "out")
    first = backend.send("+33612345678", "Votre code : 123456")
    backend.send("+33612345679", "deuxième")
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 2
    record = json.loads(files[0].read_text())
    assert record["to"] == "+33612345678" and record["text"] == "Votre code : 123456" and record["id"] == first
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)


# -- text encoding ----------------------------------------------------------------------------


def test_segments_are_counted_as_the_networks_count_them() -> None:
    assert sms.segments("a" * 160) == ("gsm", 1)
    assert sms.segments("a" * 161) == ("gsm", 2)
    assert sms.segments("é" * 153 * 2) == ("gsm", 2)  # é is in the GSM alphabet
    assert sms.segments("€" * 80) == ("gsm", 1)  # two septets each
    assert sms.segments("ô" * 70) == ("ucs2", 1)
    assert sms.segments("ô" + "a" * 70) == ("ucs2", 2)


def test_names_are_put_in_the_gsm_alphabet_where_they_can_be() -> None:
    assert sms.to_gsm("François Lefèvre-Château") == "Francois Lefèvre-Chateau"
    assert sms.to_gsm("Hôpital Saint-Côme d\u2019Évry «\u00a0Cœur\u00a0»") == 'Hopital Saint-Come d\'Évry " Coeur "'
    assert sms.to_gsm("Dr 李明") == "Dr 李明"  # no GSM spelling: kept as written


def test_an_accented_sender_does_not_double_the_link_sms(db: None) -> None:
    """One "ô" or curly apostrophe in a practitioner's or organisation's name made the whole SMS UCS-2
    (70 characters a segment): four segments instead of two, each paid, some phones showing
    them out of order. The names are written in the GSM alphabet; the link is untouched."""
    organisation = make_organisation("Hôpital privé Saint-Côme d\u2019Île-de-France")
    user = make_user(organisation, first_name="Françoise", last_name="Lefèvre-Château")
    _share, token = make_share(user, email=None)
    run_tasks()
    [message] = sms_messages()
    assert "Francoise Lefèvre-Chateau (Hopital privé Saint-Come d'Ile-de-France)" in message["text"]
    assert link_token(message["text"]) == token
    assert sms.segments(message["text"]) == ("gsm", 2)


def test_the_french_code_sms_stays_in_the_gsm_alphabet(db: None) -> None:
    """French puts a non-breaking space before « : » (« Votre code Pli : … »), a character
    the GSM alphabet lacks: it would have made the code SMS UCS-2. An SMS has plain ones."""
    from django.utils import translation

    from pli.sharing import notifications

    share, _token = make_share(make_user())
    with translation.override("fr"):
        rendered = notifications.render_code(share, "123456", Channel.SMS, 10)
    assert rendered.text.startswith("Votre code Pli : 123456."), rendered.text
    assert sms.segments(rendered.text) == ("gsm", 1)


# -- Twilio, against a loopback server ----------------------------------------------------------


class FakeTwilio:
    """Answers like Twilio's Messages API, after checking each request as Twilio documents
    it; what it received is kept for the test's own assertions."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        # (status, JSON payload[, headers]), or raw bytes to write instead of an HTTP answer.
        self.replies: list[Any] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("ascii")
                fake.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "form": parse_qs(body),
                    }
                )
                reply = fake.replies.pop(0) if fake.replies else fake.accept()
                if isinstance(reply, bytes):
                    self.wfile.write(reply)
                    self.close_connection = True
                    return
                status, payload, *more = reply
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (more[0] if more else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def accept(self) -> tuple[int, dict[str, Any]]:
        number = len(self.requests)
        return 201, {"sid": f"SM{number:032d}", "status": "queued", "account_sid": ACCOUNT_SID}

    def url(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"from": "Pli", **params}.items())
        return f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?{query}&endpoint=http://127.0.0.1:{self.port}"


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
    fake.thread.start()
    settings.PLI_SMS_URL = fake.url()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def assert_twilio_request(request: dict[str, Any], to: str, sender: str = "Pli") -> str:
    """The request as Twilio documents it: POST /2010-04-01/Accounts/{AccountSid}/Messages.json,
    HTTP Basic authentication with the Account SID and Auth Token, a form-encoded body with
    To (E.164), From and Body."""
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request["headers"]["authorization"] == f"Basic {expected}"
    assert request["headers"]["content-type"] == "application/x-www-form-urlencoded"
    form = request["form"]
    assert set(form) == {"To", "From", "Body"}
    assert form["To"] == [to] and form["From"] == [sender]
    return str(form["Body"][0])


def test_twilio_backend_sends_the_documented_request(twilio: FakeTwilio) -> None:
    backend = sms.parse_sms_url(twilio.url())
    message_id = backend.send("+33612345678", "Votre code Pli : 123456 — à usage unique")
    assert message_id.startswith("SM")
    assert assert_twilio_request(twilio.requests[0], "+33612345678") == "Votre code Pli : 123456 — à usage unique"


def test_twilio_messaging_service_is_sent_instead_of_from(twilio: FakeTwilio) -> None:
    url = f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?messaging_service_sid=MG42&endpoint=http://127.0.0.1:{twilio.port}"
    sms.parse_sms_url(url).send("+33612345678", "x")
    assert twilio.requests[0]["form"]["MessagingServiceSid"] == ["MG42"]
    assert "From" not in twilio.requests[0]["form"]


@pytest.mark.parametrize(
    ("status", "payload", "retryable"),
    [
        (400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}, False),
        (401, {"code": 20003, "message": "Authenticate", "status": 401}, True),
        (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, True),
        (500, {"code": 20500, "message": "Internal Server Error", "status": 500}, True),
        (503, {}, True),
    ],
)
def test_twilio_errors_are_classified(
    twilio: FakeTwilio, status: int, payload: dict[str, Any], retryable: bool
) -> None:
    twilio.replies.append((status, payload))
    with pytest.raises(sms.SmsError) as caught:
        sms.parse_sms_url(twilio.url()).send("+33612345678", "x")
    assert caught.value.retryable is retryable
    assert caught.value.reason.startswith(f"http_{status}")
    assert "33612345678" not in caught.value.reason


def test_unreachable_provider_is_retryable() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = sms.parse_sms_url(
        f"twilio://{ACCOUNT_SID}:{AUTH_TOKEN}@api.twilio.com?from=Pli&endpoint=http://127.0.0.1:{port}"
    )
    with pytest.raises(sms.SmsError) as caught:
        backend.send("+33612345678", "x")
    assert caught.value.retryable


def test_share_notifications_go_through_twilio(db: None, twilio: FakeTwilio) -> None:
    share, token = make_share(email=None)
    run_tasks()
    body = assert_twilio_request(twilio.requests[0], MOBILE)
    assert link_token(body) == token
    notification = share.notifications.get()
    assert notification.state == ShareNotification.State.SENT and notification.provider_id.startswith("SM")


def test_twilio_outage_then_recovery(db: None, twilio: FakeTwilio) -> None:
    twilio.replies.extend([(503, {}), (429, {"code": 20429, "status": 429})])
    share, _token = make_share(email=None)
    run_tasks()
    make_due()
    run_tasks()
    notification = share.notifications.get()
    assert notification.state == "pending" and notification.attempts == 2
    make_due()
    run_tasks()
    notification.refresh_from_db()
    assert notification.state == "sent" and len(twilio.requests) == 3


def test_a_number_twilio_refuses_fails_for_good(db: None, twilio: FakeTwilio) -> None:
    twilio.replies.append((400, {"code": 21614, "message": "not a mobile number", "status": 400}))
    share, _token = make_share(email=None)
    run_tasks()
    notification = share.notifications.get()
    assert notification.state == "failed" and notification.last_error == "sms:http_400:21614"
    events = [e for e in services.events(share) if e.type == "notification_failed"]
    assert events[-1].details["final"] is True


def test_numbers_are_displayed_as_people_write_them() -> None:
    from pli.notify.sms import display_number

    assert display_number("+33612345678") == "06 12 34 56 78"
    assert display_number("+262692123456") == "+262 692 12 34 56"
    assert display_number("not a number") == "not a number"


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",  # not HTTP at all
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\n{",  # cut short
        b"",  # connection closed without an answer
    ],
)
def test_a_garbled_answer_is_a_failed_attempt_retried_later(db: None, twilio: FakeTwilio, raw: bytes) -> None:
    """It used to crash the job: no attempt recorded, nothing on the share's page, and the
    notification stuck until the periodic job queued it again minutes later."""
    from django_tasks_db.models import DBTaskResult

    twilio.replies.append(raw)
    share, _token = make_share(email=None)
    run_tasks()
    notification = share.notifications.get()
    assert notification.state == "pending" and notification.attempts == 1
    assert notification.last_error.startswith("sms:")
    assert not DBTaskResult.objects.filter(status="FAILED").exists()
    make_due()
    run_tasks()
    notification.refresh_from_db()
    assert notification.state == "sent" and len(twilio.requests) == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\nnot json",
        b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 300\r\n\r\n{"sid": "SM',
    ],
)
def test_a_message_twilio_created_is_not_sent_again(db: None, twilio: FakeTwilio, raw: bytes) -> None:
    """201 Created: Twilio has the message and will send it, whatever the body says after.
    Sending again would text the patient once more at every retry, for up to 30 days."""
    twilio.replies.append(raw)
    share, _token = make_share(email=None)
    run_tasks()
    make_due()
    run_tasks()
    notification = share.notifications.get()
    assert notification.state == "sent" and len(twilio.requests) == 1


def test_retry_after_is_honoured(db: None, twilio: FakeTwilio) -> None:
    from django.utils import timezone

    twilio.replies.append((429, {"code": 20429, "status": 429}, {"Retry-After": "600"}))
    share, _token = make_share(email=None)
    started = timezone.now()
    run_tasks()
    notification = share.notifications.get()
    assert notification.state == "pending" and notification.last_error == "sms:http_429:20429"
    assert (notification.next_attempt_at - started).total_seconds() >= 600
    # An absurd value is capped like the back-off.
    twilio.replies.append((503, {}, {"Retry-After": "86400"}))
    make_due()
    run_tasks()
    notification.refresh_from_db()
    assert (notification.next_attempt_at - timezone.now()).total_seconds() <= 3600


def test_a_retry_after_that_is_no_number_is_ignored(db: None, twilio: FakeTwilio) -> None:
    """A Retry-After of digits Python reads as digits but not as a number ("\u00b2", sent as
    one Latin-1 byte) broke the delivery job: no attempt was recorded, and the notification
    waited for the re-queueing of stuck jobs, to fail the same way each time."""
    from django_tasks_db.models import DBTaskResult

    twilio.replies.append(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: \xb2\r\nContent-Length: 2\r\n\r\n{}")
    share, _token = make_share(email=None)
    run_tasks()
    notification = share.notifications.get()
    assert notification.state == "pending" and notification.attempts == 1
    assert notification.last_error == "sms:http_503"
    assert not DBTaskResult.objects.filter(status="FAILED").exists()


def test_redirects_are_not_followed(twilio: FakeTwilio) -> None:
    """urllib follows a redirect of a POST as a GET to any address, Authorization header
    included, plain http too: the credentials would leave for wherever it points."""
    elsewhere = FakeTwilio()
    elsewhere.thread.start()
    try:
        target = f"http://127.0.0.1:{elsewhere.port}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        twilio.replies.append((302, {}, {"Location": target}))
        with pytest.raises(sms.SmsError) as caught:
            sms.parse_sms_url(twilio.url()).send("+33612345678", "x")
        assert caught.value.retryable and caught.value.reason == "http_302"
        assert elsewhere.requests == []
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()


def test_an_sms_folder_that_cannot_be_written_is_a_failed_attempt(db: None, settings: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings.PLI_SMS_URL = f"file://{blocker / 'sms'}"
    share, _token = make_share(email=None)
    run_tasks()
    notification = share.notifications.get()
    assert notification.state == "pending" and notification.attempts == 1
    assert notification.last_error.startswith("sms:")


@pytest.mark.parametrize(
    ("code", "category", "advice"),
    [
        (21211, "number_refused", "le numéro de mobile a été refusé"),
        (21606, "message_refused", "Prévenez l\u2019administrateur de Pli"),
    ],
)
def test_a_refused_sms_says_why_on_the_share_page(
    db: None, twilio: FakeTwilio, code: int, category: str, advice: str
) -> None:
    from django.test import Client

    twilio.replies.append((400, {"code": code, "message": "refused", "status": 400}))
    share, _token = make_share(email=None)
    run_tasks()
    client = Client()
    client.force_login(share.created_by)
    text = client.get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert f'data-failure="{category}"' in text and advice in text
    (event,) = [e for e in services.events(share) if e.type == "notification_failed"]
    assert event.details["category"] == category and event.failure == category
    assert MOBILE not in str(event.details) and MOBILE[3:] not in str(event.details)
