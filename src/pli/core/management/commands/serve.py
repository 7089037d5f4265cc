from __future__ import annotations

import argparse
import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from pli.core import instance, keys


def port_number(value: str) -> int:
    """A TCP port for ``--port`` (argparse reports a wrong one in its usage line)."""
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number between 1 and 65535, not {value!r}")
    return port


def positive_count(value: str) -> int:
    """``--workers`` and ``--threads``: gunicorn's workers failed to boot, each with a
    traceback, on ``--threads 0``."""
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return count


def default_port() -> int:
    """``PORT`` from the environment (8000 when unset); a wrong value is a configuration
    error of one line, not a traceback (or gunicorn's OverflowError) at start."""
    raw = os.environ.get("PORT") or "8000"
    try:
        return port_number(raw)
    except argparse.ArgumentTypeError:
        raise ImproperlyConfigured(f"PORT must be a port number between 1 and 65535, not {raw!r}") from None


class Command(BaseCommand):
    help = "Serve Pli with gunicorn (a production server). PORT overrides the default port 8000."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("PLI_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=port_number, default=default_port())
        parser.add_argument("--workers", type=positive_count, default=None, help="processes (default: number of cores)")
        parser.add_argument("--threads", type=positive_count, default=4, help="threads per process")

    def handle(self, *args: Any, **options: Any) -> None:
        # Fail before forking if the keys are missing, unreadable or wrong.
        keys.keyring()
        try:
            keys.check_at_start()
            instance.check_at_start()
            instance.check_migrations()
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
