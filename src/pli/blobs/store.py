"""Encrypted blob files under a root directory.

Layout::

    root/tmp/<blob_id>.<random>.part   writes in progress (or abandoned by a crash)
    root/<id[0:2]>/<id[2:4]>/<blob_id> finished blobs: Pli streaming ciphertext

A blob is written to ``tmp/``, flushed and fsynced, then renamed into place and its
directory fsynced, so a reader (or a restart after a crash) sees either the complete blob
or nothing at the final path. Content is encrypted with :mod:`pli.crypto.stream` under the
caller's per-blob data key and associated data; the store itself keeps no key.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pli.crypto.stream import ReadableInto, ciphertext_size, decrypt_file, encrypt_file, encrypt_stream

__all__ = [
    "BlobError",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobTooLarge",
    "SweepResult",
    "validate_blob_id",
]

logger = logging.getLogger(__name__)

_BLOB_ID_RE = re.compile(r"[0-9a-f]{32}")
_TEMP_DIR = "tmp"
_TEMP_SUFFIX = ".part"
_READ_CHUNK = 1 << 20


class BlobError(Exception):
    """Base class of the blob store's errors."""


class BlobNotFound(BlobError):
    """No blob is stored under that id."""

    def __init__(self, blob_id: str) -> None:
        super().__init__(f"blob {blob_id} not found")
        self.blob_id = blob_id


class BlobTooLarge(BlobError):
    """The content exceeds the size limit given to :meth:`BlobStore.put`."""

    def __init__(self, max_size: int) -> None:
        super().__init__(f"blob exceeds the maximum size of {max_size} bytes")
        self.max_size = max_size


@dataclass(frozen=True)
class SweepResult:
    """What :meth:`BlobStore.sweep` did: blobs and temporary files removed, and entries it
    could not read or remove (each logged; the next sweep tries them again)."""

    removed: int
    temporary: int
    failed: int


@dataclass(frozen=True)
class BlobInfo:
    """What :meth:`BlobStore.put` stored."""

    size: int  # plaintext bytes
    sha256: str  # hex digest of the plaintext
    stored_size: int  # ciphertext bytes on disk


def validate_blob_id(blob_id: str) -> str:
    """Return ``blob_id`` if it is 32 lowercase hex digits (``uuid.uuid4().hex``)."""
    # fullmatch, not match with "$", which would accept a trailing newline.
    if not isinstance(blob_id, str) or _BLOB_ID_RE.fullmatch(blob_id) is None:
        raise ValueError(f"invalid blob id {blob_id!r}: expected 32 lowercase hexadecimal digits")
    return blob_id


