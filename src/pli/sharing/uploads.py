"""Uploaded documents are encrypted as they arrive: no plaintext upload ever touches the disk.

Django's default handlers keep small files in memory and write larger ones to a plaintext
temporary file. :class:`DocumentUploadHandler` replaces them on the views that accept files
(the practitioner's form, the API, the patient's reply): every chunk is encrypted at once
with a fresh data key, under the associated data of the object it will become (its id is
chosen up front), into a temporary file of the blob store, which becomes the final blob when
the part ends. The service then saves the object with that data key, in its transaction; a
blob whose transaction never commits is an orphan that the periodic cleanup removes.

The push-style blob writer and the file-name and content-type rules are the messaging ones
(:mod:`pli.messaging.uploads`), so an attachment and a shared document behave alike.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from pli.blobs import BlobStore
from pli.crypto import new_data_key
from pli.messaging.uploads import (
    BlobWriter,
    EncryptedUpload,
    PendingAttachment,
    TailRecorder,
    UploadSession,
    clean_content_type,
    clean_name,
)

DOCUMENTS_FIELD = "documents"
REPLY_FILES_FIELD = "files"
MB = 10**6
_FIELDS_ALLOWANCE = 4 * 2**20

# What a patient may send back (issue: JPEG, PNG, PDF, at most 10 MB each), recognised by
# their first bytes, never by the name or the declared type alone.
REPLY_TYPES: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}
_SNIFF_BYTES = 8


def share_blob_store() -> BlobStore:
    """The shares' blobs: a store of their own, so each app's orphan cleanup sees only its own."""
    return BlobStore(Path(settings.PLI_BLOB_DIR) / "shares")


def sniff(head: bytes, accepted: dict[str, tuple[bytes, ...]]) -> str | None:
    for content_type, magics in accepted.items():
        if head.startswith(magics):
            return content_type
    return None


class UploadRejected(Exception):
    """The upload breaks a rule; ``field`` names the form field, ``status`` the HTTP status."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class UploadRules:
    field: str
    max_files: int
    max_file_bytes: int
    max_total_bytes: int
    store: BlobStore
    aad_for: Callable[[uuid.UUID], bytes]
    # When set, only these types are accepted, recognised by their first bytes.
    accepted_types: dict[str, tuple[bytes, ...]] | None = None


def document_rules() -> UploadRules:
    from pli.sharing.models import ShareDocument

    return UploadRules(
        field=DOCUMENTS_FIELD,
        max_files=int(getattr(settings, "PLI_SHARE_MAX_DOCUMENTS", 20)),
        max_file_bytes=int(getattr(settings, "PLI_SHARE_MAX_DOCUMENT_BYTES", 100 * MB)),
        max_total_bytes=int(getattr(settings, "PLI_SHARE_MAX_BYTES", 200 * MB)),
        store=share_blob_store(),
        aad_for=lambda pending_id: ShareDocument(id=pending_id).blob_aad("content"),
    )


# The same plumbing as messaging's attachments, under the names this app's code reads best
# with: a finished durable blob, the blobs of one request, and what request.FILES holds.
PendingFile = PendingAttachment
UploadBatch = UploadSession
EncryptedFile = EncryptedUpload


