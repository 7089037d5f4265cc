"""The French catalogues: every text has its translation, and gettext uses it.

A msgstr left empty, or an entry marked fuzzy (as makemessages marks one whose English
changed), is skipped when the catalogue is compiled: the French page then shows the
English text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pli

FRENCH_CATALOGUES = sorted(Path(pli.__file__).parent.glob("**/locale/fr/LC_MESSAGES/django.po"))


def _entries(path: Path) -> list[str]:
    # Entries are separated by blank lines; the first one is the catalogue's header.
    return [entry for entry in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if "msgid" in entry][1:]


def _string(entry: str, keyword: str) -> str:
    """The concatenated value of ``keyword`` ("msgstr", "msgstr[0]"…) in ``entry``."""
    match = re.search(rf'^{re.escape(keyword)} ((?:".*"\n?)+)', entry, re.MULTILINE)
    assert match, entry
    return "".join(re.findall(r'"(.*)"', match.group(1)))


def test_there_are_french_catalogues() -> None:
    assert len(FRENCH_CATALOGUES) >= 6


@pytest.mark.parametrize("path", FRENCH_CATALOGUES, ids=lambda p: str(p.relative_to(Path(pli.__file__).parent)))
def test_every_french_text_is_translated_and_not_fuzzy(path: Path) -> None:
    problems = []
    for entry in _entries(path):
        if entry.lstrip().startswith("#~"):  # obsolete, not compiled
            continue
        msgid = _string(entry, "msgid")
        if re.search(r"^#,.*\bfuzzy\b", entry, re.MULTILINE):
            problems.append(f"fuzzy: {msgid}")
        keywords = ["msgstr[0]", "msgstr[1]"] if "msgid_plural" in entry else ["msgstr"]
        if any(not _string(entry, keyword) for keyword in keywords):
            problems.append(f"untranslated: {msgid}")
    assert not problems, "\n".join(problems)
