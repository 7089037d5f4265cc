"""Dates written out in full, as French writes them: « le 1er décembre », not « le 1 décembre ».

Django's French DATE_FORMAT ("j F Y") has no way to say the ordinal that French uses for the
first day of a month only (Imprimerie nationale's rules; "2 décembre" stays a cardinal), so
the long forms go through these filters. Short forms (03/12/2026) need nothing.
"""

from __future__ import annotations

import datetime

from django import template
from django.utils import formats, timezone, translation

register = template.Library()


def _written(value: datetime.date, format_name: str) -> str:
    text = formats.date_format(value, format_name)
    language = translation.get_language() or ""
    if value.day == 1 and language.split("-")[0] == "fr" and text.startswith("1 "):
        return "1er" + text[1:]
    return text


def _local(value: datetime.datetime) -> datetime.datetime:
    return timezone.localtime(value) if timezone.is_aware(value) else value


@register.filter
def long_date(value: datetime.date | str | None) -> str:
    """``value`` (a date, or an aware date and time shown in the local time zone) written out
    in the active language: « 1er décembre 2026 », "1 December 2026"; nothing for anything
    else (text that is not a date), as Django's ``date`` filter."""
    if not isinstance(value, datetime.date):
        return ""
    return _written(_local(value) if isinstance(value, datetime.datetime) else value, "DATE_FORMAT")


@register.filter
def long_datetime(value: datetime.datetime | None) -> str:
    """An aware date and time in the local time zone, written out: « 1er décembre 2026 14:05 »."""
    if not isinstance(value, datetime.datetime):
        return ""
    return _written(_local(value), "DATETIME_FORMAT")
