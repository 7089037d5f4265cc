"""Background jobs of the messaging app (django-tasks, database backend)."""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any

from django.utils import timezone
from django_tasks import task

CLEANUP_INTERVAL = datetime.timedelta(hours=1)
logger = logging.getLogger(__name__)

_scheduled_in_this_process = threading.Event()


@task()
def cleanup_orphan_blobs(reschedule: bool = True) -> dict[str, int]:
    """Plan the next run (every hour while a worker runs), then remove blobs of aborted sends.

    The next run is planned before this one works, not after: a worker killed during the
    run, or a database lost during it (re-queueing at the end would fail too), would
    otherwise end the chain until some worker restarted."""
    from pli.core.instance import DataDirMismatch
    from pli.messaging import services

    if reschedule:
        schedule_cleanup()
    try:
        result = services.cleanup_orphan_blobs()
    except DataDirMismatch as exc:
        logger.error("blob cleanup refused: %s", exc)
        return {"refused": 1}
    return {"orphans": result.orphans, "temporary": result.temporary}


def schedule_cleanup(delay: datetime.timedelta = CLEANUP_INTERVAL) -> bool:
    """Enqueue the next cleanup unless one is already waiting; return whether one was added."""
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    waiting = DBTaskResult.objects.filter(
        task_path=cleanup_orphan_blobs.module_path, status=TaskResultStatus.READY
    ).exists()
    if waiting:
        return False
    cleanup_orphan_blobs.using(run_after=timezone.now() + delay).enqueue()
    return True


def ensure_cleanup_scheduled(**_: Any) -> None:
    """Called after a send: the first one in each process makes sure the periodic cleanup
    exists, so an instance that sends messages always gets its orphan blobs collected."""
    if _scheduled_in_this_process.is_set():
        return
    _scheduled_in_this_process.set()
    try:
        schedule_cleanup()
    except Exception:
        # The message is committed: failing to plan housekeeping must not turn its 201
        # into an error. The next process, or `pli messaging cleanup-blobs`, will do it.
        logger.exception("could not schedule the orphan blob cleanup")
        _scheduled_in_this_process.clear()
