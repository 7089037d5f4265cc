"""Parsing what people type: birth dates, INS, mobile numbers, e-mail addresses, codes.

Each function returns the normalised value or raises ``ValidationError`` whose message is a
sentence for the person who typed it (French first through the translations).
"""

from __future__ import annotations

import datetime
import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from pli.core.ins import normalise_ins as normalise_ins
from pli.notify.email import deliverable
from pli.notify.sms import InvalidPhoneNumber, allowed_regions, normalise_mobile

# ASCII digits only ("\d" would also take other scripts' digits: full-width, Arabic-Indic...);
# any spaces, a no-break one included. Separators are optional: a phone's numeric keypad has
# no "/" (iOS shows digits only), so 31011980 and 31 01 1980 are read as 31/01/1980.
_FRENCH_DATE = re.compile(
    r"([0-9]{1,2})\s*[/.\-]\s*([0-9]{1,2})\s*[/.\-]\s*([0-9]{4})|([0-9]{1,2})\s+([0-9]{1,2})\s+([0-9]{4})"
)
_COMPACT_DATE = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{4})")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_CODE = re.compile(r"[0-9]{6}")
# Six digits standing alone in a longer text, and a character that is neither a digit nor a
# space: what a pasted message looks like (a typo such as "123456 7" has none).
_CODE_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")
_NOT_DIGIT_OR_SPACE = re.compile(r"[^0-9\s]")
OLDEST_YEAR = 1880
_SHORT_YEAR = re.compile(r"[0-9]{1,2}\s*[./\- ]\s*[0-9]{1,2}\s*[./\- ]\s*[0-9]{2}|[0-9]{6}")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def parse_birth_date(raw: str) -> datetime.date:
    """``JJ/MM/AAAA`` (also with dots, dashes, spaces or no separator) or ``YYYY-MM-DD``."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError(_("Enter the birth date."), code="required")
    iso = _ISO_DATE.fullmatch(text)
    french = _FRENCH_DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text)
    try:
        if iso:
            value = datetime.date(int(iso[1]), int(iso[2]), int(iso[3]))
        elif french:
            day, month, year = (part for part in french.groups() if part is not None)
            value = datetime.date(int(year), int(month), int(day))
        elif _SHORT_YEAR.fullmatch(text):
            # 15/02/84: the century cannot be guessed for a birth date (1924 or 2024?).
            raise ValidationError(_("Write the year with its 4 digits, for example 31/01/1980."), code="invalid")
        else:
            raise ValidationError(_("Enter the birth date as DD/MM/YYYY, for example 31/01/1980."), code="invalid")
    except ValueError:
        # Well written, but no such day (31/02/1990): the format is not the problem.
        raise ValidationError(_("This date does not exist: check the day and the month."), code="nonexistent") from None
    if value.year < OLDEST_YEAR or value > timezone.localdate():
        raise ValidationError(_("This birth date is not plausible; check the year."), code="implausible")
    return value


def parse_iso_birth_date(raw: str) -> datetime.date:
    """The API's ``patient_birth_date``: strictly ``YYYY-MM-DD``."""
    text = (raw or "").strip()
    if not _ISO_DATE.fullmatch(text):
        raise ValidationError(_("Give the birth date as YYYY-MM-DD."), code="invalid")
    try:
        return parse_birth_date(text)
    except ValidationError as exc:
        if exc.code == "nonexistent":  # well formed, but no such day (1980-02-30)
            raise ValidationError(
                _("This date does not exist; give the birth date as YYYY-MM-DD."), code="invalid"
            ) from None
        raise


def parse_boolean(raw: object) -> bool:
    """An API flag: ``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``; absent
    or empty is false. Anything else is refused rather than guessed."""
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError(_("Give true or false."), code="invalid")


def normalise_patient_mobile(raw: str) -> str:
    try:
        return normalise_mobile(raw, allowed_regions())
    except InvalidPhoneNumber as exc:
        if exc.code == "not_mobile":
            message = _("This is not a mobile number: the code is sent by SMS.")
        elif exc.code == "region":
            message = _("SMS can only be sent to French mobile numbers.")
        else:
            message = _("Enter a mobile number such as 06 12 34 56 78 or +33 6 12 34 56 78.")
        raise ValidationError(message, code=exc.code) from None


def normalise_email(raw: str) -> str:
    value = (raw or "").strip()
    try:
        validate_email(value)
        # Refused here, where the practitioner can correct it, rather than by the link's
        # e-mail (see pli.notify.email.deliverable).
        if not deliverable(value):
            raise ValidationError("not deliverable")
        # A patient's mailbox is on the Internet: « a@localhost » or « a@[127.0.0.1] », which
        # Django's validator takes, would only ever reach this server or the sender's own.
        domain = value.rpartition("@")[2]
        if domain.startswith("[") or "." not in domain.strip("."):
            raise ValidationError("not a public domain")
    except ValidationError:
        raise ValidationError(_("Enter a valid e-mail address."), code="invalid") from None
    local, _at, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def clean_code(raw: str) -> str:
    value = re.sub(r"\s+", "", raw or "")
    if _CODE.fullmatch(value):
        return value
    # A phone's "copy" often takes the whole SMS or e-mail line ("Your Pli code: 123456. It
    # is valid…", the code again at the end for autofill): its one code is the answer. Any
    # doubt (two different codes, none) is refused as before; a code found so is checked,
    # and counted when wrong, like a typed one.
    text = raw or ""
    found: set[str] = set(_CODE_IN_TEXT.findall(text))
    if len(found) == 1 and _NOT_DIGIT_OR_SPACE.search(text):
        return found.pop()
    raise ValidationError(_("Enter the 6-digit code you received."), code="invalid")
