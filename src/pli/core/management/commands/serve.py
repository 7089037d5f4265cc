from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from pli.core import instance, keys


class Command(BaseCommand):
    help = "Serve Pli with gunicorn (a production server). PORT overrides the default port 8000."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("PLI_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=None, help="processes (default: number of cores)")
        parser.add_argument("--threads", type=int, default=4, help="threads per process")

    def handle(self, *args: Any, **options: Any) -> None:
        # Fail before forking if the keys are missing, unreadable or wrong.
        keys.keyring()
        try:
            keys.check_at_start()
            instance.check_at_start()
        except (keys.KeyMismatch, instance.DataDirMismatch) as exc:
            raise CommandError(str(exc)) from None
        finally:
            # The checks opened a database connection: gunicorn's workers must not inherit it
            # (SQLite forbids using one across fork(); on PostgreSQL it would be shared).
            connections.close_all()
        from pli.core.server import serve

        if settings.PLI_ENV == "development":
            # A service unit that forgot PLI_ENV=production runs without HSTS or secure
            # cookies, with generated secrets and a page showing captured e-mails and SMS.
            self.stderr.write(
                "pli: development mode (PLI_ENV is not 'production'): for trying Pli out, never for real data"
            )

        serve(options["host"], options["port"], options["workers"], options["threads"])
