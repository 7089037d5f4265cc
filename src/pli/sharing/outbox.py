"""Development only: ``/dev/outbox/`` shows the e-mails and SMS captured in files, so a
newcomer can follow a patient link on one machine. In production it does not exist (404)."""

from __future__ import annotations

import email
import email.policy
import json
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from pli.notify.email import FILE_BACKEND
from pli.notify.sms import FileBackend, parse_sms_url

SHOWN = 50
_LINK = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class Captured:
    channel: str
    name: str
    to: str
    subject: str
    text: str
    links: list[str]
    at: str


def email_directory() -> Path | None:
    if settings.EMAIL_BACKEND != FILE_BACKEND:
        return None
    return Path(settings.EMAIL_FILE_PATH)


def sms_directory() -> Path | None:
    backend = parse_sms_url(settings.PLI_SMS_URL)
    return backend.directory if isinstance(backend, FileBackend) else None


def _newest(directory: Path | None, suffix: str) -> list[Path]:
    if directory is None or not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.name.endswith(suffix) and not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.name, reverse=True)[:SHOWN]


def read_email(path: Path) -> Captured:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",)) if hasattr(message, "get_body") else None
    text = body.get_content() if body is not None else ""
    return Captured(
        channel="email",
        name=path.name,
        to=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        text=text,
        links=list(dict.fromkeys(_LINK.findall(text))),
        at=str(message.get("Date", "")),
    )


def read_sms(path: Path) -> Captured:
    record = json.loads(path.read_text(encoding="utf-8"))
    text = str(record.get("text", ""))
    return Captured(
        channel="sms",
        name=path.name,
        to=str(record.get("to", "")),
        subject="",
        text=text,
        links=list(dict.fromkeys(_LINK.findall(text))),
        at=str(record.get("created_at", "")),
    )


@require_GET
def outbox(request: HttpRequest) -> HttpResponse:
    if settings.PLI_ENV != "development":
        raise Http404
    emails = [read_email(p) for p in _newest(email_directory(), ".eml")]
    texts = [read_sms(p) for p in _newest(sms_directory(), ".json")]
    context = {
        "emails": emails,
        "texts": texts,
        "email_directory": email_directory(),
        "sms_directory": sms_directory(),
    }
    return render(request, "sharing/outbox.html", context)
