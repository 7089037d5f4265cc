"""Showing a configured size limit the way it was set.

Django's ``filesizeformat`` counts in powers of 1024 and always prints a decimal: a limit of
10,000,000 bytes (the patient reply's "10 MB") reads "9.5 MB", which people take for another
limit, and 100 MiB reads "100.0 MB". A limit set in powers of 1024 is shown in those units
(French "Mio"), one set in powers of 1000 in these ("Mo", as phones show file sizes), both
without a needless ".0".
"""

from __future__ import annotations

from django.template.defaultfilters import filesizeformat
from django.utils import formats
from django.utils.translation import gettext_lazy, pgettext_lazy

# Django's own catalogue translates these, as 1024-based units ("%s Mio" in French).
_BINARY_UNITS = ((2**30, gettext_lazy("%s GB")), (2**20, gettext_lazy("%s MB")), (2**10, gettext_lazy("%s KB")))
_DECIMAL_UNITS = (
    (10**9, pgettext_lazy("decimal size", "%s GB")),
    (10**6, pgettext_lazy("decimal size", "%s MB")),
    (10**3, pgettext_lazy("decimal size", "%s KB")),
)


def limit_size(value: int) -> str:
    if value < 1000:
        return str(filesizeformat(value))
    units = _BINARY_UNITS if value % 1024 == 0 else _DECIMAL_UNITS
    for unit, label in units:
        if value >= unit:
            amount = value / unit
            number = formats.number_format(int(amount)) if amount.is_integer() else formats.number_format(amount, 1)
            return str(label) % number
    return str(filesizeformat(value))  # 1000 to 1023 bytes
