"""Uploaded documents are encrypted as they arrive: no plaintext upload ever touches the disk.

Django's default handlers keep small files in memory and write larger ones to a plaintext
temporary file. Messaging's :class:`~pli.messaging.uploads.EncryptingUploadHandler`, under
this app's :class:`UploadRules`, replaces them on the views that accept files (the
practitioner's form, the API, the patient's reply): every chunk is encrypted at once
with a fresh data key, under the associated data of the object it will become (its id is
chosen up front), into a temporary file of the blob store, which becomes the final blob when
the part ends. The service then saves the object with that data key, in its transaction; a
blob whose transaction never commits is an orphan that the periodic cleanup removes.

The handler, the blob writer and the file-name and content-type rules are the messaging
ones (:mod:`pli.messaging.uploads`), so an attachment and a shared document behave alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from pli.blobs import BlobStore
from pli.messaging.uploads import EncryptedUpload, PendingAttachment, UploadSession

# One upload handler serves both apps (pli.messaging.uploads); this app names its own rules.
from pli.messaging.uploads import UploadRejected as UploadRejected
from pli.messaging.uploads import UploadRules as UploadRules
from pli.messaging.uploads import empty_file_message as empty_file_message
from pli.messaging.uploads import install as install
from pli.messaging.uploads import sniff as sniff
from pli.messaging.uploads import texts_read as texts_read
from pli.messaging.uploads import wrong_type_message as wrong_type_message

DOCUMENTS_FIELD = "documents"
REPLY_FILES_FIELD = "files"
MB = 10**6

# What a patient may send back (issue: JPEG, PNG, PDF, at most 10 MB each), recognised by
# their first bytes, never by the name or the declared type alone.
REPLY_TYPES: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}


def share_blob_store() -> BlobStore:
    """The shares' blobs: a store of their own, so each app's orphan cleanup sees only its own."""
    return BlobStore(Path(settings.PLI_BLOB_DIR) / "shares")


def document_rules() -> UploadRules:
    from pli.sharing.models import ShareDocument

    return UploadRules(
        field=DOCUMENTS_FIELD,
        max_files=int(getattr(settings, "PLI_SHARE_MAX_DOCUMENTS", 20)),
        max_file_bytes=int(getattr(settings, "PLI_SHARE_MAX_DOCUMENT_BYTES", 100 * MB)),
        max_total_bytes=int(getattr(settings, "PLI_SHARE_MAX_BYTES", 200 * MB)),
        store=share_blob_store(),
        aad_for=lambda pending_id: ShareDocument(id=pending_id).blob_aad("content"),
        allow_empty=False,
    )


# The same plumbing as messaging's attachments, under the names this app's code reads best
# with: a finished durable blob, the blobs of one request, and what request.FILES holds.
PendingFile = PendingAttachment
UploadBatch = UploadSession
EncryptedFile = EncryptedUpload


def pending_files(files: Any, field_name: str) -> list[PendingFile]:
    """The encrypted files of a parsed request, in upload order."""
    return [f.pending for f in files.getlist(field_name) if isinstance(f, EncryptedFile)]
