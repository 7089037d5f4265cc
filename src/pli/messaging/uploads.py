"""Attachments are encrypted as they arrive: no plaintext upload ever touches the disk.

Django's default upload handlers keep small files in memory and write larger ones to a
plaintext temporary file. :class:`EncryptingUploadHandler` replaces them for the messaging
views (web and API): every chunk of an ``attachments`` part is encrypted at once with a
fresh data key, under the associated data of the :class:`~pli.messaging.models.Attachment`
it will become (its id is chosen up front), into a temporary file of the blob store. When
the part ends the blob is fsynced and renamed to its final place, *before* the message's
transaction commits; a blob whose transaction never commits is an orphan that
:func:`pli.messaging.services.cleanup_orphan_blobs` removes later.

Limits (number of files, total bytes) are enforced while the bytes arrive, so an oversized
upload is refused early instead of being stored first. A multipart body that ends before
its closing boundary (a client that went away, a proxy that cut it) is refused: Django
would otherwise silently drop the unfinished part and keep the rest.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import email.message
import email.utils
import hashlib
import logging
import mimetypes
import os
import re
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParser
from django.utils.encoding import force_str
from django.utils.http import parse_header_parameters
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from pli.blobs import BlobStore
from pli.blobs.store import fsync_dir, make_dirs
from pli.core import charsets
from pli.core.charsets import codec_name
from pli.core.db import commit_may_have_happened
from pli.core.sizes import limit_size
from pli.crypto import StreamEncryptor, new_data_key
from pli.messaging import structured

logger = logging.getLogger(__name__)

ATTACHMENTS_FIELD = "attachments"
# Beyond the attachments, a request carries form fields (Django caps them at
# DATA_UPLOAD_MAX_MEMORY_SIZE) and multipart framing.
_FIELDS_ALLOWANCE = 4 * 2**20
_TAIL_SIZE = 4096
# Django's parser refuses a part whose headers (after the delimiter's line break) do not
# end within its first 1 KiB (MAX_TOTAL_HEADER_SIZE): ours are refused a little earlier.
_PART_HEADER_LIMIT = 1000
# A filename parameter on a Content-Disposition line of a part's headers.
_FILE_NAME_PARAM = re.compile(rb"(?im)^content-disposition:[^\r\n]*\bfilename\*?=")
_PART_NAME = re.compile(rb'\bname="([^"]*)"')
_PREAMBLE_LIMIT = 1024
_BARE_LF = re.compile(rb"(?<!\r)\n")
# What Django's parser decodes (base64) or passes through as they are (it lowercases them).
_TRANSFER_ENCODINGS = {"base64", "binary", "8bit", "7bit"}
# Above any text field's own limit (a message body: 200,000 characters, at most 800 KB).
_TEXT_PART_LIMIT = 1_000_000
_SNIFF_BYTES = 8
MAX_NAME_LENGTH = 255
# A committed message must never point at a blob that the orphan cleanup could already have
# removed: an upload older than this is refused at send time, and the cleanup only touches
# blobs older than PLI_ORPHAN_BLOB_AGE (one hour by default, always at least twice this).
MAX_PENDING_AGE = 30 * 60

# Types a browser may show inline; anything else is downloaded. SVG is absent on purpose
# (it can carry scripts). The first bytes must agree with the declared type.
INLINE_TYPES = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
OCTET_STREAM = "application/octet-stream"


class UploadRejected(Exception):
    """The upload breaks a rule; ``field`` names the form field, ``status`` the HTTP status."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


def max_attachments() -> int:
    return int(settings.PLI_MAX_ATTACHMENTS)


def max_message_bytes() -> int:
    return int(settings.PLI_MAX_MESSAGE_BYTES)


def too_many_message() -> str:
    count = max_attachments()
    return ngettext(
        "A message can carry at most %(count)d attachment.", "A message can carry at most %(count)d attachments.", count
    ) % {"count": count}


def too_large_message() -> str:
    return _("Attachments can total at most %(size)s per message.") % {"size": limit_size(max_message_bytes())}


def wrong_type_message() -> str:
    """The refusal of a file of a type the form does not take; ``%(name)s`` stands for its
    name (the patient page's script fills it in too)."""
    return _("“%(name)s” cannot be sent: only PDF, JPEG and PNG files are accepted.")


def empty_file_message() -> str:
    """The refusal of an empty file where the form wants content (a patient's document);
    ``%(name)s`` stands for its name (the share form's script fills it in too)."""
    return _("The file “%(name)s” is empty.")


def blob_store() -> BlobStore:
    """The messaging blobs: a store of their own, so the orphan cleanup never sees another
    app's blobs."""
    return BlobStore(Path(settings.PLI_BLOB_DIR) / "messages")


