"""Background jobs (django-tasks, database backend), run by ``pli worker``.

* :func:`deliver_notification` sends one e-mail or SMS. It never raises: a failure is
  recorded on the notification and the share, and a new job is enqueued for later
  (``run_after``) with exponential back-off, so a provider outage delays notifications but
  never loses them.
* :func:`periodic_jobs` is the scheduler: reminders after 5 days, expiry, re-queueing of
  deliveries a dead worker left behind, clean-up, and the messages kept in a trash past
  PLI_TRASH_DAYS (deleted for good). It re-enqueues itself to run again
  :data:`PERIOD` later (as it starts, so that a run that dies does not end the chain);
  ``pli worker`` starts the chain when no run is waiting, and a run that finds another one
  waiting does not add a second, so several workers share one chain.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone
from django_tasks import TaskContext, task
from django_tasks_db.models import DBTaskResult

from pli.api import idempotency
from pli.core.logging import jobs_crash_without_values
from pli.messaging import services as messaging
from pli.sharing import notifications, services

logger = logging.getLogger(__name__)

PERIOD = datetime.timedelta(minutes=5)
OVERLAP_GUARD = datetime.timedelta(minutes=15)
# Finished job rows are kept this long for operators, then pruned.
KEEP_FINISHED = datetime.timedelta(days=7)


@task()
def deliver_notification(notification_id: str, attempts: int | None = None) -> str:
    # Unexpected (a bug, the database away): the notification stays pending and the
    # periodic job queues it again; the job row and the log get the error's type and
    # where, never its message (an e-mail package's error repeats the address).
    with jobs_crash_without_values(logger, f"notification {notification_id}: delivery"):
        return notifications.deliver(notification_id, attempts=attempts)


@task(takes_context=True)
def periodic_jobs(context: TaskContext) -> dict[str, Any]:
    # The next run is planned before this one works, not after: a worker killed during the
    # run, or a database lost during it (re-queueing at the end would fail too), would
    # otherwise end the chain, and the other workers would run no reminder, expiry or
    # re-queueing until one of them restarted.
    schedule_periodic(PERIOD)
    # A run that outlasts PERIOD is not joined by the next one on another worker (a run
    # left "running" by a killed worker holds the next ones back for OVERLAP_GUARD at most).
    busy = (
        DBTaskResult.objects.filter(
            task_path=periodic_jobs.module_path, status="RUNNING", started_at__gt=timezone.now() - OVERLAP_GUARD
        )
        .exclude(pk=context.task_result.id)
        .exists()
    )
    if busy:
        return {"skipped": "another run in progress"}
    with jobs_crash_without_values(logger, "periodic jobs"):
        result: dict[str, Any] = services.run_periodic()
        result["pruned_jobs"] = prune_finished_jobs()
        result["expired_sessions"] = clear_expired_sessions()
        result["expired_cache_entries"] = clear_expired_cache()
        result["expired_idempotency_keys"] = idempotency.prune_expired()
        result["retention_copies_trashed"] = messaging.apply_retention()
        result["trash_copies_deleted"] = messaging.purge_old_trash()
        inactive = messaging.handle_inactive_mailboxes()
        result["inactive_mailboxes_warned"] = inactive.warned
        result["inactive_mailboxes_emptied"] = inactive.emptied
        result["new_mail_emails"] = messaging.notify_new_mail()
    return result


def schedule_periodic(delay: datetime.timedelta = datetime.timedelta(0)) -> bool:
    """Enqueue the next periodic run unless one is already waiting; True if it did."""
    with transaction.atomic():
        waiting = DBTaskResult.objects.filter(task_path=periodic_jobs.module_path, status="READY").exists()
        if waiting:
            return False
        periodic_jobs.using(run_after=timezone.now() + delay).enqueue()
    return True


def clear_expired_sessions() -> int:
    """Sign-in sessions past their expiry: the database would otherwise keep every one ever
    opened (with its user id and, for allauth, the browser and address)."""
    from allauth.usersessions.models import UserSession
    from django.contrib.sessions.models import Session

    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    # allauth's row of each sign-in (browser, IP address) has no foreign key to its session:
    # it outlived it, and went only when its user signed in again.
    UserSession.objects.exclude(session_key__in=Session.objects.values("session_key")).delete()
    return deleted


def clear_expired_cache(now: datetime.datetime | None = None) -> int:
    """Entries of the shared (database) cache past their expiry: counters of unknown patient
    links and of allauth's sign-in attempts, keyed by the client's IP address, the former
    session key of a patient who has just typed the code. Django deletes an expired entry
    only when it is read again, or when the table holds more than MAX_ENTRIES (set high so
    that live counters are never evicted): the rest stayed for ever."""
    cache = caches["default"]
    if not isinstance(cache, DatabaseCache):
        return 0
    model = cache.cache_model_class
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    # As Django's own cull: whole seconds, as the entries' expiry is written.
    now = (now or timezone.now()).replace(microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {quote(model._meta.db_table)} WHERE {quote('expires')} < %s",  # noqa: S608 - the cache's table
            [connection.ops.adapt_datetimefield_value(now)],
        )
        return max(int(cursor.rowcount), 0)


def prune_finished_jobs(now: datetime.datetime | None = None) -> int:
    """Remove the rows of jobs finished more than KEEP_FINISHED ago, whatever the job (the
    hourly blob clean-up's too), and of jobs left "running" that long by a worker killed
    mid-job: no job runs for days, and the work they stood for is redone from its own
    state (a notification stays pending and is queued again). Without this, the table
    grew by some 300 rows a day for ever."""
    now = now or timezone.now()
    deleted, _ = DBTaskResult.objects.filter(
        Q(status__in=["SUCCESSFUL", "FAILED"], finished_at__lt=now - KEEP_FINISHED)
        | Q(status="RUNNING", started_at__lt=now - KEEP_FINISHED)
    ).delete()
    return deleted
