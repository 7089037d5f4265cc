"""Log hygiene: secrets that can appear in request paths never reach a log line."""

from __future__ import annotations

import logging
import re

# Patient links (/p/<token>) and single-use invitation or reset links carry bearer secrets.
_SECRET_PATH = re.compile(r"(/(?:p|invitation|invitations|password/reset/key)/)[^/\s\"?]+")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _SECRET_PATH.sub(r"\1[redacted]", text))


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
