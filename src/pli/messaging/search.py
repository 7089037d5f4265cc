"""Keyed blind-index tokens: search without storing searchable words in plaintext.

A word is normalised (Unicode compatibility form, accents removed, case folded), prefixed
with the kind of field it comes from, and passed through HMAC-SHA256 under the instance's
``search-index`` purpose key; the first 8 bytes, in hex, are stored with the message. A
query is tokenised the same way and matched by equality. Without the key (wrapped by the
master key) a token reveals nothing about its word; equal words in different messages do
give equal tokens, which is what makes the index work.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable

from pli.core.keys import purpose_key
from pli.directory.text import SPECIAL_LETTERS

PURPOSE = "search-index"
# Patient shares are indexed under a key of their own: the same patient's shares and
# messages give unrelated tokens, so the two tables cannot be joined on them.
SHARES_PURPOSE = "share-search-index"
TOKEN_BYTES = 8
MAX_TOKENS_PER_MESSAGE = 256

SUBJECT = "s"
PATIENT_NAME = "p"
INS = "i"
KINDS = (SUBJECT, PATIENT_NAME, INS)

_WORD = re.compile(r"[^\W_]+")
# 13 characters (sex, year, month, department with Corsica's 2A/2B, commune, order), then
# optionally the 2-digit key.
_INS = re.compile(r"[0-9][0-9AB]{12}(?:[0-9]{2})?", re.ASCII)
# Groups an INS is commonly typed in: 1 58 04 69 999 001 64, or one per character at most.
_INS_MAX_GROUPS = 15
# A name of several parts is also indexed joined, as other software and people write it:
# N'Diaye as NDIAYE, Le Gall as LEGALL, Jean-Pierre as JEANPIERRE (of the first parts only).
_NAME_MAX_PARTS = 6
# A patient's name is also found by its first letters ("lef" finds Lefèvre), as in the
# patient search of practice software: each name word's beginnings of this many letters
# and more are indexed too, keyed like every token. Subjects are not: their words are found
# whole, and a message holds one patient but many subject words.
NAME_PREFIX_MIN = 3
# "Mme Dupont née Martin", "Martin épouse Dupont": how letters name a patient. Only birth
# names are known, so neither the word that says which is which, nor the name in use (before
# "née", after "épouse"), nor the title is looked for.
_BORN = frozenset({"ne", "nee"})
_MARRIED = frozenset({"epouse", "epoux", "ep"})
_TITLES = frozenset({"mme", "madame", "mlle", "mademoiselle", "monsieur", "mr"})


def fold(text: str) -> str:
    """Lower-case, accent-free form: "Élodie" and "elodie" match, "Œuvrard" and "oeuvrard",
    "Đặng" and "dang" (the directory's letters, pli.directory.text.SPECIAL_LETTERS)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().translate(SPECIAL_LETTERS)


def words(text: str) -> list[str]:
    """The distinct searchable words of ``text`` (two characters or more), in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(fold(text)):
        if len(word) >= 2:
            seen.setdefault(word, None)
    return list(seen)


def name_parts(text: str) -> list[str]:
    """The parts of a name, folded, of any length ("N'Diaye" gives "n", "diaye")."""
    return _WORD.findall(fold(text))


def joined_names(text: str) -> list[str]:
    """Each run of two or more consecutive parts of a name, written as one word."""
    parts = name_parts(text)[:_NAME_MAX_PARTS]
    return ["".join(parts[start:end]) for start in range(len(parts)) for end in range(start + 2, len(parts) + 1)]


def prefixes(word: str) -> list[str]:
    """The beginnings of ``word`` that are indexed besides the word itself."""
    return [word[:length] for length in range(NAME_PREFIX_MIN, len(word))]


def normalise_ins(value: str) -> str:
    return re.sub(r"[\s.-]", "", value).upper()


def token(kind: str, word: str, purpose: str = PURPOSE) -> str:
    digest = hmac.new(purpose_key(purpose), f"{kind}:{word}".encode(), hashlib.sha256).digest()
    return digest[:TOKEN_BYTES].hex()


def message_tokens(subject: str, patient: dict[str, str] | None, purpose: str = PURPOSE) -> list[str]:
    """Every token of one message: subject words, patient names, INS. (Of a patient share
    too: no subject, and :data:`SHARES_PURPOSE`.)"""
    pairs: list[tuple[str, str]] = [(SUBJECT, w) for w in words(subject)]
    if patient:
        names = [patient.get("family_name") or "", patient.get("given_names") or ""]
        whole = words(" ".join(names)) + [w for name in names for w in joined_names(name)]
        pairs += [(PATIENT_NAME, w) for w in whole]
        ins = normalise_ins(patient.get("ins") or "")
        if ins:
            pairs.append((INS, ins))
            # Without its key too, as people often type only the 13 characters.
            pairs.append((INS, ins[:13]))
        # Last, so that a long subject leaves out beginnings rather than whole words.
        pairs += [(PATIENT_NAME, start) for w in whole for start in prefixes(w)]
    distinct = list(dict.fromkeys(token(kind, word, purpose) for kind, word in pairs))
    return distinct[:MAX_TOKENS_PER_MESSAGE]


def _ins_at(raw: list[str], start: int) -> tuple[str, int] | None:
    """An INS typed from ``raw[start]`` on, in one piece or in groups ("1 58 04 69 999 001
    64", as printed on a carte Vitale): the normalised INS and the index after it."""
    for end in range(min(len(raw), start + _INS_MAX_GROUPS), start, -1):
        ins = normalise_ins("".join(raw[start:end]))
        if _INS.fullmatch(ins):
            return ins, end
    return None


def query_words(text: str, kinds: Iterable[str] = KINDS) -> list[list[tuple[str, str]]]:
    """For each query word, the (kind, word) pairs it may match (one per kind); a message
    must match at least one pair of every word. Empty when nothing in ``text`` can be looked
    for (single letters, punctuation), which then matches no message, not every one."""
    raw = text.split()
    return _query_words(_birth_names(raw), tuple(kinds)) or _query_words(raw, tuple(kinds))


def _birth_names(raw: list[str]) -> list[str]:
    """``raw`` without what names a patient otherwise than by birth: a title, "née" and the
    name in use before it, "épouse" and the name in use after it."""
    kept: list[str] = []
    before: list[str] = []  # the words before "née", looked for when none follows it
    for part in raw:
        found = set(words(part))
        if found and found <= _BORN:
            before, kept = kept, []
        elif found and found <= _MARRIED:
            break
        elif not (found and found <= _TITLES):
            kept.append(part)
    return kept or before


def _query_words(raw: list[str], kinds: tuple[str, ...]) -> list[list[tuple[str, str]]]:
    groups: list[list[tuple[str, str]]] = []
    index = 0
    while index < len(raw):
        found = _ins_at(raw, index) if INS in kinds else None
        if found is not None:
            ins, index = found
            groups.append([(INS, ins), *((kind, ins.casefold()) for kind in kinds if kind != INS)])
            continue
        for word in words(raw[index]):
            alternatives = [(kind, word) for kind in kinds if kind != INS]
            if alternatives:
                groups.append(alternatives)
        index += 1
    return groups


def searchable(text: str) -> bool:
    """Whether ``text`` holds anything to look for (see :func:`query_words`)."""
    return bool(query_words(text))


def query_tokens(text: str, kinds: Iterable[str] = KINDS, purpose: str = PURPOSE) -> list[list[str]]:
    """:func:`query_words` as tokens."""
    return [[token(kind, word, purpose) for kind, word in group] for group in query_words(text, kinds)]
