"""Search keys: accent-folded, lower-case ASCII tokens.

The same folding is applied to what is indexed and to what is typed, so "Hélène", "HELENE"
and "helene" meet, and "Jean-Pierre" is found from "jean" or "pierre".
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Ligatures and letters that NFKD does not split into a base letter plus an accent, as
# keyboards, the INS's traits and practice software write them (Œuvrard as OEUVRARD, Đặng as
# DANG, Łukasz as LUKASZ). Also the messages' and shares' search (pli.messaging.search).
SPECIAL_LETTERS = str.maketrans(
    {"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "đ": "d", "ł": "l", "\u0131": "i"}
)  # the last one: dotless i
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")

# Longer tokens are cut: nobody types 40 characters of one word to find a person, and the
# index column stays small.
MAX_TOKEN_LENGTH = 40


@functools.lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """``"Hélène  CŒUR-D'Alène"`` → ``"helene coeur d alene"``.

    Cached: an import folds the same professions, specialties, towns and first names
    millions of times. The cache is bounded, so memory is too.
    """
    lowered = text.lower().translate(SPECIAL_LETTERS)
    decomposed = unicodedata.normalize("NFKD", lowered)
    ascii_only = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NOT_ALNUM.sub(" ", ascii_only).strip()


def tokens(*texts: str) -> list[str]:
    """Distinct folded tokens of the given texts, in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        if text:
            for token in fold(text).split():
                seen.setdefault(token[:MAX_TOKEN_LENGTH], None)
    return list(seen)
