"""The patient's INS (Identifiant National de Santé: the NIR, or a NIA), checked with
python-stdnum, with a message that says what is wrong with it."""

from __future__ import annotations

import datetime
import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from stdnum.exceptions import InvalidChecksum, InvalidLength
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.fr import nir


def normalise_ins(raw: str) -> str:
    """The INS without spaces, dots or dashes, Corsica's 2A/2B in capitals; "" if empty."""
    value = re.sub(r"[\s.\-]+", "", raw or "").upper()
    if not value:
        return ""
    try:
        return str(nir.validate(value))
    except InvalidChecksum:
        raise ValidationError(_("This INS has a wrong key: check the last two digits."), code="checksum") from None
    except InvalidLength:
        raise ValidationError(_("An INS has 15 characters (13 and a 2-digit key)."), code="length") from None
    except StdnumError:
        raise ValidationError(_("This is not a valid INS."), code="invalid") from None


def contradicts_birth_date(ins: str, birth: datetime.date) -> bool:
    """Whether the year and month of birth an INS carries (its 2nd to 5th characters)
    contradict ``birth``. A month of 20 and above stands for an unknown or special one and
    is not compared. Identity vigilance: a message or a link for the wrong person starts
    with a birth date typed wrong."""
    if len(ins) != 15 or not ins[1:5].isdigit():
        return False
    year, month = int(ins[1:3]), int(ins[3:5])
    return year != birth.year % 100 or (1 <= month <= 12 and month != birth.month)


def birth_date_mismatch() -> ValidationError:
    return ValidationError(
        _("This birth date does not match the INS (its year and month of birth): check both."), code="mismatch"
    )
