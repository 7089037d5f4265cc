"""Showing a configured size limit the way it was set.

Django's ``filesizeformat`` counts in powers of 1024 and always prints a decimal: a limit of
10,000,000 bytes (the patient reply's "10 MB") reads "9.5 MB", which people take for another
limit, and 100 MiB reads "100.0 MB". A limit set in powers of 1024 is shown in those units
(French "Mio"), one set in powers of 1000 in these ("Mo", as phones show file sizes), both
without a needless ".0"; powers of 1000 win when both read exactly (16,000,000 bytes is
16 Mo, not 15,3 Mio).
"""

from __future__ import annotations

from typing import Any

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


def _exact(value: int, units: tuple[tuple[int, Any], ...]) -> str | None:
    """``value`` in the largest of ``units`` it reaches, if that takes at most one decimal."""
    for unit, label in units:
        if value >= unit:
            return _show(label, value / unit) if (value * 10) % unit == 0 else None
    return None


def _show(label: Any, amount: float) -> str:
    amount = round(amount, 1)
    number = formats.number_format(int(amount)) if amount.is_integer() else formats.number_format(amount, 1)
    return str(label) % number


def limit_size(value: int) -> str:
    if value < 1000:
        return str(filesizeformat(value))
    found = _exact(value, _DECIMAL_UNITS) or _exact(value, _BINARY_UNITS)
    if found is not None:
        return found
    # Set in neither (1,990,000 bytes): powers of 1000, rounded.
    unit, label = next((unit, label) for unit, label in _DECIMAL_UNITS if value >= unit)
    return _show(label, value / unit)


def file_size(value: int) -> str:
    """A file's size as phones and most computers show it: in powers of 1000, « ko », « Mo »,
    « Go » in French (Django's ``filesizeformat`` writes « Kio », « Mio », units few readers
    know, beside limits shown as « 100 Mo »), one decimal under 100 (« 1,6 Mo »), none above
    (« 350 ko »)."""
    if value < 1000:
        return str(filesizeformat(value))
    unit, label = next((unit, label) for unit, label in _DECIMAL_UNITS if value >= unit)
    amount = value / unit
    return _show(label, amount) if amount < 100 else str(label) % formats.number_format(round(amount))
