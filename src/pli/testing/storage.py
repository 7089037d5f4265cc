"""A full disk for tests, without mounting one (that needs root): blob writes that fail
with ENOSPC as a full file system answers, and the error a database driver raises when its
own disk is full, as Django hands it on."""

from __future__ import annotations

import errno
import os
import sqlite3
from typing import Any

import pytest
from django.db import DatabaseError, connection


class FullDisk:
    """While :attr:`full`, a blob being written fails with ENOSPC once it holds
    ``room`` bytes (its temporary file keeps what was written before, as on a real disk)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, room: int = 64 * 1024) -> None:
        from pli.messaging.uploads import BlobWriter

        self.full = True
        self.room = room
        written: dict[int, int] = {}
        original = BlobWriter._write

        def write(writer: Any, data: bytes) -> None:
            done = written.get(id(writer), 0)
            if self.full and done + len(data) > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written[id(writer)] = done + len(data)
            original(writer, data)

        monkeypatch.setattr(BlobWriter, "_write", write)

    def free(self) -> None:
        self.full = False


def database_full_error() -> DatabaseError:
    """What Django raises when the database's disk is full: PostgreSQL's ``disk_full``
    (SQLSTATE 53100), or SQLite's SQLITE_FULL (made for real, on a database in memory capped
    at two pages)."""
    cause: Exception
    if connection.vendor == "postgresql":
        import psycopg

        cause = psycopg.errors.DiskFull('could not extend file "base/16384/16402": No space left on device')
    else:
        probe = sqlite3.connect(":memory:")
        try:
            probe.execute("PRAGMA max_page_count = 2")
            probe.execute("CREATE TABLE t (x)")
            probe.execute("INSERT INTO t VALUES (zeroblob(100000))")
        except sqlite3.OperationalError as exc:
            cause = exc
        else:  # pragma: no cover - SQLite always refuses
            raise AssertionError("SQLite stored 100 kB in two pages")
        finally:
            probe.close()
    try:
        with connection.wrap_database_errors:
            raise cause
    except DatabaseError as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover
