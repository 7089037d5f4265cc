"""The patient's INS (Identifiant National de Santé: the NIR, or a NIA), checked with
python-stdnum, with a message that says what is wrong with it."""

from __future__ import annotations

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
