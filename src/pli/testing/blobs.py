"""What tests of blob reading look at: open descriptors on a blob's file, and the
read-ahead helper threads still running (pli.blobs.read_ahead)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

READ_AHEAD_THREAD = "pli-blob-read-ahead"


def descriptors_on(path: Path) -> int:
    """How many descriptors this process has open on the file at ``path``."""
    wanted = path.stat()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            found = os.stat(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, or one closed since
            continue
        count += (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino)
    return count


def read_ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == READ_AHEAD_THREAD]
