"""Which database the encrypted blobs belong to.

Clean-up jobs delete the blobs that no row of the database references. Pointed at another
database (a freshly migrated one, staging, a restore in progress) they would delete every
document of the data dir, for good. So the database holds an instance id (a row made by its
first migration) and ``PLI_BLOB_DIR/instance`` holds the same id; a clean-up, `pli serve`
and `pli worker` refuse to go on when the two differ.

The file is written the first time the two meet (a new instance, or the first start after
the upgrade that brought this check). After restoring a database backup older than that
upgrade, the ids differ although the pairing is right: deleting the file binds the data
dir to the database again. A blob store that holds nothing while the database has rows for
it is not bound: that is a restored database beside a data dir whose ``blobs/`` was not
restored (or a mistyped PLI_DATA_DIR), and binding it would start a service whose every
document is missing, and make the mistake look right to every later check.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings

from pli.blobs.store import fsync_dir, make_dirs

MARKER_NAME = "instance"


class DataDirMismatch(Exception):
    """The blob directory is not this database's, or cannot be told to be."""

    @classmethod
    def other_instance(cls, marker: Path, expected: str, found: str) -> DataDirMismatch:
        return cls(
            f"the database and {marker.parent} belong to different Pli instances (database "
            f"{expected}, data dir {found}): refusing to touch the blobs. Check PLI_DATABASE_URL "
            f"and PLI_DATA_DIR. If this pairing is right (after restoring an older database "
            f"backup), delete {marker} and start again."
        )

    @classmethod
    def blobs_missing(cls, store: Path, rows: int, kind: str) -> DataDirMismatch:
        return cls(
            f"the database has {rows} {kind} whose encrypted content belongs in {store}, "
            f"but that directory holds none: its blobs were not restored beside the database, "
            f"or PLI_DATA_DIR is not this instance's. Restore blobs/ from the same backup as the "
            f"database (docs/operations.md, Backups), or correct PLI_DATA_DIR; refusing to bind it"
        )

    @classmethod
    def unreadable(cls, marker: Path, exc: Exception) -> DataDirMismatch:
        # Written by another user (a command run as root, say): say so, not "mismatch".
        return cls(
            f"cannot read {marker} ({type(exc).__name__}: {exc}): it must belong to the user "
            "Pli runs as, like the rest of PLI_DATA_DIR; refusing to touch the blobs"
        )


class MigrationsPending(Exception):
    """The database lacks migrations of this release (`pli migrate` not run after an upgrade)."""

    def __init__(self, count: int) -> None:
        super().__init__(f"the database lacks {count} migration(s) of this release: run `pli migrate` first")
        self.count = count


def marker_path() -> Path:
    return Path(settings.PLI_BLOB_DIR) / MARKER_NAME


def database_instance_id() -> str:
    from pli.core.models import InstanceId

    row = InstanceId.objects.filter(pk=1).first()
    if row is None:
        # The row comes with the migrations; it is missing only from a database whose tables
        # were emptied by hand or by a test's flush. Adopt the data dir's id, or make one.
        found = _read(marker_path())
        try:
            value = uuid.UUID(found) if found else uuid.uuid4()
        except ValueError:
            value = uuid.uuid4()  # then check_blob_dir() reports the mismatch
        row, _ = InstanceId.objects.get_or_create(pk=1, defaults={"value": value})
    return str(row.value)


def check_blob_dir() -> None:
    """Raise DataDirMismatch unless the blob dir belongs to this database; bind a blob dir
    that carries no id yet."""
    expected = database_instance_id()
    marker = marker_path()
    found = _read(marker)
    if found is None:
        _refuse_empty_stores()
        _write(marker, expected)
        found = _read(marker)  # another process may have bound it first
    if found != expected:
        raise DataDirMismatch.other_instance(marker, expected, found or "none")


def _refuse_empty_stores() -> None:
    """Before binding: every store the database has rows for must hold some blob. Rows and
    blobs go together (a message's attachments and a share's documents are deleted with
    their blobs), so rows beside an empty store mean the blobs are elsewhere."""
    from pli.messaging.models import Attachment
    from pli.messaging.uploads import blob_store
    from pli.sharing.models import ShareDocument
    from pli.sharing.uploads import share_blob_store

    stores = (
        (Attachment.objects.count, blob_store(), "message attachment(s)"),
        (ShareDocument.objects.count, share_blob_store(), "patient share document(s)"),
    )
    for count, store, kind in stores:
        try:
            empty = next(store.iter_ids(), None) is None
        except OSError:
            continue  # a folder it cannot list is not empty: the blob reads will say what is wrong
        if empty:
            rows = count()
            if rows:
                raise DataDirMismatch.blobs_missing(store.root, rows, kind)


def _read(marker: Path) -> str | None:
    try:
        text = marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataDirMismatch.unreadable(marker, exc) from None
    return text or None


def _write(marker: Path, value: str) -> None:
    make_dirs(marker.parent)
    temporary = marker.with_name(f".{MARKER_NAME}.{uuid.uuid4().hex}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, f"{value}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # Never replace an id another process wrote meanwhile.
        os.link(temporary, marker)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    fsync_dir(marker.parent)


def unapplied_migrations() -> int:
    """How many of this release's migrations the database lacks."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def check_migrations() -> None:
    """For `pli serve` and `pli worker`: after an upgrade whose `pli migrate` was forgotten,
    the old tables answer the first queries (and /healthz) but not those that need the new
    columns; every page and job would fail, so neither starts."""
    pending = unapplied_migrations()
    if pending:
        raise MigrationsPending(pending)


def check_at_start() -> None:
    """For `pli serve` and `pli worker`; nothing to check before the first migration."""
    from django.db import DatabaseError

    try:
        check_blob_dir()
    except DatabaseError:
        return
