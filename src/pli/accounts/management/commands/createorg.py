from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser

from pli.accounts import services
from pli.accounts.management.commands._errors import command_error
from pli.accounts.models import Organisation


class Command(BaseCommand):
    help = "Create an organisation; prints its short name (slug) on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="the organisation's name")
        ids = parser.add_mutually_exclusive_group()
        ids.add_argument("--finess", help="FINESS number (9 digits)")
        ids.add_argument("--siret", help="SIRET number (14 digits)")
        parser.add_argument("--kind", choices=Organisation.Kind.values, default=Organisation.Kind.PRACTICE)
        parser.add_argument("--city", default="")
        parser.add_argument(
            "--allow-same-name",
            action="store_true",
            help="create it even if an organisation of the same name and city exists (another practice)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organisation = services.create_organisation(
                name=options["name"],
                kind=options["kind"],
                finess=options["finess"],
                siret=options["siret"],
                city=options["city"],
                # A provisioning script run twice made a second organisation (…-2) without a word.
                allow_same_name=options["allow_same_name"],
            )
        except ValidationError as exc:
            raise command_error(exc) from None
        self.stdout.write(f"Created organisation {organisation.name}")
        self.stdout.write(organisation.slug)
