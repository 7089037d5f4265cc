"""Turn a service's ValidationError into one CommandError naming the command's options."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

# Service field names -> the options an operator typed.
OPTION_NAMES = {
    "name": "--name",
    "finess": "--finess",
    "siret": "--siret",
    "kind": "--kind",
    "email": "--email",
    "password": "--password",
    "role": "--role",
    "first_name": "--first-name",
    "last_name": "--last-name",
    "rpps": "--rpps",
    "adeli": "--adeli",
    "scopes": "--scopes",  # pli token create
}


def command_error(error: ValidationError) -> CommandError:
    if hasattr(error, "error_dict"):
        lines = [
            f"{OPTION_NAMES.get(field, field)}: {message}"
            for field, errors in error.error_dict.items()
            for message in ValidationError(errors).messages
        ]
    else:
        lines = list(error.messages)
    return CommandError("\n".join(lines))
