"""``pli worker``: the background worker (django-tasks' database worker, with Pli's defaults).

It delivers notifications (e-mail, SMS) and runs the periodic jobs (reminders, expiry,
clean-up; see :mod:`pli.sharing.tasks`). Run one or more next to the web server; ``pli run``
(``make run``) starts one for you in development.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pli.core import instance, keys


class Command(BaseCommand):
    help = "Run the background worker: delivers e-mail and SMS notifications and runs the periodic jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=0.5,
            help="seconds to wait when no job is due (default 0.5: one-time codes must arrive quickly)",
        )
        parser.add_argument("--batch", action="store_true", help="run the jobs that are due, then exit")
        parser.add_argument("--max-tasks", type=int, default=None, help="exit after this many jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        keys.keyring()  # fail now, not at the first job, if the master keys are missing or wrong
        try:
            keys.check_at_start()
            instance.check_at_start()
        except (keys.KeyMismatch, instance.DataDirMismatch) as exc:
            raise CommandError(str(exc)) from None
        from pli.messaging.tasks import schedule_cleanup
        from pli.sharing.tasks import schedule_periodic

        schedule_periodic()
        # Blobs of aborted uploads are removed hourly by a job that re-enqueues itself.
        schedule_cleanup()
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
        call_command("db_worker", **worker_options)
