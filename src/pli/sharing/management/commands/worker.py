"""``pli worker``: the background worker (django-tasks' database worker, with Pli's defaults).

It delivers notifications (e-mail, SMS) and runs the periodic jobs (reminders, expiry,
clean-up; see :mod:`pli.sharing.tasks`). Run one or more next to the web server; ``pli run``
(``make run``) starts one for you in development.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError, connections
from django_tasks_db.management.commands.db_worker import valid_interval, valid_max_tasks

from pli.core import instance, keys

logger = logging.getLogger("pli.sharing.worker")

# Seconds between attempts while the database cannot be reached: first soon (a restart takes
# a few seconds), then at most every minute.
DATABASE_RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0, 60.0)


class Command(BaseCommand):
    help = "Run the background worker: delivers e-mail and SMS notifications and runs the periodic jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=valid_interval,  # finite and not negative: -1 or nan crashed the worker at its first wait
            default=0.5,
            help="seconds to wait when no job is due (default 0.5: one-time codes must arrive quickly)",
        )
        parser.add_argument("--batch", action="store_true", help="run the jobs that are due, then exit")
        parser.add_argument("--max-tasks", type=valid_max_tasks, default=None, help="exit after this many jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        keys.keyring()  # fail now, not at the first job, if the master keys are missing or wrong
        try:
            keys.check_at_start()
            instance.check_at_start()
            instance.check_migrations()
        except (keys.KeyMismatch, instance.DataDirMismatch) as exc:
            raise CommandError(str(exc)) from None
        from pli.messaging.tasks import schedule_cleanup
        from pli.sharing.tasks import schedule_periodic

        worker_id = f"{socket.gethostname()}-{os.getpid()}"[:64]
        worker_options: dict[str, Any] = {
            "queue_name": "*",
            "interval": options["interval"],
            "batch": options["batch"],
            "reload": False,
            "startup_delay": not options["batch"],
            "worker_id": worker_id,
            "verbosity": options["verbosity"],
        }
        if options["max_tasks"]:
            worker_options["max_tasks"] = options["max_tasks"]
        failures, last_failure = 0, 0.0
        while True:
            try:
                # At start and again once a lost database answers: a run that was starting
                # when it went away died before planning its successor, ending its chain.
                schedule_periodic()
                # Blobs of aborted uploads are removed hourly by a job that re-enqueues itself.
                schedule_cleanup()
                call_command("db_worker", **worker_options)
                return
            except (OperationalError, InterfaceError) as exc:
                # PostgreSQL restarted or out of reach: django-tasks' loop raises and the
                # worker used to exit, leaving notifications undelivered until someone
                # started it again (a supervisor's start limit gives up within a second).
                # Wait for the database instead; a job it was running is re-queued by the
                # periodic jobs, as after a crash. A batch run still fails at once.
                if options["batch"] or options["max_tasks"]:
                    raise
                if time.monotonic() - last_failure > 600:
                    failures = 0  # a new outage, not the same one going on
                delay = DATABASE_RETRY_DELAYS[min(failures, len(DATABASE_RETRY_DELAYS) - 1)]
                failures, last_failure = failures + 1, time.monotonic()
                reason = " ".join(str(exc).split())
                logger.warning("worker: database unreachable (%s): trying again in %g s", reason, delay)
                with contextlib.suppress(OperationalError, InterfaceError):
                    connections.close_all()
                time.sleep(delay)
                worker_options["startup_delay"] = False
