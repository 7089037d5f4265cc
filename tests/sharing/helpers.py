"""Test helpers for patient shares: documents, shares, the worker run in-process, the
patient's steps through the real pages, and what the notification channels received."""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import Client
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction

from pli.accounts.models import User
from pli.crypto import new_data_key
from pli.sharing import services
from pli.sharing.models import PatientShare, ShareDocument, ShareNotification
from pli.sharing.uploads import PendingFile, share_blob_store
from pli.testing.accounts import make_user

BIRTH_DATE = datetime.date(1984, 2, 15)
MOBILE = "+33612345678"
EMAIL = "patient@example.org"
_LINK = re.compile(r"/p/([A-Za-z0-9_-]{43})")
_CODE = re.compile(r"\b(\d{6})\b")


def pdf_bytes(marker: str = "") -> bytes:
    """A small, well-formed one-page PDF whose text is ``marker``."""
    text = (marker or "Hello").replace("(", "").replace(")", "")
    stream = f"BT /F1 18 Tf 20 60 Td ({text}) Tj ET".encode()
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 400 144]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>",
        b"<</Length " + str(len(stream)).encode() + b">>stream\n" + stream + b"\nendstream",
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer<</Size {len(objects) + 1}/Root 1 0 R>>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def pending_document(
    name: str = "résultats.pdf", content: bytes | None = None, content_type: str = "application/pdf"
) -> PendingFile:
    """A document encrypted into the shares' blob store, as the upload handler leaves it."""
    content = pdf_bytes(name) if content is None else content
    document_id = uuid.uuid4()
    key = new_data_key()
    info = share_blob_store().put(document_id.hex, [content], key, ShareDocument(id=document_id).blob_aad("content"))
    return PendingFile(
        id=document_id,
        key=key,
        name=name,
        content_type=content_type,
        size=info.size,
        sha256=info.sha256,
        completed_at=time.monotonic(),
    )


def share_input(**overrides: Any) -> services.ShareInput:
    fields: dict[str, Any] = {
        "given_name": "Élodie",
        "family_name": "Durand",
        "birth_date": BIRTH_DATE,
        "email": EMAIL,
        "mobile": MOBILE,
        "message": "Voici vos résultats.",
    }
    fields.update(overrides)
    return services.ShareInput(**fields)


def make_share(
    user: User | None = None,
    *,
    documents: list[PendingFile] | None = None,
    now: datetime.datetime | None = None,
    **fields: Any,
) -> tuple[PatientShare, str]:
    """A share made through the service, and the token of its link (read from the queued
    notification, exactly what the worker would send)."""
    user = user or make_user()
    share = services.create_share(user, share_input(**fields), documents or [pending_document()], now=now)
    return share, token_of(share)


def token_of(share: PatientShare) -> str:
    """The token in the share's latest link notification still waiting to be sent."""
    pending = share.notifications.filter(
        state=ShareNotification.State.PENDING, kind__in=[ShareNotification.Kind.LINK, ShareNotification.Kind.REMINDER]
    ).order_by("-created_at")
    for notification in pending:
        match = _LINK.search(notification.text or "")
        if match:
            return match.group(1)
    raise AssertionError("no pending link notification")


def link_token(text: str) -> str:
    match = _LINK.search(text)
    assert match, "no patient link in the text"
    return match.group(1)


def code_in(text: str) -> str:
    match = _CODE.search(text)
    assert match, "no 6-digit code in the text"
    return match.group(1)


def make_due() -> None:
    """Let every waiting job run now (time "passes" without sleeping)."""
    DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now() - datetime.timedelta(seconds=1))


def run_tasks(limit: int = 100) -> int:
    """Run the jobs that are due, in this process, with the worker's own task runner."""
    worker = Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )
    done = 0
    while done < limit:
        with exclusive_transaction():
            task = DBTaskResult.objects.ready().get_locked()
            if task is not None:
                task.claim(worker.worker_id)
        if task is None:
            return done
        worker.run_task(task)
        done += 1
    return done


def sms_dir() -> Path:
    url = settings.PLI_SMS_URL
    assert url.startswith("file://")
    return Path(url.removeprefix("file://"))


def sms_messages() -> list[dict[str, Any]]:
    directory = sms_dir()
    if not directory.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def last_sms(to: str = MOBILE) -> str:
    texts = [m["text"] for m in sms_messages() if m["to"] == to]
    assert texts, f"no SMS to {to}"
    return str(texts[-1])


def last_code(to: str = MOBILE) -> str:
    """The code in the latest one-time code SMS to ``to``. Not simply the latest SMS: codes
    go before links in the queue, so a link queued earlier may arrive after the code."""
    texts = [m["text"] for m in sms_messages() if m["to"] == to and "/p/" not in m["text"]]
    assert texts, f"no code SMS to {to}"
    return code_in(str(texts[-1]))


class Patient:
    """A patient's browser, driven through the real pages with Django's test client."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.client = Client()

    def url(self, suffix: str = "") -> str:
        return f"/p/{self.token}{suffix}"

    def get(self, suffix: str = "", **kwargs: Any) -> Any:
        return self.client.get(self.url(suffix), **kwargs)

    def birth_date(self, value: str = "15/02/1984") -> Any:
        return self.client.post(self.url(), {"birth_date": value})

    def code(self, value: str) -> Any:
        return self.client.post(self.url("/code"), {"code": value})

    def new_code(self, channel: str = "") -> Any:
        return self.client.post(self.url("/code/new"), {"channel": channel} if channel else {})

    def sign_in(self, birth_date: str = "15/02/1984", to: str = MOBILE) -> Any:
        """Birth date, the code the worker delivers by SMS, then the documents page."""
        response = self.birth_date(birth_date)
        assert response.status_code == 303, response.status_code
        run_tasks()
        response = self.code(last_code(to))
        assert response.status_code == 303, response.status_code
        return self.get("/documents")
