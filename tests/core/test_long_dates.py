"""Dates written out in full: French says « le 1er décembre » (an ordinal for the first day
of a month only), which Django's French formats cannot express."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.template import Context, Template
from django.utils import translation

from pli.core.templatetags.pli_dates import long_date, long_datetime


@pytest.mark.parametrize(
    ("language", "day", "expected"),
    [
        ("fr", datetime.date(2026, 12, 1), "1er décembre 2026"),
        ("fr", datetime.date(2026, 12, 2), "2 décembre 2026"),
        ("fr", datetime.date(2026, 12, 11), "11 décembre 2026"),
        ("fr", datetime.date(2026, 12, 21), "21 décembre 2026"),
        ("en", datetime.date(2026, 12, 1), "1 December 2026"),
    ],
)
def test_long_date(language: str, day: datetime.date, expected: str) -> None:
    with translation.override(language):
        assert long_date(day) == expected


def test_a_date_and_time_is_written_in_the_local_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    # 23:30 UTC on 30 November is already 1 December in Paris.
    moment = datetime.datetime(2026, 11, 30, 23, 30, tzinfo=datetime.UTC)
    with translation.override("fr"):
        assert long_date(moment) == "1er décembre 2026"
        assert long_datetime(moment) == "1er décembre 2026 00:30"
    with translation.override("en"):
        assert long_datetime(moment) == "1 December 2026, 00:30"


def test_what_is_not_a_date_shows_nothing() -> None:
    assert long_date("1985-13-40") == ""
    assert long_date(None) == ""
    assert long_datetime(datetime.date(2026, 12, 1)) == ""  # type: ignore[arg-type]


def test_templates_load_it() -> None:
    template = Template("{% load pli_dates %}né le {{ day|long_date }}")
    with translation.override("fr"):
        assert template.render(Context({"day": datetime.date(1985, 3, 1)})) == "né le 1er mars 1985"
