"""PLI_EMAIL_URL parsing, the .eml file backend, and delivery to a real SMTP server."""

from __future__ import annotations

import email
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, get_connection
from hypothesis import given
from hypothesis import strategies as st

from pli.notify.email import (
    CONSOLE_BACKEND,
    FILE_BACKEND,
    SMTP_BACKEND,
    EmlFileBackend,
    email_settings,
    parse_email_url,
    send_templated,
)


def test_smtp_url() -> None:
    parsed = parse_email_url("smtp://relay.internal:2525")
    assert (parsed.backend, parsed.host, parsed.port, parsed.use_tls, parsed.use_ssl) == (
        SMTP_BACKEND,
        "relay.internal",
        2525,
        False,
        False,
    )
    assert parse_email_url("smtp://relay.internal").port == 25


def test_smtps_url_with_credentials() -> None:
    parsed = parse_email_url("smtps://pli%40example.fr:s3cr%2Ft@smtp.example.fr")
    assert (parsed.user, parsed.password, parsed.port, parsed.use_ssl, parsed.use_tls) == (
        "pli@example.fr",
        "s3cr/t",
        465,
        True,
        False,
    )
    assert "s3cr" not in repr(parsed)


def test_starttls_url() -> None:
    parsed = parse_email_url("smtp+starttls://u:p@smtp.example.fr")
    assert (parsed.port, parsed.use_tls, parsed.use_ssl) == (587, True, False)


def test_console_and_file_urls() -> None:
    assert parse_email_url("console://").backend == CONSOLE_BACKEND
    parsed = parse_email_url("file:///var/spool/pli")
    assert (parsed.backend, parsed.file_path) == (FILE_BACKEND, "/var/spool/pli")


