from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pli.core import keys
from pli.core.management.commands.serve import default_port, port_number


class Command(BaseCommand):
    help = "Development: apply migrations, seed the demo data, then serve Pli (used by `make run`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("PLI_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=port_number, default=default_port())

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PLI_ENV != "development":
            raise CommandError("`pli run` is for development; use `pli migrate` and `pli serve` in production")
        keys.keyring()
        call_command("migrate", interactive=False, verbosity=0)
        self._seed_demo()
        url = f"http://{options['host']}:{options['port']}/"
        self.stdout.write(self.style.SUCCESS(f"\nPli is starting: open {url}\n"))
        self.stdout.write(f"Data dir: {settings.DATA_DIR}  (database, blobs, keys)\n\n")
        self.stdout.flush()
        from pli.core.server import serve
        from pli.sharing.background import background_worker

        # A stylesheet or script edited while it runs is served as it now is: WhiteNoise
        # otherwise keeps each file's size and headers from start-up, and a file edited since
        # came out cut short or padded (the page unstyled). The server loads the application
        # (and WhiteNoise) after this line.
        settings.WHITENOISE_AUTOREFRESH = True
        read_templates_afresh()

        # Notifications (e-mail, SMS) and periodic jobs run in a worker process beside the
        # web server; it stops with it.
        with background_worker(self.stdout):
            serve(options["host"], options["port"])

    def _seed_demo(self) -> None:
        from pli.accounts.demo import format_demo, seed_demo
        from pli.messaging.demo import format_demo_messages, seed_demo_messages
        from pli.sharing.demo import format_demo_shares, seed_demo_shares

        seeded = seed_demo()
        if seeded is None:
            return
        organisation = seeded.organisation
        # Example content only with a demo created now: an existing one is left as its
        # users left it (messages deleted stay deleted).
        if seeded.created:
            seed_demo_messages(organisation)
            seed_demo_shares(organisation)
        content = format_demo_messages(organisation) + format_demo_shares(organisation)
        self.stdout.write("\n" + format_demo(seeded) + ("\n" + content if content else ""))


def read_templates_afresh() -> None:
    """Pages are rendered from their templates as the files now are, as a developer editing
    one under `make run` expects: Django keeps each template it compiled for the life of
    the process (its cached loader, also in development; only `runserver`'s reloader clears
    it), and the page stayed as it was at start-up. `pli serve` keeps the cache."""
    from django.template import engines
    from django.template.backends.django import DjangoTemplates

    cached = "django.template.loaders.cached.Loader"
    for engine in engines.all():
        if isinstance(engine, DjangoTemplates):
            inner = engine.engine
            # The loaders the cached one wraps, whichever they are configured to be.
            inner.loaders = [
                loader
                for entry in inner.loaders
                for loader in (entry[1] if isinstance(entry, tuple) and entry[0] == cached else [entry])
            ]
            inner.__dict__.pop("template_loaders", None)  # built from .loaders on next use