class DocumentUploadHandler(FileUploadHandler):
    # Read the body 1 MiB at a time: gunicorn reads ahead up to 1 MiB and copies what it
    # holds beyond each read, so smaller reads copy the same bytes over and over.
    chunk_size = 2**20

    def __init__(self, request: HttpRequest, batch: UploadBatch, rules: UploadRules) -> None:
        super().__init__(request)
        self.batch = batch
        self.rules = rules
        self.total = 0
        self.files = 0
        self.writer: BlobWriter | None = None
        self._pending_id: uuid.UUID | None = None
        self._key = b""
        self._file_bytes = 0
        self._recorder: TailRecorder | None = None
        self._boundary = b""
        self._content_length = 0
        self.interrupted = False

    def _too_large(self) -> UploadRejected:
        if self.total > self.rules.max_total_bytes:
            message = _("The files can total at most %(size)s.") % {"size": filesizeformat(self.rules.max_total_bytes)}
        else:
            message = _("Each file can be at most %(size)s.") % {"size": filesizeformat(self.rules.max_file_bytes)}
        return UploadRejected(self.rules.field, message, status=413)

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: str, encoding: str | None = None
    ) -> None:
        if content_length > self.rules.max_total_bytes + _FIELDS_ALLOWANCE:
            self.total = content_length
            raise self._too_large()
        # Django passes the boundary as bytes, whatever its annotation says.
        raw_boundary: Any = boundary
        self._boundary = raw_boundary if isinstance(raw_boundary, bytes) else str(raw_boundary).encode("ascii")
        self._content_length = content_length
        stream = getattr(input_data, "_stream", None)
        if stream is not None:
            self._recorder = TailRecorder(stream)
            input_data._stream = self._recorder
        return None

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name != self.rules.field:
            raise UploadRejected(
                field_name, _("Files are accepted only in the “%(field)s” field.") % {"field": self.rules.field}
            )
        self.files += 1
        if self.files > self.rules.max_files:
            raise UploadRejected(
                self.rules.field, _("At most %(count)d files can be sent at once.") % {"count": self.rules.max_files}
            )
        self._pending_id = uuid.uuid4()
        self._key = new_data_key()
        self._file_bytes = 0
        self.writer = BlobWriter(
            self.batch.store, self._pending_id.hex, self._key, self.rules.aad_for(self._pending_id)
        )
        self.batch.open_writers.add(self.writer)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.writer is not None  # noqa: S101 - new_file() always runs first
        self.total += len(raw_data)
        self._file_bytes += len(raw_data)
        if self.total > self.rules.max_total_bytes or self._file_bytes > self.rules.max_file_bytes:
            self._abort_current()
            raise self._too_large()
        try:
            self.writer.write(raw_data)
        except BaseException:
            self._abort_current()
            raise
        if self.rules.accepted_types is not None and len(self.writer.head) >= _SNIFF_BYTES:
            self._check_type(self.writer.head)
        return None

    def _check_type(self, head: bytes) -> str:
        assert self.rules.accepted_types is not None  # noqa: S101 - callers check
        found = sniff(head, self.rules.accepted_types)
        if found is None:
            self._abort_current()
            raise UploadRejected(self.rules.field, _("Only PDF, JPEG and PNG files are accepted."), status=415)
        return found

    def file_complete(self, file_size: int) -> EncryptedFile | None:
        writer, pending_id = self.writer, self._pending_id
        if writer is None or pending_id is None:
            return None
        name = clean_name(self.file_name or "")
        if self.rules.accepted_types is not None:
            content_type = self._check_type(writer.head)
        else:
            content_type = clean_content_type(self.content_type, name, writer.head)
        self.writer = None
        self.batch.open_writers.discard(writer)
        writer.finish()
        pending = PendingFile(
            id=pending_id,
            key=self._key,
            name=name,
            content_type=content_type,
            size=writer.size,
            sha256=writer.sha256,
            completed_at=time.monotonic(),
        )
        self.batch.pending.append(pending)
        return EncryptedFile(pending, self.field_name)

    def upload_interrupted(self) -> None:
        self.interrupted = True
        self._abort_current()

    def upload_complete(self) -> None:
        self._abort_current()
        recorder = self._recorder
        if recorder is not None:
            complete = recorder.count >= self._content_length and b"--" + self._boundary + b"--" in recorder.tail
            if not complete:
                self.interrupted = True
        if self.interrupted:
            raise UploadRejected(
                self.rules.field,
                _("The upload was cut off before its end; nothing was saved. Please send it again."),
            )
        return None

    def _abort_current(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.batch.open_writers.discard(self.writer)
            self.writer = None


def install(request: HttpRequest, batch: UploadBatch, rules: UploadRules) -> None:
    """Make ``request`` encrypt its file uploads into ``batch`` (before anything reads POST)."""
    request.upload_handlers = [DocumentUploadHandler(request, batch, rules)]


def pending_files(files: Any, field_name: str) -> list[PendingFile]:
    """The encrypted files of a parsed request, in upload order."""
    return [f.pending for f in files.getlist(field_name) if isinstance(f, EncryptedFile)]