class _Meter:
    """Hashes and counts plaintext as it goes by, enforcing the size limit."""

    def __init__(self, max_size: int | None) -> None:
        self.max_size = max_size
        self.size = 0
        self.digest = hashlib.sha256()

    def __call__(self, data: memoryview | bytes | bytearray) -> None:
        self.size += memoryview(data).nbytes
        if self.max_size is not None and self.size > self.max_size:
            raise BlobTooLarge(self.max_size)
        self.digest.update(data)

    def watch(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self(chunk)
            yield chunk


class BlobStore:
    """Encrypted, atomically written blobs in a directory tree (mode 0700, files 0600)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------------

    def path_for(self, blob_id: str) -> Path:
        """Return the final path of ``blob_id`` (validated)."""
        validate_blob_id(blob_id)
        return self.root / blob_id[0:2] / blob_id[2:4] / blob_id

    @property
    def temp_dir(self) -> Path:
        return self.root / _TEMP_DIR

    # -- writing ---------------------------------------------------------------------------

    def put(
        self,
        blob_id: str,
        source: BinaryIO | ReadableInto | Iterable[bytes],
        key: bytes,
        aad: bytes,
        *,
        max_size: int | None = None,
    ) -> BlobInfo:
        """Encrypt ``source`` and store it as ``blob_id``, durably; replaces an existing blob.

        ``source`` is a binary file object (read with ``readinto`` when it has one) or an
        iterable of byte chunks. Raises :class:`BlobTooLarge` past ``max_size`` plaintext
        bytes. On any error nothing is left behind, neither at the final path nor in ``tmp/``.
        """
        final = self.path_for(blob_id)
        meter = _Meter(max_size)
        make_dirs(self.temp_dir)
        fd, temp_name = tempfile.mkstemp(dir=self.temp_dir, prefix=f"{blob_id}.", suffix=_TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb", buffering=0) as raw:
                # Unbuffered: segments are written whole from the encryptor's own buffer.
                if isinstance(source, ReadableInto):
                    encrypt_file(key, aad, source, raw, observer=meter)
                else:
                    # A file object is also an iterable of lines: prefer its read().
                    read = getattr(source, "read", None)
                    chunks: Iterable[bytes] = iter(lambda: read(_READ_CHUNK), b"") if callable(read) else source
                    for piece in encrypt_stream(key, aad, meter.watch(chunks)):
                        _write_all(raw, piece)
                os.fsync(raw.fileno())
            make_dirs(final.parent)
            os.rename(temp_name, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        fsync_dir(final.parent)
        return BlobInfo(
            size=meter.size,
            sha256=meter.digest.hexdigest(),
            stored_size=ciphertext_size(meter.size),
        )

    # -- reading ---------------------------------------------------------------------------

    def open(self, blob_id: str, key: bytes, aad: bytes) -> BlobReader:
        """Stream the plaintext of ``blob_id``, segment by segment.

        Raises :class:`BlobNotFound` at once when the blob does not exist. Each piece has
        been authenticated; a truncated or tampered blob raises
        :class:`~pli.crypto.DecryptionError` before the iterator finishes.
        """
        path = self.path_for(blob_id)
        try:
            file = path.open("rb", buffering=0)
        except FileNotFoundError:
            raise BlobNotFound(blob_id) from None
        return BlobReader(file, key, aad)

    def exists(self, blob_id: str) -> bool:
        return self.path_for(blob_id).is_file()

    def stored_size(self, blob_id: str) -> int:
        """Size on disk of ``blob_id``'s ciphertext."""
        try:
            return self.path_for(blob_id).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(blob_id) from None

    def iter_ids(self, on_error: Callable[[OSError], None] | None = None) -> Iterator[str]:
        """Yield the id of every stored blob (in no particular order).

        A folder that cannot be read raises, unless ``on_error`` is given: it is then told,
        and the folder skipped."""
        for first in _list_dirs(self.root):
            if len(first.name) != 2 or first.name == _TEMP_DIR:
                continue
            try:
                seconds = _list_dirs(first)
            except OSError as exc:
                if on_error is None:
                    raise
                on_error(exc)
                continue
            for second in seconds:
                try:
                    entries = list(os.scandir(second))
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if on_error is None:
                        raise
                    on_error(exc)
                    continue
                for entry in entries:
                    if (
                        entry.is_file(follow_symlinks=False)
                        and _BLOB_ID_RE.fullmatch(entry.name)
                        and entry.name[0:2] == first.name
                        and entry.name[2:4] == second.name
                    ):
                        yield entry.name

    # -- removal ---------------------------------------------------------------------------

    def delete(self, blob_id: str) -> None:
        """Remove ``blob_id``; doing nothing if it is already gone."""
        path = self.path_for(blob_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def cleanup_temp(self, older_than_seconds: float, on_error: Callable[[OSError], None] | None = None) -> int:
        """Remove temporary files not written to for ``older_than_seconds``; return the count.

        A write in progress keeps touching its file, so its modification time stays recent;
        choose a delay well above the slowest expected upload. A file that cannot be
        removed raises, unless ``on_error`` is given: it is then told, and the file skipped.
        """
        limit = time.time() - older_than_seconds
        removed = 0
        try:
            entries = list(os.scandir(self.temp_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.name.endswith(_TEMP_SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                if on_error is None:
                    raise
                on_error(exc)
        return removed

    def sweep(self, older_than_seconds: float, referenced: Callable[[list[str]], set[str]]) -> SweepResult:
        """Remove the blobs that ``referenced`` does not claim, once unmodified for
        ``older_than_seconds``, and the stale temporary files.

        ``referenced`` gets ids in batches of at most 500 and returns those that rows of the
        database still point to. A blob's age is checked again just before it goes, so one
        rewritten meanwhile stays. What cannot be read or removed (a folder or a file whose
        permissions were changed by hand, an I/O error) is logged and skipped, never
        stopping the sweep: one stuck file must not leave every other orphan on the disk.
        """
        limit = time.time() - older_than_seconds
        failed = 0

        def failure(exc: OSError) -> None:
            nonlocal failed
            failed += 1
            # The id is in the file's name; a blob holds nothing readable, its name no health data.
            name = os.path.basename(exc.filename) if isinstance(exc.filename, str) else "?"
            logger.warning("blob sweep of %s: %s could not be removed or read (%s)", self.root.name, name, _reason(exc))

        def is_old(blob_id: str) -> bool:
            try:
                return self.path_for(blob_id).stat().st_mtime < limit
            except FileNotFoundError:
                return False
            except OSError as exc:
                failure(exc)
                return False

        candidates = [blob_id for blob_id in self.iter_ids(on_error=failure) if is_old(blob_id)]
        removed = 0
        for start in range(0, len(candidates), 500):
            batch = candidates[start : start + 500]
            claimed = referenced(batch)
            for blob_id in batch:
                if blob_id in claimed or not is_old(blob_id):
                    continue
                try:
                    self.delete(blob_id)
                except OSError as exc:
                    failure(exc)
                    continue
                removed += 1
        temporary = self.cleanup_temp(older_than_seconds, on_error=failure)
        return SweepResult(removed=removed, temporary=temporary, failed=failed)


class _ClosableReader(ReadableInto, Protocol):
    def close(self) -> None: ...


class BlobReader(Iterator[bytes]):
    """Plaintext of one blob, segment by segment; closes its file when done or closed.

    Has ``close()`` so that consumers such as Django's streaming responses release the file
    even when the client goes away mid-download.
    """

    def __init__(self, file: _ClosableReader, key: bytes, aad: bytes) -> None:
        self._file = file
        self._chunks = decrypt_file(key, aad, file)

    def __iter__(self) -> BlobReader:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._chunks.close()
        self._file.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _write_all(raw: BinaryIO, data: bytes) -> None:
    # An unbuffered file may write less than asked.
    view = memoryview(data)
    while view:
        written = raw.write(view)
        view = view[written:]


def make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0700, durably."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir() and current.parent != current:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        # mkdir's mode is filtered by the umask; set it exactly.
        path.chmod(0o700)
        # The new entry lives in the parent: fsync it so the directory survives a crash.
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__


def _list_dirs(directory: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(directory) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
