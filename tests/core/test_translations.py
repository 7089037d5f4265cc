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


def _french_texts(path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) of every compiled entry, each plural form on its own."""
    texts = []
    for entry in _entries(path):
        if entry.lstrip().startswith("#~"):
            continue
        keywords = ["msgstr[0]", "msgstr[1]"] if "msgid_plural" in entry else ["msgstr"]
        texts += [(_string(entry, "msgid"), _string(entry, keyword)) for keyword in keywords]
    return texts


@pytest.mark.parametrize("path", FRENCH_CATALOGUES, ids=lambda p: str(p.relative_to(Path(pli.__file__).parent)))
def test_french_texts_use_the_typographic_apostrophe(path: Path) -> None:
    """One apostrophe throughout, the typographic one (U+2019): the patient's code page had
    « n\u2019existe » beside « L'envoyer », which reads as a mistake. (The SMS writer turns
    it back into the ASCII one, where that keeps the SMS in the GSM alphabet.)"""
    problems = [f"{msgid} -> {msgstr}" for msgid, msgstr in _french_texts(path) if "'" in msgstr]
    assert not problems, "\n".join(problems)


def test_the_error_pages_written_in_french_use_the_typographic_apostrophe() -> None:
    """The 500 and 503 pages are plain HTML (shown when templates or the database may be what
    failed), so the catalogues' rules are checked on them here."""
    for name in ("500.html", "503.html"):
        page = Path(pli.__file__).parent / "core/templates/core/errors" / name
        text = re.sub(r"<[^>]*>", "", page.read_text(encoding="utf-8"))
        assert "'" not in text, name


# « RE : » and « TR : » are written into the subject itself, which other software reads and
# matches as mail programs write it, with a plain space.
SUBJECT_PREFIXES = {"Re:", "Fwd:"}


@pytest.mark.parametrize("path", FRENCH_CATALOGUES, ids=lambda p: str(p.relative_to(Path(pli.__file__).parent)))
def test_french_high_punctuation_and_guillemets_hold_to_their_word(path: Path) -> None:
    """French puts a space before « : ; ! ? » and inside guillemets, and it must not break:
    with a plain one, « Objet » and its colon, or « Date de naissance » and its colon on a
    phone, could end up on two lines. (An SMS turns them back into plain spaces.)"""
    problems = []
    for msgid, msgstr in _french_texts(path):
        if msgid in SUBJECT_PREFIXES:
            continue
        if re.search(r" [:;!?»]|« ", msgstr):
            problems.append(f"plain space: {msgid} -> {msgstr}")
        # No space at all (« Erreur: »), except in a header name or a URL quoted as is.
        text = re.sub(r"Authorization: Bearer|\w+://", "", msgstr)
        if re.search(r"[^\s\u00a0\u202f][;!?»]|[^\s\u00a0\u202f]:(?!\w)|«[^\s\u00a0\u202f]", text):
            problems.append(f"no space: {msgid} -> {msgstr}")
    assert not problems, "\n".join(problems)


def test_form_labels_end_with_a_non_breaking_space_and_colon_in_french() -> None:
    """Django's own French gives its label suffix a plain space; Pli's catalogue comes first."""
    from django.utils import translation

    with translation.override("fr"):
        assert translation.gettext(":") == "\u00a0:"
    with translation.override("en"):
        assert translation.gettext(":") == ":"


def test_a_text_in_several_catalogues_is_translated_the_same_in_each() -> None:
    """Django keeps one translation per text, the first installed app's: the access
    journal's « La date de fin est avant la date de début » replaced the search page's
    « … précède … », and its test, which expected its own app's wording, failed."""
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    for path in FRENCH_CATALOGUES:
        app = path.relative_to(Path(pli.__file__).parent).parts[0]
        for entry in _entries(path):
            if entry.lstrip().startswith("#~"):
                continue
            context = _string(entry, "msgctxt") if re.search(r"^msgctxt ", entry, re.MULTILINE) else ""
            keywords = ["msgstr[0]", "msgstr[1]"] if "msgid_plural" in entry else ["msgstr"]
            for keyword in keywords:
                seen.setdefault((context, _string(entry, "msgid"), keyword), {})[app] = _string(entry, keyword)
    problems = [f"{key[1]}: {apps}" for key, apps in seen.items() if len(set(apps.values())) > 1]
    assert not problems, "\n".join(problems)
