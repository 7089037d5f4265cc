"""``pli audit verify``: walk the hash chain; exit 1 naming the first broken entry."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pli.audit.services import verify


class Command(BaseCommand):
    help = "Audit trail tools: `verify` checks the hash chain from the first entry to the head."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{verify}")
        sub.add_parser("verify", help="check that no entry was altered, removed or inserted")

    def handle(self, *args: Any, **options: Any) -> None:
        result = verify()
        if not result.ok:
            raise CommandError(f"audit trail broken: {result.problem} ({result.checked} entries verified before it)")
        self.stdout.write(f"audit trail intact: {result.checked} entries, head {result.head_hash}")
