"""Two transactions made to meet at the audit trail's head, each on its own connection, as
two requests (or a request and the worker) would on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection


def while_committing(
    monkeypatch: pytest.MonkeyPatch, action: str, other: Callable[[], object], other_action: str
) -> Callable[[], list[BaseException]]:
    """Run ``other`` in a thread once this thread's transaction has appended its audit
    event ``action`` (the trail's head stays locked until COMMIT); this transaction goes on
    once ``other`` has reached its own event ``other_action``, or after a second (``other``
    then waits for this transaction somewhere). Returns a function that joins the thread and
    gives what ``other`` raised."""
    from pli.audit import services as audit

    real = audit.record
    appended, reached = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def record(event: str, *args: Any, **kwargs: Any) -> Any:
        if event == other_action and threading.current_thread() is thread:
            reached.set()  # what ``other`` locks before its event is locked by now
            return real(event, *args, **kwargs)
        result = real(event, *args, **kwargs)
        if event == action and not appended.is_set() and threading.current_thread() is not thread:
            appended.set()
            reached.wait(1)
            time.sleep(0.2)  # for ``other`` to be waiting for the head
        return result

    def run() -> None:
        try:
            appended.wait(10)
            other()
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    monkeypatch.setattr(audit, "record", record)
    thread = threading.Thread(target=run)
    thread.start()

    def join() -> list[BaseException]:
        thread.join()
        return failures

    return join
