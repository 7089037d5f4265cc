"""Professional and organisation identifiers: FINESS, SIRET, RPPS, ADELI.

Each ``normalise_*`` function accepts what people type (spaces, dots, dashes between
groups of digits) and returns the bare digits, or raises ``ValidationError`` with a message
naming the identifier. The SIRET checksum is python-stdnum's; an RPPS whose Luhn checksum
fails is accepted, with a warning for the user, because real RPPS numbers exist that fail it.
"""

from __future__ import annotations

import re

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from stdnum import luhn
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength
from stdnum.fr import siret

# People copy numbers from letters and cards: "123 456 789", "123.456.789", "123-456-789".
_SEPARATORS = re.compile(r"[\s.\-]+")

FINESS_LENGTH = 9
SIRET_LENGTH = 14
RPPS_LENGTH = 11
ADELI_LENGTH = 9


def _digits(value: str, length: int, name: str) -> str:
    compact = _SEPARATORS.sub("", value or "")
    if not compact:
        raise ValidationError(_("Enter the %(name)s number.") % {"name": name}, code="required")
    # isdecimal() alone would accept other scripts' digits (e.g. Arabic-Indic).
    if not (compact.isascii() and compact.isdigit()):
        raise ValidationError(
            _("The %(name)s number must contain digits only.") % {"name": name},
            code="digits",
        )
    if len(compact) != length:
        raise ValidationError(
            _("The %(name)s number must have exactly %(length)d digits (you entered %(count)d).")
            % {"name": name, "length": length, "count": len(compact)},
            code="length",
        )
    return compact


def normalise_finess(value: str) -> str:
    return _digits(value, FINESS_LENGTH, "FINESS")


def normalise_siret(value: str) -> str:
    compact = _digits(value, SIRET_LENGTH, "SIRET")
    try:
        return str(siret.validate(compact))
    except InvalidChecksum:
        raise ValidationError(
            _("This SIRET number is not valid: its check digit does not match. Check for a typing mistake."),
            code="checksum",
        ) from None
    except (InvalidFormat, InvalidLength, InvalidComponent):
        raise ValidationError(_("This SIRET number is not valid."), code="invalid") from None


def normalise_rpps(value: str) -> str:
    return _digits(value, RPPS_LENGTH, "RPPS")


def normalise_adeli(value: str) -> str:
    return _digits(value, ADELI_LENGTH, "ADELI")


def rpps_checksum_fails(rpps: str) -> bool:
    """True when a well-formed RPPS fails the Luhn check (accepted, but worth a second look)."""
    return not luhn.is_valid(rpps)


RPPS_CHECKSUM_WARNING = _(
    "This RPPS number does not pass the usual check (Luhn). It has been accepted, since some "
    "real numbers fail it, but please make sure it is correct."
)


# Validators in Django's style, for model and form fields.
def validate_finess(value: str) -> None:
    normalise_finess(value)


def validate_siret(value: str) -> None:
    normalise_siret(value)


def validate_rpps(value: str) -> None:
    normalise_rpps(value)


def validate_adeli(value: str) -> None:
    normalise_adeli(value)


# Where a number written the French way (0… without a country code) may be: mainland
# France first, then the overseas departments and territories, whose numbers also start
# with 0 (0590 is Guadeloupe).
_FRENCH_REGIONS = ("FR", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF", "NC", "PF", "WF")


def normalise_phone(value: str) -> str:
    """A practice's telephone number as typed (``04 78 12 34 56``, ``+33 4 78…``,
    ``0590 12 34 56``) in E.164 (``+33478123456``); "" for an empty value."""
    value = value.strip()
    if not value:
        return ""
    for region in _FRENCH_REGIONS:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            break
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if value.startswith("+"):
            break  # its country is in the number: no other region to try
    raise ValidationError(_("Enter a valid telephone number, for example 04 78 12 34 56."), code="invalid")
