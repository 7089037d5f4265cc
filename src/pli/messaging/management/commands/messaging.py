"""``pli messaging cleanup-blobs``: remove attachment blobs that no message references;
``pli messaging reindex``: compute the search tokens of every message, and patient share,
again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pli.core.instance import DataDirMismatch
from pli.messaging import services, tasks


class Command(BaseCommand):
    help = (
        "Messaging maintenance: `cleanup-blobs` removes blobs of aborted sends (orphans) and stale uploads; "
        "`reindex` computes the search tokens of every message and patient share again (after an upgrade "
        "that indexes more)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{cleanup-blobs,reindex}")
        cleanup = sub.add_parser("cleanup-blobs", help="remove orphan attachment blobs and stale temporary files")
        cleanup.add_argument(
            "--older-than",
            type=int,
            default=None,
            metavar="SECONDS",
            help="only blobs written at least this long ago (default PLI_ORPHAN_BLOB_AGE, 3600; never below 3600)",
        )
        cleanup.add_argument(
            "--schedule", action="store_true", help="also plan the hourly background cleanup (needs a worker)"
        )

        sub.add_parser(
            "reindex",
            help="compute the search tokens of every message and patient share again, so that older ones are found "
            "like new ones",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "reindex":
            from pli.sharing.services import reindex_shares

            # Patient shares are found by the same tokens (their patient's names and INS).
            reindexed = services.reindex_messages()
            shares, unreadable_shares = reindex_shares()
            self.stdout.write(f"reindexed {reindexed.messages} messages and {shares} patient shares")
            if reindexed.unreadable or unreadable_shares:
                raise CommandError(
                    f"{reindexed.unreadable} messages and {unreadable_shares} patient shares could not be "
                    "decrypted and kept their former search tokens (their ids are in the log); run `pli keys status`"
                )
            return
        older_than = options.get("older_than")
        if older_than is not None and older_than < services.orphan_blob_age():
            raise CommandError(
                f"--older-than must be at least {int(services.orphan_blob_age())} seconds: "
                "a younger blob may belong to a send still in progress"
            )
        try:
            result = services.cleanup_orphan_blobs(older_than)
        except DataDirMismatch as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"removed {result.orphans} orphan blobs and {result.temporary} temporary files")
        if options.get("schedule"):
            added = tasks.schedule_cleanup()
            self.stdout.write("hourly cleanup scheduled" if added else "hourly cleanup already scheduled")
