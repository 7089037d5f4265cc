from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.utils import translation

from pli.core import keys


@pytest.fixture(autouse=True)
def _fresh_keyring(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test gets its own master keys, so rotation in one test can't leak into another."""
    settings.PLI_KEYS_DIR = tmp_path_factory.mktemp("keys")
    keys.reset()
    yield
    keys.reset()


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """LocaleMiddleware activates a request's language for the thread and leaves it there: a
    test whose last request was in English made the next test's services speak English."""
    yield
    translation.deactivate()


@pytest.fixture
def audit_unlocked(db: None) -> Iterator[None]:
    """Lift the append-only guard, as an attacker with database access would."""
    from pli.audit import guard

    with connection.cursor() as cursor:
        guard.drop(cursor, connection.vendor)
    yield
    with connection.cursor() as cursor:
        guard.create(cursor, connection.vendor)


@pytest.fixture(autouse=True)
def _audit_guard_and_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every database test starts with the append-only triggers in place. Transactional
    tests end with Django's flush, which the triggers would refuse: they are lifted for the
    flush only. (Tests ask for `db`/`transactional_db` as fixtures, not through the marker.)"""
    names = set(request.fixturenames)
    transactional = bool(names & {"transactional_db", "live_server"})
    if not transactional and "db" not in names:
        yield
        return
    from pli.audit import guard

    request.getfixturevalue("transactional_db" if transactional else "db")
    with connection.cursor() as cursor:
        guard.create(cursor, connection.vendor)
    yield
    if transactional:
        with connection.cursor() as cursor:
            guard.drop(cursor, connection.vendor)


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    return f"pli database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"


# --- A real SMTP server on loopback (aiosmtpd) ------------------------------------------


class ReceivedMail:
    """One message as the SMTP server received it."""

    def __init__(self, mail_from: str, recipients: list[str], content: bytes) -> None:
        import email
        from email import policy

        self.mail_from = mail_from
        self.recipients = recipients
        self.message = email.message_from_bytes(content, policy=policy.default)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""


class SmtpServer:
    def __init__(self, host: str, port: int) -> None:
        import threading

        self.host = host
        self.port = port
        self.messages: list[ReceivedMail] = []
        self._arrived = threading.Condition()
        # A reply such as "530 5.7.0 Authentication required" to give instead of accepting.
        self.refuse_mail: str | None = None
        self.refuse_rcpt: str | None = None
        # Replies to give to some recipients only (address -> "550 5.1.1 …").
        self.refuse_rcpt_to: dict[str, str] = {}

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refuse_mail:
            return self.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        if address.lower() in self.refuse_rcpt_to:
            return self.refuse_rcpt_to[address.lower()]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's handler hook
        mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content)
        with self._arrived:
            self.messages.append(mail)
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        """Block until ``count`` messages have arrived (delivery may happen after commit)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise AssertionError(f"expected {count} e-mail(s), received {len(self.messages)}")
            return list(self.messages)

    def to(self, address: str) -> list[ReceivedMail]:
        return [mail for mail in self.messages if address.lower() in (r.lower() for r in mail.recipients)]


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 (free port) that keeps what it receives; Django's e-mail
    settings point at it for the duration of the test."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = SmtpServer("127.0.0.1", port)
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    try:
        yield server
    finally:
        controller.stop()
