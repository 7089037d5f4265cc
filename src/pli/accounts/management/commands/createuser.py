from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pli.accounts import services
from pli.accounts.management.commands._errors import command_error
from pli.accounts.models import Mailbox, Membership, Organisation
from pli.accounts.validators import RPPS_CHECKSUM_WARNING, rpps_checksum_fails


class Command(BaseCommand):
    help = (
        "Create an account in an organisation, with its personal mailbox. The person sets up "
        "a second factor at first sign-in."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="sign-in address")
        parser.add_argument(
            "--password", required=True, help="initial password; '-' reads it from standard input (kept out of ps)"
        )
        parser.add_argument("--org", required=True, help="the organisation's short name (slug)")
        parser.add_argument("--role", required=True, choices=Membership.Role.values)
        parser.add_argument("--first-name", required=True)
        parser.add_argument("--last-name", required=True)
        numbers = parser.add_mutually_exclusive_group()
        numbers.add_argument("--rpps", help="RPPS number (11 digits)")
        numbers.add_argument("--adeli", help="ADELI number (9 digits)")
        parser.add_argument("--profession", default="")
        parser.add_argument("--specialty", default="")
        parser.add_argument("--city", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        organisation = Organisation.objects.filter(slug=options["org"]).first()
        if organisation is None:
            raise CommandError(f"--org: no organisation with the short name {options['org']!r} (see `pli createorg`)")
        password = options["password"]
        if password == "-":  # noqa: S105 - the "read from stdin" marker, not a password
            password = sys.stdin.readline().rstrip("\n")
        try:
            user = services.create_user(
                email=options["email"],
                password=password,
                organisation=organisation,
                role=options["role"],
                first_name=options["first_name"],
                last_name=options["last_name"],
                professional=services.Professional(
                    profession=options["profession"],
                    specialty=options["specialty"],
                    rpps=options["rpps"],
                    adeli=options["adeli"],
                    city=options["city"],
                ),
            )
        except ValidationError as exc:
            raise command_error(exc) from None
        if user.rpps and rpps_checksum_fails(user.rpps):
            self.stderr.write(f"warning: --rpps: {RPPS_CHECKSUM_WARNING}")
        mailbox = Mailbox.objects.get(owner=user)
        role = Membership.Role(options["role"]).label
        self.stdout.write(f"Created {user.display_name} ({role}) in {organisation.name}")
        self.stdout.write(f"Mailbox: {mailbox.address}")
        self.stdout.write(user.email)
