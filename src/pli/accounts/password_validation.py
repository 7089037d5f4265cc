"""A password validator for the patterns Django's common-password list misses.

Django's list holds 20,000 leaked passwords; long variations on a few characters, keyboard
rows and "motdepasse2024!"-style words are what people reach for when told "12 characters".
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

# Keyboard rows (AZERTY and QWERTY) and alphabet/digit runs, read both ways.
_SEQUENCES = (
    "azertyuiop",
    "qsdfghjklm",
    "wxcvbn",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
)
_WORDS = (
    "motdepasse",
    "password",
    "passw0rd",
    "azerty",
    "qwerty",
    "soleil",
    "bonjour",
    "doctolib",
    "medecin",
    "docteur",
    "secretariat",
    "cabinet",
    "pli",
)
MIN_DISTINCT_CHARACTERS = 6
MAX_RUN = 4


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _leet(text: str) -> str:
    return text.translate(str.maketrans("@4310$5!7", "aaeiossit"))


def _longest_sequence(text: str) -> int:
    longest = 0
    for sequence in _SEQUENCES:
        for source in (sequence, sequence[::-1]):
            for size in range(len(source), MAX_RUN, -1):
                if size <= longest:
                    break
                if any(source[i : i + size] in text for i in range(len(source) - size + 1)):
                    longest = size
                    break
    return longest


class ObviousPatternValidator:
    """Refuses few distinct characters, long keyboard or alphabet runs, repeated blocks, and
    passwords that are a common word plus digits and symbols."""

    def validate(self, password: str, user: Any = None) -> None:
        folded = _fold(password)
        if len(set(folded)) < MIN_DISTINCT_CHARACTERS:
            raise ValidationError(_("This password uses too few different characters."), code="password_too_repetitive")
        if _longest_sequence(folded) > MAX_RUN:
            raise ValidationError(
                _("This password contains a keyboard or alphabet sequence (such as “azerty” or “12345”)."),
                code="password_sequence",
            )
        if re.fullmatch(r"(.{1,6})\1+.{0,3}", folded):
            raise ValidationError(_("This password repeats the same block."), code="password_repeated")
        # "Motdepasse2024!", "P@ssw0rd!!": strip what was added around the word, undo the
        # usual letter-for-symbol swaps inside it.
        core = re.sub(r"^[^a-z]+|[^a-z]+$", "", folded)
        letters = re.sub(r"[^a-z]", "", _leet(core))
        if letters in _WORDS:
            raise ValidationError(
                _("This password is a common word with digits or symbols added: choose a sentence instead."),
                code="password_common_word",
            )

    def get_help_text(self) -> str:
        return _("Your password can't be a keyboard sequence, a repeated pattern or a common word with digits added.")
