"""FINESS, SIRET, RPPS and ADELI validation (property-based), and the password validator."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from pli.accounts import validators
from pli.accounts.password_validation import ObviousPatternValidator

digits = st.text(alphabet="0123456789", min_size=1, max_size=20)
separators = st.sampled_from(["", " ", ".", "-", "  "])


def _with_separators(number: str, separator: str) -> str:
    return separator.join(number[i : i + 3] for i in range(0, len(number), 3))


@given(st.text(alphabet="0123456789", min_size=9, max_size=9), separators)
def test_finess_accepts_nine_digits_however_typed(number: str, separator: str) -> None:
    assert validators.normalise_finess(_with_separators(number, separator)) == number


@given(digits.filter(lambda n: len(n) != 9))
def test_finess_refuses_other_lengths(number: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validators.normalise_finess(number)
    assert excinfo.value.code == "length"


@given(
    st.text(min_size=1, max_size=20).filter(lambda t: any(not (c.isascii() and c.isdigit()) for c in t.strip(" .-")))
)
def test_identifiers_refuse_non_digits(text: str) -> None:
    for normalise in (
        validators.normalise_finess,
        validators.normalise_rpps,
        validators.normalise_adeli,
        validators.normalise_siret,
    ):
        with pytest.raises(ValidationError):
            normalise(text)


def test_unicode_digits_are_refused() -> None:
    with pytest.raises(ValidationError) as excinfo:
        validators.normalise_adeli("١٢٣٤٥٦٧٨٩")  # Arabic-Indic digits: isdigit() but not ASCII
    assert excinfo.value.code == "digits"


@given(st.text(alphabet="0123456789", min_size=13, max_size=13), separators)
def test_siret_with_a_valid_key_is_accepted(base: str, separator: str) -> None:
    siren_base = base[:8]
    siren = siren_base + luhn.calc_check_digit(siren_base)
    body = siren + base[8:12]
    number = body + luhn.calc_check_digit(body)
    if number.startswith("356000000"):  # La Poste: stdnum applies its special rule
        return
    assert validators.normalise_siret(_with_separators(number, separator)) == number


@given(st.text(alphabet="0123456789", min_size=14, max_size=14))
def test_siret_failing_luhn_is_refused(number: str) -> None:
    if (luhn.is_valid(number) and luhn.is_valid(number[:9])) or number.startswith("356000000"):
        return
    with pytest.raises(ValidationError) as excinfo:
        validators.normalise_siret(number)
    assert excinfo.value.code in {"checksum", "invalid"}


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_rpps_accepts_eleven_digits_and_flags_luhn_failures(number: str) -> None:
    assert validators.normalise_rpps(number) == number
    assert validators.rpps_checksum_fails(number) is (not luhn.is_valid(number))


@given(digits.filter(lambda n: len(n) != 11))
def test_rpps_refuses_other_lengths(number: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validators.normalise_rpps(number)
    assert "11" in excinfo.value.messages[0]


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_adeli_accepts_nine_digits(number: str) -> None:
    assert validators.normalise_adeli(number) == number


def test_empty_identifier_is_refused() -> None:
    with pytest.raises(ValidationError) as excinfo:
        validators.normalise_rpps("  ")
    assert excinfo.value.code == "required"


def test_real_looking_examples() -> None:
    assert validators.normalise_siret("732 829 320 00074") == "73282932000074"
    assert not validators.rpps_checksum_fails("10001234565")
    assert validators.rpps_checksum_fails("10001234566")


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaaaaaaaa",
        "abababababab",
        "azertyuiop12",
        "123456789abc",
        "motdepasse2024!",
        "P@ssw0rd!!!!",
        "Qwerty123456!",
    ],
)
def test_obvious_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValidationError):
        ObviousPatternValidator().validate(password)


@pytest.mark.parametrize(
    "password", ["correct horse battery staple", "la mer monte vers sept heures", "Tisane-Bleue-42!"]
)
def test_sentences_are_accepted(password: str) -> None:
    ObviousPatternValidator().validate(password)


@given(st.text(min_size=12, max_size=64))
def test_password_validator_never_crashes(password: str) -> None:
    try:
        ObviousPatternValidator().validate(password)
    except ValidationError as exc:
        assert exc.messages
