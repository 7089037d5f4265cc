"""E-mail: ``PLI_EMAIL_URL`` turned into Django's e-mail settings, and a file backend.

Accepted URLs::

    smtp://[user:password@]host[:port]            plain SMTP (port 25)
    smtp+starttls://[user:password@]host[:port]   SMTP upgraded with STARTTLS (port 587)
    smtps://[user:password@]host[:port]           SMTP over implicit TLS (port 465)
    console://                                    print messages on standard output
    file:///directory                             one .eml file per message in directory

This module is imported by the settings: nothing here may touch Django's configuration at
import time.
"""

from __future__ import annotations

import dataclasses
import email.errors
import logging
import os
import re
import secrets
import smtplib
import tempfile
import time
from collections.abc import Sequence
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger(__name__)

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"
FILE_BACKEND = "pli.notify.email.EmlFileBackend"

_SMTP_SCHEMES = {"smtp": (25, False, False), "smtp+starttls": (587, True, False), "smtps": (465, False, True)}
_EXPECTED = (
    "PLI_EMAIL_URL must look like smtp://host:port, smtps://user:password@host:port, "
    "smtp+starttls://host:port, console:// or file:///directory"
)
# A stuck mail relay must not hold a web worker for long.
SMTP_TIMEOUT_SECONDS = 20


@dataclasses.dataclass(frozen=True)
class EmailSettings:
    backend: str
    host: str = "localhost"
    port: int = 25
    user: str = ""
    password: str = ""
    use_tls: bool = False
    use_ssl: bool = False
    file_path: str | None = None
    default_from: str = ""
    timeout: int = SMTP_TIMEOUT_SECONDS

    def __repr__(self) -> str:
        # The password must not reach a traceback or a debug page.
        return f"EmailSettings(backend={self.backend!r}, host={self.host!r}, port={self.port})"


def parse_email_url(url: str) -> EmailSettings:
    """Read ``PLI_EMAIL_URL``. Errors never repeat the URL: it may hold a password."""
    url = url.strip()
    scheme, separator, _rest = url.partition("://")
    if not separator:
        raise ImproperlyConfigured(_EXPECTED + ".")
    scheme = scheme.lower()
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced IPv6 bracket; its message would be a traceback
        raise ImproperlyConfigured(f"PLI_EMAIL_URL {scheme}:// has an invalid host (an unclosed [ or ]).") from None
    if parts.query or parts.fragment:
        raise ImproperlyConfigured("PLI_EMAIL_URL must not have a query (?…) or fragment (#…).")
    if scheme == "console":
        if parts.netloc or parts.path not in ("", "/"):
            raise ImproperlyConfigured("PLI_EMAIL_URL console:// takes nothing after the scheme.")
        return EmailSettings(backend=CONSOLE_BACKEND)
    if scheme == "file":
        if parts.netloc:
            raise ImproperlyConfigured(
                "PLI_EMAIL_URL file URLs need an absolute directory with three slashes, e.g. file:///var/mail/pli."
            )
        directory = unquote(parts.path)
        if not directory.startswith("/") or directory == "/":
            raise ImproperlyConfigured("PLI_EMAIL_URL file:/// needs an absolute directory, e.g. file:///var/mail/pli.")
        return EmailSettings(backend=FILE_BACKEND, file_path=directory)
    if scheme in _SMTP_SCHEMES:
        default_port, use_tls, use_ssl = _SMTP_SCHEMES[scheme]
        if parts.path not in ("", "/"):
            raise ImproperlyConfigured(f"PLI_EMAIL_URL {scheme}:// takes no path after host:port.")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"PLI_EMAIL_URL {scheme}:// has an invalid port.") from None
        if not parts.hostname:
            raise ImproperlyConfigured(f"PLI_EMAIL_URL {scheme}:// has no host name.")
        user = unquote(parts.username or "")
        password = unquote(parts.password or "")
        if password and not user:
            raise ImproperlyConfigured(f"PLI_EMAIL_URL {scheme}:// has a password without a user name.")
        if user and not password:
            # Django's SMTP backend logs in only when it has both: the user name alone would
            # be dropped, and the relay would refuse every message as unauthenticated.
            raise ImproperlyConfigured(f"PLI_EMAIL_URL {scheme}:// has a user name without a password.")
        if not (user + password).isascii():
            # smtplib encodes AUTH in ASCII: any other character made every login, and so
            # every e-mail, crash with UnicodeEncodeError instead of failing as a relay error.
            raise ImproperlyConfigured(
                f"PLI_EMAIL_URL {scheme}:// user name and password must be ASCII characters "
                "(Python's SMTP client cannot send others)."
            )
        return EmailSettings(
            backend=SMTP_BACKEND,
            host=parts.hostname,
            port=port or default_port,
            user=user,
            password=password,
            use_tls=use_tls,
            use_ssl=use_ssl,
        )
    raise ImproperlyConfigured(f"{_EXPECTED}; the scheme {scheme!r} is not supported.")


def parse_from_address(value: str | None, mail_domain: str) -> str:
    """``PLI_EMAIL_FROM`` (``Name <address>`` or a bare address), by default ``Pli <no-reply@domain>``."""
    if value is None or not value.strip():
        return f"Pli <no-reply@{mail_domain}>"
    value = value.strip()
    _name, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c in value for c in "\r\n"):
        raise ImproperlyConfigured("PLI_EMAIL_FROM must be an e-mail address, e.g. Pli <no-reply@pli.example.fr>.")
    return value


def email_settings(url: str, from_address: str | None, mail_domain: str) -> EmailSettings:
    return dataclasses.replace(parse_email_url(url), default_from=parse_from_address(from_address, mail_domain))


class EmlFileBackend(BaseEmailBackend):
    """Writes each message to its own ``.eml`` file, readable by the owner only.

    The file appears complete or not at all (written under a temporary name, flushed, then
    renamed), so a process watching the directory never reads half a message.
    """

    def __init__(self, file_path: str | None = None, fail_silently: bool = False, **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        from django.conf import settings

        path = file_path or getattr(settings, "EMAIL_FILE_PATH", None)
        if not path:
            raise ImproperlyConfigured("EMAIL_FILE_PATH is not set for the .eml file backend")
        self.directory = Path(path)

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            for message in email_messages:
                self._write(message)
                sent += 1
        except OSError:
            if not self.fail_silently:
                raise
        return sent

    def _write(self, message: EmailMessage) -> None:
        data = message.message().as_bytes()
        # Sortable by time, unique without coordination between processes.
        name = f"{time.time_ns()}-{secrets.token_hex(8)}.eml"
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".partial")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.directory / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def deliverable(address: str) -> bool:
    """Whether an address Django's validate_email accepted can be put in a message's To
    header. The validator takes control characters in a quoted local part
    ("a\x0bb:c"@example.org) and domain labels too long for IDNA; the e-mail package then
    refuses the header with an error that repeats the address, so such addresses are
    refused where they are typed."""
    if _CONTROL.search(address):
        return False
    try:
        address.rpartition("@")[2].encode("idna")
    except UnicodeError:
        return False
    return True


def writable(message: EmailMessage) -> bool:
    """Whether ``message`` can be written out (its headers put in wire form): checked before
    connecting, as what the e-mail package raises otherwise repeats the header's value."""
    try:
        message.message().as_bytes(linesep="\r\n")
    except (ValueError, email.errors.MessageError):
        return False
    return True


def message_id() -> str:
    """A Message-ID naming the instance's mail domain. Django's default names this machine
    (often "localhost"), and spam filters mark down messages whose Message-ID names no real
    domain: every e-mail Pli sends takes this one."""
    from django.conf import settings

    return make_msgid(domain=settings.PLI_MAIL_DOMAIN)


def send_templated(*, to: str, template_prefix: str, context: dict[str, Any]) -> bool:
    """Render ``<prefix>_subject.txt`` and ``<prefix>_message.txt`` and send one plain-text
    e-mail. Returns False (and logs the failure, without the address or content) when the
    relay refuses or cannot be reached: callers decide whether that is worth telling a user.
    """
    return send_templated_outcome(to=to, template_prefix=template_prefix, context=context) == SENT


# What became of an e-mail (send_templated_outcome).
SENT = "sent"
ADDRESS_REFUSED = "address_refused"  # this address only: the relay answered and refused it
NOT_SENT = "not_sent"  # the relay refused the message or could not be reached


def send_templated_outcome(*, to: str, template_prefix: str, context: dict[str, Any]) -> str:
    """As :func:`send_templated`, telling an address refused (it cannot be written in a
    header, or the relay refused it at RCPT TO: the relay works, the next address may go)
    from a relay that refuses or does not answer (the next would fail as well)."""
    from django.template.loader import render_to_string

    subject = " ".join(render_to_string(f"{template_prefix}_subject.txt", context).split())
    body = render_to_string(f"{template_prefix}_message.txt", context)
    message = EmailMessage(subject=subject, body=body, to=[to], headers={"Message-ID": message_id()})
    if not writable(message):
        logger.warning("e-mail %s not sent: an address or header the e-mail format cannot carry", template_prefix)
        return ADDRESS_REFUSED
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        logger.warning("e-mail %s not sent: %s", template_prefix, exc.__class__.__name__)
        return ADDRESS_REFUSED
    except (OSError, smtplib.SMTPException) as exc:
        logger.warning("e-mail %s not sent: %s", template_prefix, exc.__class__.__name__)
        return NOT_SENT
    return SENT
