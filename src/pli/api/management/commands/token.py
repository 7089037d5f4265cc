"""``pli token create --email E --name N [--scopes S …]``: prints the token on its last line."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pli.accounts.management.commands._errors import command_error
from pli.accounts.models import User
from pli.api import services
from pli.api.scopes import SCOPES


class Command(BaseCommand):
    help = "Personal API tokens: `create` makes one and prints it (on the last line, shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{create}")
        create = sub.add_parser("create", help="create a token for a user; the token is printed on the last line")
        create.add_argument("--email", required=True, help="the user's e-mail address")
        create.add_argument("--name", required=True, help="what the token is for, e.g. the software using it")
        create.add_argument(
            "--scopes",
            nargs="+",
            metavar="SCOPE",
            help=f"allowed actions (default: all): {', '.join(SCOPES)}; space- or comma-separated",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["email"].strip().lower()
        user = User.objects.filter(email=email).first()
        if user is None:
            raise CommandError(f"--email: no account with the e-mail address {email!r} (see `pli createuser`)")
        scopes = None
        if options["scopes"]:
            scopes = [scope for item in options["scopes"] for scope in item.split(",") if scope]
        try:
            token, raw = services.create_token(user, options["name"], scopes)
        except ValidationError as exc:
            raise command_error(exc) from None
        self.stdout.write(
            f"created token “{token.name}” ({token.prefix}…) for {user.email}, scopes: {' '.join(token.scopes)}"
        )
        self.stdout.write("It is shown only this once; it is stored only as a hash:")
        self.stdout.write(raw)