def attachment_aad(attachment_id: uuid.UUID) -> bytes:
    from pli.messaging.models import Attachment

    return Attachment(id=attachment_id).blob_aad("content")


def clean_name(name: str) -> str:
    name = name.strip() or "attachment"
    if len(name) <= MAX_NAME_LENGTH:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and 0 < len(ext) <= 16:
        return stem[: MAX_NAME_LENGTH - len(ext) - 1] + "." + ext
    return name[:MAX_NAME_LENGTH]


def clean_content_type(declared: str | None, name: str, head: bytes) -> str:
    """The type to serve the file with: the declared one if plausible, else a guess from the
    name; a type we would show inline must match the file's first bytes."""
    value = (declared or "").split(";")[0].strip().lower()
    if not _CONTENT_TYPE.fullmatch(value) or value == OCTET_STREAM:
        value = (mimetypes.guess_type(name, strict=False)[0] or OCTET_STREAM).lower()
    magics = INLINE_TYPES.get(value)
    if magics is not None and not head.startswith(magics):
        return OCTET_STREAM
    if value == "image/webp" and head[8:12] != b"WEBP":
        return OCTET_STREAM
    return value


@dataclass
class PendingAttachment:
    """A finished, durable blob waiting for its message's transaction."""

    id: uuid.UUID
    key: bytes = field(repr=False)
    name: str = field(repr=False)
    content_type: str
    size: int
    sha256: str = field(repr=False)
    completed_at: float  # time.monotonic()
    format: str = field(default="", repr=False)  # pli.messaging.structured: "cda", "hprim"…

    @property
    def blob_id(self) -> str:
        return self.id.hex


class BlobWriter:
    """Encrypts pushed plaintext into a blob: ``write()`` pieces, then ``finish()`` or ``abort()``.

    The push-style counterpart of :meth:`BlobStore.put`, for data that arrives by callbacks
    (upload handlers). Same layout and guarantees: ``tmp/`` first, fsync, rename, fsync dir.
    """

    def __init__(self, store: BlobStore, blob_id: str, key: bytes, aad: bytes) -> None:
        self.store = store
        self._done = True  # until the temporary file exists
        self.blob_id = blob_id
        self.final = store.path_for(blob_id)
        make_dirs(store.temp_dir)
        fd, self.temp_name = tempfile.mkstemp(dir=store.temp_dir, prefix=f"{blob_id}.", suffix=".part")
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._done = False
        self._encryptor = StreamEncryptor(key, aad)
        self.size = 0
        self.head = b""
        self._digest = hashlib.sha256()
        try:
            self._write(self._encryptor.header)
        except BaseException:
            self.abort()
            raise

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written or 0 :]

    def write(self, data: bytes) -> None:
        if len(self.head) < structured.SNIFF_BYTES:
            self.head += data[: structured.SNIFF_BYTES - len(self.head)]
        self.size += len(data)
        self._digest.update(data)
        for piece in self._encryptor.update(data):
            self._write(piece)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def finish(self) -> None:
        try:
            self._write(self._encryptor.finalize())
            os.fsync(self._file.fileno())
            self._file.close()
            make_dirs(self.final.parent)
            os.rename(self.temp_name, self.final)
            self._done = True
        except BaseException:
            self.abort()
            raise
        fsync_dir(self.final.parent)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_name)


class UploadSession:
    """The blobs written for one request. Unless :meth:`keep` is called (the message was
    saved), :meth:`discard` deletes them; a crash in between leaves orphans for the cleanup.

    Used as a context manager, a failure whose transaction may have committed all the same
    (the connection to the database broke: :func:`pli.core.db.commit_may_have_happened`)
    keeps the blobs: rows may reference them, and the orphan clean-up removes them later
    only if none does."""

    def __init__(self, store: BlobStore | None = None) -> None:
        self.store = store or blob_store()
        self.pending: list[PendingAttachment] = []
        self.open_writers: set[BlobWriter] = set()
        self._kept = False

    def add(self, pending: PendingAttachment) -> None:
        self.pending.append(pending)

    def keep(self) -> None:
        self._kept = True

    def discard(self) -> None:
        for writer in list(self.open_writers):
            writer.abort()
        self.open_writers.clear()
        if self._kept:
            return
        for item in self.pending:
            with contextlib.suppress(OSError):
                self.store.delete(item.blob_id)
        self.pending.clear()

    def __enter__(self) -> UploadSession:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        if not self._kept and self.pending and commit_may_have_happened(exc):
            logger.warning(
                "the database failed with a commit's outcome unknown: %d uploaded blob(s) left to the orphan clean-up",
                len(self.pending),
            )
            self.keep()
        self.discard()


