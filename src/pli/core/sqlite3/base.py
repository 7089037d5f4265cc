"""Django's SQLite backend, with writers queued by the kernel.

Every transaction starts with ``BEGIN IMMEDIATE`` (settings.py), which takes SQLite's write
lock. When the lock is taken, SQLite's busy handler polls it, sleeping 1, 2, 5, 10... ms
between tries: under a burst of writes the CPU idles while writers sleep past the moment
the lock came free. Here, before BEGIN, a transaction first takes an exclusive ``flock`` on
a file beside the database, and releases it when it commits or rolls back: waiting writers
sleep in the kernel and the next one wakes as soon as the lock is released. SQLite's own
lock and busy timeout still apply underneath, for statements outside transactions and for
other programs opening the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Any

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer_fd: int | None = None
        self._writer_locked = False

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        name = str(self.settings_dict["NAME"])
        if not self.is_in_memory_db() and not name.startswith("file:"):
            # SQLite would create the file under the process's umask (0644, readable by every
            # local user where PLI_DATA_DIR is not private, as systemd's StateDirectory= makes
            # it): names, addresses, password hashes. Its -wal and -shm files take the
            # database file's mode.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        conn = super().get_new_connection(conn_params)
        if not self.is_in_memory_db() and not name.startswith("file:"):
            # One descriptor per connection: flock locks belong to the open file, so two
            # connections of one process exclude each other like two processes do.
            self._writer_fd = os.open(f"{name}.writer-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return conn

    def _start_transaction_under_autocommit(self) -> None:
        if self._writer_fd is not None and not self._writer_locked:
            fcntl.flock(self._writer_fd, fcntl.LOCK_EX)
            self._writer_locked = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # private, not in the stubs
        except BaseException:
            self._release_writer()
            raise

    def _release_writer(self) -> None:
        if self._writer_locked and self._writer_fd is not None:
            fcntl.flock(self._writer_fd, fcntl.LOCK_UN)
        self._writer_locked = False

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]  # private, not in the stubs
        finally:
            self._release_writer()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]  # private, not in the stubs
        finally:
            self._release_writer()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]  # private, not in the stubs
        finally:
            self._release_writer()
            if self._writer_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._writer_fd)
                self._writer_fd = None
