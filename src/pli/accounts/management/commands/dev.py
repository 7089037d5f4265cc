from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pli.accounts import demo
from pli.accounts.models import User


class Command(BaseCommand):
    help = "Development helpers for the demo accounts: `pli dev totp EMAIL` prints the current code."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True)
        totp = subcommands.add_parser("totp", help="print the current authenticator code of a demo account")
        totp.add_argument("email")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PLI_ENV != "development":
            raise CommandError("`pli dev` is for development instances only")
        user = User.objects.filter(email__iexact=options["email"].strip()).first()
        if user is None:
            raise CommandError(f"no account with the e-mail address {options['email']!r}")
        if not demo.is_demo_user(user):
            raise CommandError("only the demo organisation's accounts can have their codes printed")
        secret = demo.totp_secret(user)
        if secret is None:
            raise CommandError("this account has no authenticator app set up")
        self.stdout.write(demo.current_totp_code(secret))