@pytest.mark.parametrize(
    "url,fragment",
    [
        ("", "PLI_EMAIL_URL must look like"),
        ("relay.internal:25", "PLI_EMAIL_URL must look like"),
        ("http://relay.internal", "'http' is not supported"),
        ("smtp://:25", "no host"),
        ("smtp://relay:abc", "invalid port"),
        ("smtp://relay:99999", "invalid port"),
        ("smtp://relay/path", "no path"),
        ("smtp://relay?timeout=3", "query"),
        ("smtps://:secret@relay", "password without a user"),
        ("file://relative/dir", "three slashes"),
        ("file:///", "absolute directory"),
        ("console://somewhere", "nothing after"),
        # urlsplit raises ValueError on an unclosed IPv6 bracket: it was a traceback.
        ("smtp://[::1:25", "invalid host"),
        ("smtps://user:secret@[relay:465", "invalid host"),
        # Django logs in only with both: the user alone was silently dropped, and every
        # message then failed at the relay's "authentication required".
        ("smtps://user@relay", "user name without a password"),
        # smtplib sends AUTH as ASCII: any other character made every delivery crash.
        ("smtps://user:p%C3%A4ss@relay", "ASCII"),
        ("smtps://us%C3%A9r:pass@relay", "ASCII"),
        ("smtps://user:p\u00e4ss@relay", "ASCII"),
    ],
)
def test_malformed_urls_give_one_clear_sentence(url: str, fragment: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse_email_url(url)
    message = str(excinfo.value)
    assert fragment in message and "\n" not in message


def test_errors_never_repeat_the_password() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse_email_url("smtps://user:hunter2@relay:notaport")
    assert "hunter2" not in str(excinfo.value)


@given(st.text(max_size=80))
def test_any_url_parses_or_fails_cleanly(url: str) -> None:
    try:
        parse_email_url(url)
    except ImproperlyConfigured as exc:
        assert str(exc)


def test_default_and_custom_from_address() -> None:
    assert email_settings("console://", None, "pli.example.fr").default_from == "Pli <no-reply@pli.example.fr>"
    custom = email_settings("console://", "Cabinet <contact@cabinet.fr>", "pli.example.fr")
    assert custom.default_from == "Cabinet <contact@cabinet.fr>"
    for bad in ("not an address", "Pli <no-reply>", "a@b.fr\r\nBcc: x@y.fr"):
        with pytest.raises(ImproperlyConfigured):
            email_settings("console://", bad, "pli.example.fr")


def test_settings_report_bad_url_through_the_cli(tmp_path: Path) -> None:
    env = {"PLI_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PLI_EMAIL_URL": "smtp//oops"}
    result = subprocess.run(
        [sys.executable, "-c", "from pli.cli import main; main()", "check"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("pli: configuration error: PLI_EMAIL_URL must look like")
    assert len(result.stderr.strip().splitlines()) == 1


def test_settings_from_environment(tmp_path: Path) -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_SSL, s.DEFAULT_FROM_EMAIL)"
    )
    env = {
        "PLI_DATA_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "pli.settings",
        "PLI_EMAIL_URL": "smtps://u:p@mail.example.fr:2465",
        "PLI_EMAIL_FROM": "no-reply@pli.example.fr",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [SMTP_BACKEND, "mail.example.fr", "2465", "True", "no-reply@pli.example.fr"]


def test_file_backend_writes_one_private_eml_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    backend = EmlFileBackend(file_path=str(outbox))
    messages = [EmailMessage(f"Sujet {n}", f"Corps {n} é", "pli@example.fr", [f"r{n}@example.org"]) for n in range(3)]
    assert backend.send_messages(messages) == 3
    files = sorted(outbox.iterdir())
    assert len(files) == 3 and all(f.suffix == ".eml" for f in files)
    assert not any(f.name.startswith(".") for f in files)  # no temporary file left behind
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert {str(m["Subject"]) for m in parsed} == {"Sujet 0", "Sujet 1", "Sujet 2"}
    assert parsed[0].get_body().get_content().startswith("Corps")
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700


def test_file_backend_through_django(tmp_path: Path, settings: Any) -> None:
    settings.EMAIL_BACKEND = FILE_BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path)
    EmailMessage("Bonjour", "Texte", "pli@example.fr", ["a@example.org"], connection=get_connection()).send()
    assert len(list(tmp_path.glob("*.eml"))) == 1


def test_file_backend_failure_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        EmlFileBackend(file_path=str(blocker / "sub")).send_messages([EmailMessage("s", "b", "a@b.fr", ["c@d.fr"])])
    assert (
        EmlFileBackend(file_path=str(blocker / "sub"), fail_silently=True).send_messages(
            [EmailMessage("s", "b", "a@b.fr", ["c@d.fr"])]
        )
        == 0
    )


def test_delivery_to_a_real_smtp_server(smtp_server: Any, settings: Any) -> None:
    EmailMessage("Test Pli", "Bonjour depuis Pli", to=["doc@example.org"]).send()
    (mail,) = smtp_server.wait_for(1)
    assert mail.recipients == ["doc@example.org"]
    assert mail.subject == "Test Pli" and "Bonjour depuis Pli" in mail.body
    assert str(mail.message["From"]) == settings.DEFAULT_FROM_EMAIL


def test_send_templated_reports_an_unreachable_relay(settings: Any, caplog: Any) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    settings.EMAIL_BACKEND = SMTP_BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    sent = send_templated(
        to="doc@example.org",
        template_prefix="account/email/password_reset_key",
        context={"password_reset_url": "https://pli.example.fr/x"},
    )
    assert sent is False
    assert "doc@example.org" not in caplog.text


def test_eml_file_mode_survives_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        EmlFileBackend(file_path=str(tmp_path)).send_messages([EmailMessage("s", "b", "a@b.fr", ["c@d.fr"])])
    finally:
        os.umask(old)
    (path,) = tmp_path.glob("*.eml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.mark.parametrize("mode", ["smtps", "starttls"])
def test_a_relay_with_an_untrusted_certificate_gets_nothing(tmp_path: Path, settings: Any, mode: str) -> None:
    """TLS to the relay verifies its certificate: a self-signed one fails the send (the job
    retries) instead of handing the link over an unauthenticated channel."""
    import socket
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*_self_signed(tmp_path))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    class StartTls(Controller):
        def factory(self) -> SMTP:
            return SMTP(self.handler, tls_context=context, require_starttls=True)

    if mode == "smtps":
        controller: Controller = Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=context)
    else:
        controller = StartTls(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.EMAIL_BACKEND = SMTP_BACKEND
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_USE_SSL, settings.EMAIL_USE_TLS = mode == "smtps", mode == "starttls"
        with pytest.raises(ssl.SSLCertVerificationError):
            EmailMessage("s", "https://pli.example.fr/p/token", to=["patient@example.org"]).send()
    finally:
        controller.stop()
    assert received == []


def test_account_emails_name_the_instance_domain_in_their_message_id(smtp_server: Any, settings: Any) -> None:
    # Django names this machine there (often "localhost"), which spam filters mark down: the
    # patients' notifications named the instance's domain, invitations and password resets
    # did not.
    from allauth.core import context as allauth_context
    from django.test import RequestFactory

    from pli.accounts.adapter import AccountAdapter

    settings.PLI_MAIL_DOMAIN = "pli.example.fr"
    assert send_templated(
        to="doc@example.org",
        template_prefix="account/email/password_reset_key",
        context={"password_reset_url": "https://pli.example.fr/x"},
    )
    request = RequestFactory().get("/", HTTP_HOST="127.0.0.1")
    with allauth_context.request_context(request):
        AccountAdapter(request).send_mail(
            "account/email/password_reset_key", "doc@example.org", {"password_reset_url": "https://pli.example.fr/x"}
        )
    mails = smtp_server.wait_for(2)
    assert [str(mail.message["Message-ID"]).endswith("@pli.example.fr>") for mail in mails] == [True, True]
