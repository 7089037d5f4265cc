"""The background worker as a child process of ``pli run``: started before the web server,
stopped when it stops, so a development instance delivers notifications with no set-up."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Protocol

_PR_SET_PDEATHSIG = 1


class _Writer(Protocol):
    def write(self, text: str) -> object: ...


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: if `pli run` is killed outright (no chance to clean up), the kernel stops the
    # worker too instead of leaving it orphaned.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def background_worker(out: _Writer) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``pli worker`` beside the caller until the ``with`` block ends."""
    command = [sys.executable, "-m", "pli.cli", "worker"]
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    process = subprocess.Popen(command, preexec_fn=preexec)  # noqa: S603 - our own command, no shell
    out.write(f"Background worker started (pid {process.pid}): e-mail, SMS, reminders.\n")
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()  # the worker finishes the job in hand, then exits
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
