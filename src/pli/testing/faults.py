"""Faults for tests, without the machinery they take for real: a full disk (mounting one
needs root) where blob writes fail with ENOSPC as a full file system answers, and the errors
a database driver raises when its disk is full or its connection is lost, as Django hands
them on."""

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
    return _as_django_raises(cause)


def connection_lost_error() -> DatabaseError:
    """What Django raises when the connection to the database breaks (the server restarted,
    the network was cut): the driver's own error, with no SQLSTATE."""
    cause: Exception
    if connection.vendor == "postgresql":
        import psycopg

        cause = psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
    else:
        cause = sqlite3.OperationalError("disk I/O error")
    return _as_django_raises(cause)


def _as_django_raises(cause: Exception) -> DatabaseError:
    try:
        with connection.wrap_database_errors:
            raise cause
    except DatabaseError as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover


class LostAfterCommit:
    """The database commits, then the connection breaks before it says so: the commit of
    the first transaction that calls ``getattr(module, name)`` (which arms the fault) writes
    everything and raises :func:`connection_lost_error`. Needs a test whose transactions
    really commit (``transactional_db``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
        self.fired = False
        armed = False
        original = getattr(module, name)

        def arm(*args: Any, **kwargs: Any) -> Any:
            nonlocal armed
            armed = True
            return original(*args, **kwargs)

        commit = connection.commit

        def commit_then_lose_the_connection() -> None:
            commit()
            if armed and not self.fired:
                self.fired = True
                raise connection_lost_error()

        monkeypatch.setattr(module, name, arm)
        monkeypatch.setattr(connection, "commit", commit_then_lose_the_connection)
