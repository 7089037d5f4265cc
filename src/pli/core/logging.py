"""Log hygiene: secrets that can appear in request paths, and the values of query parameters
that may carry health data, never reach a log line."""

from __future__ import annotations

import contextvars
import logging
import re
from urllib.parse import unquote

# Patient links (/p/<token>) and single-use invitation or reset links carry bearer secrets.
_SECRET_PATH = re.compile(r"(/(?:p|invitation|invitations|password/reset/key)/)[^/\s\"?]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
# Anything shaped like a link token or a patient session key (43 URL-safe characters), where
# it may appear: a request line spelled another way, a header a client filled with it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


# Query parameters whose values are ids, cursors or switches, written as they are. Any other
# parameter's value is masked: a search's words are patient names and INS
# (GET /api/v1/mailboxes/{id}/messages?q=...), and a parameter added later is masked until
# someone decides it is harmless. Not "next": it holds a whole URL, query string included.
SAFE_QUERY_PARAMETERS = frozenset(
    {
        "after_uid", "cursor", "download", "folder", "format", "forward", "lang", "language", "limit", "mailbox",
        "message", "mode", "page", "patient_of", "replied", "reply_to", "sent", "session",
        "to", "unread", "wait",
    }
)  # fmt: skip
_QUERY_PARAMETER = re.compile(r"([?&;])([^=&;?#\s\"]+)=([^&;#\s\"]*)")


def _mask_query_value(found: re.Match[str]) -> str:
    separator, name, value = found.groups()
    if not value or unquote(name).lower() in SAFE_QUERY_PARAMETERS:
        return found.group()
    return f"{separator}{name}=[redacted]"


def redact(text: str) -> str:
    # Routing reads the path percent-decoded: "/%70/<token>" and "/p%2F<token>" reach the
    # patient pages, so the secrets are looked for in the decoded text too.
    text = _QUERY_PARAMETER.sub(_mask_query_value, text)
    decoded = unquote(text)
    masked = _SECRET_PATH.sub(r"\1[redacted]", decoded)
    if masked != decoded:
        # Logged decoded, so its line breaks and other controls go back to %XX: a request
        # for "/p/x%0A<a forged log line>" must stay one line.
        text = _CONTROL.sub(lambda found: f"%{ord(found.group()):02X}", masked)
    else:
        text = _SECRET_PATH.sub(r"\1[redacted]", text)
    text = _QUERY_PARAMETER.sub(_mask_query_value, text)
    return _TOKEN.sub("[redacted]", _BEARER.sub(r"\1[redacted]", text))


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


class WithoutTraceback(logging.Filter):
    """For requests refused as expected (a wrong Host header, from a load balancer probing by
    IP or a scanner; a form over Django's size limits): one line, not a traceback logged as an
    error."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class PliHostSetting(logging.Filter):
    """Django's refusal of a Host header says to add it "to ALLOWED_HOSTS", a setting the
    operator cannot reach: Pli builds it from PLI_PUBLIC_URL and PLI_ALLOWED_HOSTS. Most
    often the reverse proxy did not pass the Host header on."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.endswith(" to ALLOWED_HOSTS."):
            record.msg = message.removesuffix(" to ALLOWED_HOSTS.") + (
                " to PLI_ALLOWED_HOSTS if it is a name of this instance, or have the reverse proxy "
                "pass the Host header of PLI_PUBLIC_URL."
            )
            record.args = None
        return True


# The id of the request being handled on this thread, for log lines ("-" outside requests).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("pli_request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def forget_request_id(**_: object) -> None:
    """request_finished receiver: lines logged between requests carry no request's id."""
    request_id_var.set("-")


class JobCrashed(Exception):
    """What a background job raises in place of an unexpected error (see
    :func:`jobs_crash_without_values`): the error's type and where it happened."""


def crash_summary(exc: BaseException) -> str:
    """An unexpected error's type, its errno or SQLSTATE when it has one, and the last frames
    it went through: what an operator needs to find the bug, without the error's message,
    which may repeat a value (a patient's address refused by the e-mail package, a
    database row's key in PostgreSQL's DETAIL)."""
    import traceback
    from pathlib import Path

    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    code = getattr(exc, "sqlstate", None) or getattr(exc, "errno", None)
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{kind}{f' ({code})' if code else ''} at {where}"


class jobs_crash_without_values:
    """Around a background job's body: an unexpected error is logged and raised again as
    :class:`JobCrashed`, with :func:`crash_summary` only and its cause dropped. django-tasks
    keeps the traceback of a job that raised in its database row, in clear, and the worker
    logs it: neither may carry a value from the error's message."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, JobCrashed):
            return
        summary = crash_summary(exc)
        self._log.error("%s crashed: %s", self._what, summary)
        raise JobCrashed(summary) from None