class EncryptedUpload(UploadedFile):
    """What ``request.FILES`` holds for an encrypted attachment: its metadata, no content."""

    def __init__(self, pending: PendingAttachment, field_name: str) -> None:
        super().__init__(file=None, name=pending.name, content_type=pending.content_type, size=pending.size)
        self.pending = pending
        self.field_name = field_name

    def close(self) -> None:  # nothing is open
        return None


class TailRecorder:
    """Wraps the request stream, counting bytes and keeping the last few, to tell a complete
    multipart body (closing boundary present, full length read) from a truncated one.

    It also reads every part as it passes and refuses (raising :class:`UploadRejected`,
    naming the part's field, ``field`` when unknown) what Django's parser would quietly
    mishandle, so that a send never succeeds without what was sent:

    * a part Django skips: headers that are not UTF-8 (a file named in Windows-1252 by an
      older client) or that it cannot parse, no ``Content-Disposition`` or no field name, a
      file name that is empty once cleaned (``..``, ``dossier/``);
    * the boundary anywhere but after a CRLF: Django splits there too, so a file holding
      ``--boundary`` was cut short, and a body written with bare LF line breaks lost parts;
    * headers over Django's 1 KiB limit (a file name of a thousand characters), which it
      refuses with an English message naming no field;
    * a text field that is not in the request's encoding (Django would store ``�`` in place
      of every unreadable character), or far too long (Django's 2.5 MB refusal names no field).

    File names are kept as sent (:attr:`file_names`, per file part, in order): Django's
    own cleaning also decodes HTML entities, turning ``bilan&notes.pdf`` into ``bilan¬es.pdf``.
    """

    def __init__(
        self, stream: Any, boundary: bytes, field: str, encoding: str | None = None, body_field: str | None = None
    ) -> None:
        self._stream = stream
        self.count = 0
        self.tail = b""
        self._field = field
        # What a fault of the whole body (not of one part) is blamed on.
        self._body_field = body_field or field
        self._encoding = codec_name(encoding) or codec_name(settings.DEFAULT_CHARSET) or "utf-8"
        self._dash = b"--" + boundary
        # The last bytes read, for a boundary (and the CRLF before it) cut by a read. The body
        # begins as if after a line break: its first delimiter needs none.
        self._before = b"\r\n"
        # After a boundary: the part's headers as they arrive.
        self._header: bytearray | None = None
        # The text part being read: its field, the stream offset of its first byte, its bytes.
        self._text_field: str | None = None
        self._text_start = 0
        self._text = bytearray()
        self._text_base64 = False
        self._text_charset: str | None = None
        # Text parts that name a charset of their own (RFC 7578, as Java's HttpClient does
        # with ISO-8859-1): field -> its values in order, each None or read in that charset.
        self.text_values: dict[str, list[str | None]] = {}
        # Every text read, by field: shown again when a later part is refused (texts_read).
        self.texts: dict[str, list[str]] = {}
        self._part_field: str | None = None
        self._last_field: str | None = None
        self._preamble = True  # before the first boundary
        self._head = bytearray()  # the body's first bytes, while it is
        # Per file part, in order: the name Django's parser will give, and the name as sent.
        self.file_names: collections.deque[tuple[str, str]] = collections.deque()

    def _seen(self, data: bytes) -> bytes:
        if self._preamble and len(self._head) <= _PREAMBLE_LIMIT:
            self._head += data[: _PREAMBLE_LIMIT + 1 - len(self._head)]
        self.count += len(data)
        self.tail = (self.tail + data[-_TAIL_SIZE:])[-_TAIL_SIZE:]
        self._scan(data)
        self._before = (self._before + data[-len(self._dash) - 1 :])[-len(self._dash) - 1 :]
        return data

    def _scan(self, data: bytes) -> None:
        # By position, not by slicing: a read is up to 1 MiB, and the file data in it is
        # only searched, never copied (text parts, a few kB, are kept to be decoded).
        dash, base = self._dash, self.count - len(data)
        pos, size = 0, len(data)
        if self._header is None:
            # A boundary that began in the previous read.
            before = self._before
            joined = before + data[: len(dash) - 1]
            found = joined.find(dash, max(0, len(before) - len(dash) + 1))
            if -1 < found < len(before):
                self._text_bytes(data, 0, found + len(dash) - len(before))
                self._boundary_at(base - len(before) + found, joined[found - 2 : found])
                pos = found + len(dash) - len(before)
        while pos < size:
            if self._header is not None:
                before_len = len(self._header)
                self._header += data[pos : pos + _PART_HEADER_LIMIT + 4 - before_len]
                if self._header.startswith(b"--"):
                    if self._header.startswith(dash):
                        # "--boundary--boundary": Django sees a second boundary there, not
                        # the closing one.
                        self._malformed(self._last_field)
                    if len(self._header) < len(dash) and dash.startswith(self._header):
                        return  # it may still turn out to be a boundary: the next read says
                    # The closing delimiter. Django goes on reading after it: what follows up
                    # to a blank line it parses as one more part's headers.
                    end = self._header.find(b"\r\n\r\n")
                    if end == -1 and len(self._header) <= _PART_HEADER_LIMIT:
                        return  # the epilogue goes on in the next read (or the body ends)
                    taken = len(self._header) if end == -1 else end + 4
                    if self._header[2:taken].strip(b" \t\r\n") if end != -1 else dash in self._header:
                        self._malformed(self._last_field)  # a part after the closing boundary
                    pos += taken - before_len
                    self._header = None
                    self._part_field = None
                    continue
                if len(self._header) < 2:
                    return  # one byte after a delimiter: "-" may begin the closing one
                end = self._header.find(b"\r\n\r\n")
                if end == -1:
                    if len(self._header) <= _PART_HEADER_LIMIT:
                        return  # all of ``data`` taken; the headers go on in the next read
                    self._check_header(bytes(self._header))  # refuses: too long
                pos += end + 4 - before_len
                self._check_header(bytes(self._header[:end]), start=base + pos)
                self._header = None
                continue
            found = data.find(dash, pos)
            if found == -1:
                self._text_bytes(data, pos, size)
                return
            self._text_bytes(data, pos, found + len(dash))
            preceding = data[found - 2 : found] if found >= 2 else (self._before + data[:found])[-2:]
            self._boundary_at(base + found, preceding)
            pos = found + len(dash)

    def _boundary_at(self, offset: int, preceding: bytes) -> None:
        """A boundary string begins at stream ``offset``, after the bytes ``preceding``."""
        if preceding != b"\r\n":
            self._malformed(self._part_field)
        if self._text_field is not None:
            # The CRLF before the boundary belongs to it, not to the field's value.
            self._end_text(offset - 2)
        if self._preamble:
            # Django reads what precedes the first boundary as a part of its own (with headers,
            # a field nobody checked): only line breaks may come before it.
            if offset > _PREAMBLE_LIMIT or bytes(self._head[:offset]).strip(b" \t\r\n"):
                self._malformed(None)
            self._preamble, self._head = False, bytearray()
        self._header = bytearray()
        self._last_field, self._part_field = self._part_field, None

    def _text_bytes(self, data: bytes, start: int, end: int) -> None:
        """Keep ``data[start:end]`` if a text part is being read (the end may overshoot)."""
        if self._text_field is None or end <= start:
            return
        self._text += data[start:end]
        # Django refuses text fields past DATA_UPLOAD_MAX_MEMORY_SIZE in all, without saying
        # which: one far beyond any field's own limit is named here.
        if len(self._text) > _TEXT_PART_LIMIT + len(self._dash) + 2:
            raise UploadRejected(self._text_field, _("This field is far too long; nothing was saved."))

    def _end_text(self, end: int) -> None:
        assert self._text_field is not None  # noqa: S101 - callers check
        value = bytes(self._text[: max(0, end - self._text_start)])
        field, self._text_field, self._text = self._text_field, None, bytearray()
        if len(value) > _TEXT_PART_LIMIT:
            raise UploadRejected(field, _("This field is far too long; nothing was saved."))
        if self._text_base64:
            try:
                # Strictly: Django's lenient decoding kept "Patient stable. " of two joined
                # pieces and dropped "Allergie pénicilline : NE PAS PRESCRIRE." without a word.
                value = base64.b64decode(b"".join(value.split()), validate=True)
            except (binascii.Error, ValueError):
                raise UploadRejected(field, _("This field's base64 could not be read; nothing was saved.")) from None
        encoding = self._text_charset or self._encoding
        values = self.text_values.setdefault(field, [])
        try:
            text = value.decode(encoding)
        except UnicodeDecodeError:
            text = None
        # Django reads every text part in the request's charset: a part's own is applied after.
        values.append(text if encoding != self._encoding else None)
        if text is not None:
            self.texts.setdefault(field, []).append(text)
        if text is None:
            raise UploadRejected(
                field,
                _(
                    "This text could not be read: it is not encoded in %(encoding)s. Send it in "
                    "UTF-8 (or name its encoding in the request's Content-Type); nothing was saved."
                )
                % {"encoding": encoding.upper()},
            )

    def _check_header(self, header: bytes, start: int = 0) -> None:
        # ``header`` follows a boundary: the rest of its line (blank), then the part's headers.
        named = _PART_NAME.search(header)
        field = named.group(1).decode("utf-8", "replace") if named else self._field
        lines = header.split(b"\r\n")
        if len(header) > _PART_HEADER_LIMIT or lines[0].strip():
            if _BARE_LF.search(header) or self._dash in header or lines[0].strip():
                # Bare LF line breaks, a boundary inside the previous part's data, or one
                # followed by more than a line break (a longer string in that data).
                self._malformed(self._last_field)
            # Said as it is: a long file name is the usual cause, any long header the other.
            if _FILE_NAME_PARAM.search(header):
                raise UploadRejected(field, _("The file name is too long; nothing was saved."))
            raise UploadRejected(field, _("This part's headers are too long; nothing was saved."))
        if self._dash in header:
            # Django splits the headers there: the part would lose them and be skipped.
            self._malformed(field)
        headers: dict[str, tuple[str, dict[str, str]]] = {}
        for line in lines[1:]:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadRejected(field, _not_utf8_name()) from None
            # Read as Django's parser reads it: a line it cannot parse, it skips.
            try:
                main, params = parse_header_parameters(text)
                name, value = main.split(":", 1)
            except Exception:  # whatever the parser trips on, Django would skip the line (or crash)
                name, value, params = "", "", {}
            if name and not _extended_values_readable(text):
                raise UploadRejected(field, _not_utf8_name())
            if not name or name in headers:
                raise UploadRejected(
                    field,
                    _(
                        "A part of the form has a header line that could not be read, or one "
                        "given twice; nothing was saved."
                    ),
                )
            headers[name] = (value.strip(), params)
        _disposition, disposition = headers.get("content-disposition", ("", {}))
        part_name = disposition.get("name", "").strip()
        if not part_name:
            raise UploadRejected(field, _("A part of the form names no field; nothing was saved."))
        self._part_field = field = part_name
        transfer = headers.get("content-transfer-encoding", ("binary", {}))[0]
        if transfer not in _TRANSFER_ENCODINGS:
            raise UploadRejected(
                field,
                _("Only the base64, binary, 8bit and 7bit transfer encodings are accepted; nothing was saved."),
            )
        sent_name = disposition.get("filename", "")
        if sent_name and transfer == "base64":
            # Django decodes a file's base64 leniently, chunk by chunk: joined padded pieces or
            # the URL-safe alphabet left a file cut short, stored with a 201 (RFC 7578 deprecates
            # transfer encodings; no browser or HTTP library sends files so).
            raise UploadRejected(field, _("Send files as they are: base64 is accepted for text fields only."))
        if sent_name:
            # A file part, as Django tells them (filename="" is a text field).
            kept = _file_name(sent_name)
            # What Django's parser will hand the upload handler for this part (the method
            # uses nothing of its instance).
            as_parsed = force_str(sent_name.encode(), self._encoding, errors="replace")
            parsers = MultiPartParser.sanitize_file_name(None, as_parsed)  # type: ignore[arg-type]
            if kept is None or not parsers:
                raise UploadRejected(
                    field,
                    _("A file has no usable name (empty, “.”, “..” or a folder); name it and send it again."),
                )
            self.file_names.append((parsers, kept))
            return
        # A text field: its value is checked once it ends (see _end_text).
        self._text_field = field
        self._text_start = start
        self._text = bytearray()
        self._text_base64 = transfer == "base64"
        part_charset = headers.get("content-type", ("", {}))[1].get("charset")
        if part_charset and not charsets.supported(part_charset):
            # UTF-7 gave lone surrogates, which neither encryption nor the database takes.
            raise UploadRejected(field, _("This text's charset is not supported: send it in UTF-8; nothing was saved."))
        self._text_charset = codec_name(part_charset)

    def _malformed(self, field: str | None) -> NoReturn:
        raise UploadRejected(
            field or self._body_field,
            _(
                "The multipart body is malformed: its boundary appears without a CRLF line "
                "break before it (lines ended by LF alone, or the boundary string inside a "
                "file's data). Send it with CRLF line breaks and a boundary found in no "
                "file; nothing was saved."
            ),
        )

    def check_end(self) -> None:
        """Refuse a body that ended inside a part's headers (Django skips such a part)."""
        header = bytes(self._header or b"")
        if header and not header.startswith(b"--"):
            self._malformed(self._last_field)

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        try:
            data = self._stream.read(*args, **kwargs)
        except TimeoutError:
            raise self._stalled() from None
        return self._seen(data)

    def readline(self, *args: Any, **kwargs: Any) -> bytes:
        try:
            data = self._stream.readline(*args, **kwargs)
        except TimeoutError:
            raise self._stalled() from None
        return self._seen(data)

    def _stalled(self) -> UploadRejected:
        # pli.core.middleware.ClientTimeoutMiddleware: the client sent nothing for a while.
        return UploadRejected(
            self._part_field or self._body_field,
            _("The upload stopped arriving before its end; nothing was saved. Please send it again."),
            status=408,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# File name endings for the types a restricted form accepts (a patient's reply).
_EXTENSIONS = {"application/pdf": (".pdf",), "image/jpeg": (".jpg", ".jpeg"), "image/png": (".png",)}


def _named_as(name: str, content_type: str) -> str:
    """``name`` ending as its (sniffed) type does: a PDF sent as ``compte-rendu.bat`` would
    reach the practitioner's computer as a script to double-click; it becomes
    ``compte-rendu.bat.pdf``."""
    endings = _EXTENSIONS.get(content_type)
    if not endings or name.lower().endswith(endings):
        return name
    return name + endings[0]


def _not_utf8_name() -> str:
    return _(
        "A file name or field name could not be read: it is not encoded in UTF-8. "
        "Rename the file, or send its name in UTF-8; nothing was saved."
    )


def _extended_values_readable(line: str) -> bool:
    """Whether each RFC 2231 value of a part's header line (``filename*=UTF-8''…``) is text
    in the charset it names, one Pli reads text in (pli.core.charsets). Django decodes them
    with replacement characters: a name sent as ``%FF.pdf`` reached its reader as ``�.pdf``;
    and in any charset Python knows: UTF-7 gave lone surrogates, which no name is stored
    with (a 500)."""
    if "*" not in line:
        return True
    header = email.message.Message()
    header["x"] = line
    for _name, value in header.get_params(header="x", failobj=[]):
        if isinstance(value, tuple):
            if value[0] and not charsets.supported(value[0]):
                return False
            try:
                email.utils.collapse_rfc2231_value(value, errors="strict")
            except UnicodeDecodeError:
                return False
    return True


def _file_name(sent: str) -> str | None:
    """A file name as sent, less any folder and unprintable character (as Django cleans it,
    but without decoding HTML entities); None if nothing is left.

    Browsers, curl and urllib3 write a double quote in a file name as ``%22`` (and line
    breaks as ``%0D``/``%0A``, dropped here like any control character), as the WHATWG's
    multipart/form-data encoding says: ``CR "IRM".pdf`` would otherwise reach the patient
    as ``CR %22IRM%22.pdf``.
    """
    sent = sent.replace("%22", '"').replace("%0D", "").replace("%0A", "")
    name = sent.rsplit("/")[-1].rsplit("\\")[-1]
    name = "".join(char for char in name if char.isprintable())
    return None if name.strip() in {"", ".", ".."} else name


def _too_many_files(rules: UploadRules) -> str:
    return ngettext(
        "At most %(count)d file can be sent at once.", "At most %(count)d files can be sent at once.", rules.max_files
    ) % {"count": rules.max_files}


def _too_large_files(rules: UploadRules, total: bool) -> str:
    if total:
        return _("The files can total at most %(size)s.") % {"size": limit_size(rules.max_total_bytes)}
    return _("Each file can be at most %(size)s.") % {"size": limit_size(rules.max_file_bytes)}


@dataclass(frozen=True)
class UploadRules:
    """What one form accepts in its file field, and how its refusals read."""

    field: str
    max_files: int
    max_file_bytes: int
    max_total_bytes: int
    store: BlobStore
    aad_for: Callable[[uuid.UUID], bytes]
    # When set, only these types are accepted, recognised by their first bytes.
    accepted_types: dict[str, tuple[bytes, ...]] | None = None
    too_many: Callable[[UploadRules], str] = _too_many_files
    # Called with whether the total (True) or a single file (False) is over its limit.
    too_large: Callable[[UploadRules, bool], str] = _too_large_files
    # The field a body cut off before any file is blamed on (default: the file field).
    cut_off_field: str | None = None
    # An empty file is a valid attachment between professionals; a patient given an empty
    # document has nothing to read.
    allow_empty: bool = True


def sniff(head: bytes, accepted: dict[str, tuple[bytes, ...]]) -> str | None:
    for content_type, magics in accepted.items():
        if head.startswith(magics):
            return content_type
    return None


def attachment_rules(store: BlobStore) -> UploadRules:
    """A message's attachments: any type, a limit on their number and their total size."""
    return UploadRules(
        field=ATTACHMENTS_FIELD,
        max_files=max_attachments(),
        max_file_bytes=max_message_bytes(),
        max_total_bytes=max_message_bytes(),
        store=store,
        aad_for=attachment_aad,
        too_many=lambda rules: too_many_message(),
        too_large=lambda rules, total: too_large_message(),
        cut_off_field="detail",
    )


class EncryptingUploadHandler(FileUploadHandler):
    """Encrypts every file of ``rules.field`` into ``session`` as its bytes arrive,
    enforcing ``rules`` on the way (see the module's docstring)."""

    # Read the body 1 MiB at a time: gunicorn reads ahead up to 1 MiB and copies what it
    # holds beyond each read, so smaller reads copy the same bytes over and over.
    chunk_size = 2**20

    def __init__(self, request: HttpRequest, session: UploadSession, rules: UploadRules) -> None:
        super().__init__(request)
        self.session = session
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
        total = self.total > self.rules.max_total_bytes
        return UploadRejected(self.rules.field, self.rules.too_large(self.rules, total), status=413)

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: str | None = None
    ) -> None:
        if content_length > self.rules.max_total_bytes + _FIELDS_ALLOWANCE:
            self.total = content_length
            raise self._too_large()
        # Django passes the boundary as bytes, whatever its annotation says.
        self._boundary = boundary if isinstance(boundary, bytes) else str(boundary).encode("ascii")
        self._content_length = content_length
        stream = getattr(input_data, "_stream", None)
        if stream is not None:
            self._recorder = TailRecorder(
                stream, self._boundary, self.rules.field, encoding, self.rules.cut_off_field or self.rules.field
            )
            input_data._stream = self._recorder
        return None

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if self._recorder is not None:
            # The name as sent: the recorder saw this part's headers before the parser did.
            # Should the two ever disagree on which part this is, refuse rather than give a
            # file another's name.
            expected, kept = self._recorder.file_names.popleft() if self._recorder.file_names else ("", "")
            if expected != file_name:
                raise UploadRejected(self.rules.field, _("The multipart body could not be read; nothing was saved."))
            self.file_name = kept
        if field_name != self.rules.field:
            raise UploadRejected(
                field_name, _("Files are accepted only in the “%(field)s” field.") % {"field": self.rules.field}
            )
        self.files += 1
        if self.files > self.rules.max_files:
            raise UploadRejected(self.rules.field, self.rules.too_many(self.rules))
        self._pending_id = uuid.uuid4()
        self._key = new_data_key()
        self._file_bytes = 0
        self.writer = BlobWriter(
            self.session.store, self._pending_id.hex, self._key, self.rules.aad_for(self._pending_id)
        )
        self.session.open_writers.add(self.writer)

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
            message = wrong_type_message() % {"name": clean_name(self.file_name or "")[:120]}
            raise UploadRejected(self.rules.field, message, status=415)
        return found

    def file_complete(self, file_size: int) -> EncryptedUpload | None:
        writer, pending_id = self.writer, self._pending_id
        if writer is None or pending_id is None:
            return None
        name = clean_name(self.file_name or "")
        if not self.rules.allow_empty and writer.size == 0:
            self._abort_current()
            raise UploadRejected(self.rules.field, empty_file_message() % {"name": name})
        if self.rules.accepted_types is not None:
            content_type = self._check_type(writer.head)
            name = clean_name(_named_as(name, content_type))
        else:
            content_type = clean_content_type(self.content_type, name, writer.head)
        recognised = structured.detect(name, writer.head)
        if recognised and content_type == OCTET_STREAM:
            content_type = structured.plain_type(recognised)
        self.writer = None
        self.session.open_writers.discard(writer)
        writer.finish()
        pending = PendingAttachment(
            id=pending_id,
            key=self._key,
            name=name,
            content_type=content_type,
            size=writer.size,
            sha256=writer.sha256,
            completed_at=time.monotonic(),
            format=recognised,
        )
        self.session.add(pending)
        return EncryptedUpload(pending, self.field_name)

    def upload_interrupted(self) -> None:
        self.interrupted = True
        self._abort_current()

    def upload_complete(self) -> None:
        self._abort_current()
        recorder = self._recorder
        unterminated = False
        if recorder is not None:
            arrived = recorder.count >= self._content_length
            closed = b"--" + self._boundary + b"--" in recorder.tail
            # Every byte arrived, yet no closing boundary: the body is malformed (built by
            # hand without its final "--", or with another boundary than its header names),
            # and sending it again would fail the same way.
            unterminated = arrived and not closed and not self.interrupted
            if not (arrived and closed):
                self.interrupted = True
        if self.interrupted:
            field_name = self.rules.field if self.files else (self.rules.cut_off_field or self.rules.field)
            if unterminated:
                raise UploadRejected(
                    field_name,
                    _(
                        "The multipart body does not end with its closing boundary (the boundary "
                        "its Content-Type names, followed by “--”): check that the body uses that "
                        "boundary and ends with it; nothing was saved."
                    ),
                )
            raise UploadRejected(
                field_name, _("The upload was cut off before its end; nothing was saved. Please send it again.")
            )
        if recorder is not None:
            recorder.check_end()
            if recorder.file_names:
                # A file part the check saw that the parser never handed over.
                raise UploadRejected(self.rules.field, _("The multipart body could not be read; nothing was saved."))
        return None

    def _abort_current(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.session.open_writers.discard(self.writer)
            self.writer = None


def store_bytes(
    session: UploadSession,
    name: str,
    content: bytes,
    content_type: str,
    aad_for: Callable[[uuid.UUID], bytes] = attachment_aad,
) -> PendingAttachment:
    """``content`` encrypted into ``session``'s store as :class:`EncryptingUploadHandler`
    leaves an uploaded file (a fresh key, the future object's associated data, fsynced and
    renamed into place), for content made by Pli itself rather than sent by a browser."""
    file_id = uuid.uuid4()
    key = new_data_key()
    writer = BlobWriter(session.store, file_id.hex, key, aad_for(file_id))
    session.open_writers.add(writer)
    try:
        writer.write(content)
        writer.finish()
    finally:
        session.open_writers.discard(writer)
        writer.abort()  # a no-op once finished
    clean = clean_name(name)
    pending = PendingAttachment(
        id=file_id,
        key=key,
        name=clean,
        content_type=clean_content_type(content_type, clean, writer.head),
        size=writer.size,
        sha256=writer.sha256,
        completed_at=time.monotonic(),
        format=structured.detect(clean, writer.head),
    )
    session.add(pending)
    return pending


def texts_read(request: HttpRequest, multiple: tuple[str, ...] = ()) -> dict[str, Any]:
    """The text fields read before an upload was refused (a file of the wrong type, too large):
    the form is shown again with what was typed, where the files cannot be given back. A
    field of ``multiple`` gives all its values, any other its last."""
    for handler in request.upload_handlers:
        recorder = getattr(handler, "_recorder", None)
        if isinstance(recorder, TailRecorder):
            return {name: (values if name in multiple else values[-1]) for name, values in recorder.texts.items()}
    return {}


def check_urlencoded_text(request: HttpRequest) -> None:
    """Refuse (UploadRejected naming the field) a form sent as
    ``application/x-www-form-urlencoded`` whose text is not in the request's charset.

    Django reads such a form leniently: a percent-encoded byte sequence that is not valid
    UTF-8 (``subject=%E9t%E9``, Latin-1 from older software) becomes U+FFFD, and a raw byte
    that is not makes it read the whole body as Latin-1. Either way the message was sent
    with its subject, body or patient's names garbled, without a word. To be called once
    ``request.POST`` has been read (the body is then kept)."""
    if request.content_type != "application/x-www-form-urlencoded":
        return
    encoding = codec_name(request.encoding) or codec_name(settings.DEFAULT_CHARSET) or "utf-8"

    def readable(raw: bytes) -> str | None:
        try:
            return urllib.parse.unquote_to_bytes(raw.replace(b"+", b" ")).decode(encoding)
        except UnicodeDecodeError:
            return None

    for pair in request.body.split(b"&"):
        name, _separator, value = pair.partition(b"=")
        field = readable(name)
        if field is None or readable(value) is None:
            raise UploadRejected(
                field or "detail",
                _(
                    "This text could not be read: a form sent as application/x-www-form-urlencoded "
                    "must be in UTF-8; nothing was saved."
                ),
            )


def install(request: HttpRequest, session: UploadSession, rules: UploadRules | None = None) -> None:
    """Make ``request`` encrypt its file uploads into ``session`` (before anything reads POST),
    under ``rules`` (a message's attachments unless told otherwise)."""
    handler = EncryptingUploadHandler(request, session, rules or attachment_rules(session.store))
    request.upload_handlers = [handler]
    # Django reads every text part in the request's charset; a part that names its own
    # (RFC 7578) is read in it by the recorder, and its value replaced once parsed.
    parse = request.parse_file_upload

    def parse_and_recode(*args: Any, **kwargs: Any) -> Any:
        post, files = parse(*args, **kwargs)
        recorder = handler._recorder
        if recorder is None or all(value is None for values in recorder.text_values.values() for value in values):
            return post, files
        post = post.copy()
        for name, values in recorder.text_values.items():
            parsed = post.getlist(name)
            if len(parsed) != len(values):
                raise UploadRejected(name, _("The multipart body could not be read; nothing was saved."))
            recoded = [value if value is not None else kept for value, kept in zip(values, parsed, strict=True)]
            post.setlist(name, recoded)
        post._mutable = False
        return post, files

    request.parse_file_upload = parse_and_recode  # type: ignore[method-assign]


def pending_uploads(files: Any) -> list[PendingAttachment]:
    """The encrypted attachments of a parsed request, in upload order."""
    return [f.pending for f in files.getlist(ATTACHMENTS_FIELD) if isinstance(f, EncryptedUpload)]
