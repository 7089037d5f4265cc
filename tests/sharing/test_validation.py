"""What people type: birth dates, INS, mobile numbers, codes (property-based where it helps)."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from pli.sharing import validation

DATES = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2020, 12, 31))


@given(DATES)
def test_both_birth_date_forms_give_the_same_date(day: datetime.date) -> None:
    assert validation.parse_birth_date(day.strftime("%d/%m/%Y")) == day
    assert validation.parse_birth_date(day.isoformat()) == day
    assert validation.parse_birth_date(f" {day.day}/{day.month}/{day.year} ") == day
    # From a phone's digits-only keypad.
    assert validation.parse_birth_date(day.strftime("%d%m%Y")) == day
    assert validation.parse_birth_date(day.strftime("%d %m %Y")) == day


@given(st.text(max_size=30))
def test_any_text_is_a_date_or_a_clear_error(raw: str) -> None:
    try:
        value = validation.parse_birth_date(raw)
    except ValidationError as exc:
        assert exc.code in {"required", "invalid", "implausible"}
    else:
        assert isinstance(value, datetime.date)


@pytest.mark.parametrize("raw", ["31/02/1984", "1984-13-01", "15-02-84", "2999-01-01", "01/01/1850", "15/02/1984x"])
def test_impossible_birth_dates_are_refused(raw: str) -> None:
    with pytest.raises(ValidationError):
        validation.parse_birth_date(raw)


def test_a_well_written_date_that_does_not_exist_is_said_so() -> None:
    """31/02/1990 was answered "Enter the birth date as DD/MM/YYYY", which it was."""
    with pytest.raises(ValidationError) as raised:
        validation.parse_birth_date("31/02/1990")
    assert raised.value.code == "nonexistent"
    assert "Cette date n" in raised.value.messages[0] and "JJ/MM/AAAA" not in raised.value.messages[0]


@pytest.mark.parametrize("raw", ["15/02/84", "15.02.84", "5-2-84", "150284"])
def test_a_two_digit_year_is_asked_in_full(raw: str) -> None:
    """« 15/02/84 » was told the format (JJ/MM/AAAA), not what was wrong with it."""
    with pytest.raises(ValidationError) as raised:
        validation.parse_birth_date(raw)
    assert raised.value.messages == ["Écrivez l\u2019année avec ses 4 chiffres, par exemple 31/01/1980."]


def test_the_api_takes_iso_dates_only() -> None:
    assert validation.parse_iso_birth_date("1984-02-15") == datetime.date(1984, 2, 15)
    with pytest.raises(ValidationError):
        validation.parse_iso_birth_date("15/02/1984")
    # A day that does not exist is explained in the API's own format.
    with pytest.raises(ValidationError) as raised:
        validation.parse_iso_birth_date("1980-02-30")
    assert "AAAA-MM-JJ" in raised.value.messages[0] and "JJ/MM/AAAA" not in raised.value.messages[0]


def _other_digits(text: str, zero: int) -> str:
    """``text`` with its digits written in another script, whose zero is ``zero``."""
    return "".join(chr(zero + int(ch)) if ch.isdigit() else ch for ch in text)


# Full-width and Arabic-Indic digits.
@pytest.mark.parametrize("raw", [_other_digits("2000-01-01", 0xFF10), _other_digits("15/02/1984", 0x0660)])
def test_dates_take_ascii_digits_only(raw: str) -> None:
    with pytest.raises(ValidationError):
        validation.parse_birth_date(raw)


def test_ins_with_its_key() -> None:
    assert validation.normalise_ins("2 84 02 99 123 456 55") == "284029912345655"
    assert validation.normalise_ins("1 85 05 2a 006 084 35") == "185052A00608435"  # Corsica
    # What is wrong is said: the key, or the length (the share form said "15 characters" of
    # an INS that had them).
    for wrong, code in (("284029912345656", "checksum"), ("28402991234565", "length"), ("ABCDEFGHIJKLMNO", "invalid")):
        with pytest.raises(ValidationError) as refused:
            validation.normalise_ins(wrong)
        assert refused.value.code == code
    assert validation.normalise_ins(" ") == ""  # no INS given: the form makes it optional


@given(st.text(max_size=20))
def test_codes_are_six_digits(raw: str) -> None:
    try:
        code = validation.clean_code(raw)
    except ValidationError:
        compact = "".join(raw.split())
        assert not (compact.isascii() and compact.isdigit() and len(compact) == 6)
    else:
        assert len(code) == 6 and code.isdigit()


def test_a_pasted_message_gives_its_one_code() -> None:
    """A phone's « copy » takes the whole SMS: its code, once or twice, is the answer."""
    sms = "Votre code Pli\u00a0: 482913. Il est valable 10 minutes. Ne le communiquez à personne.\n\n@pli.fr #482913"
    assert validation.clean_code(sms) == "482913"
    assert validation.clean_code("Your Pli code: 482913. It is valid for 10 minutes.") == "482913"
    # Doubt is refused, never guessed: two codes, a typo of seven digits, none at all.
    for doubtful in ("code 482913 ou 112233", "482913 7", "1234567", "code : 48291", "12345678 code"):
        with pytest.raises(ValidationError):
            validation.clean_code(doubtful)


def test_mobile_messages_name_the_problem(db: None) -> None:
    with pytest.raises(ValidationError) as caught:
        validation.normalise_patient_mobile("01 45 67 89 01")
    assert caught.value.code == "not_mobile"
    assert validation.normalise_patient_mobile("06 12 34 56 78") == "+33612345678"


@pytest.mark.parametrize(
    "raw",
    [
        '"x\x0bab:c"@example.org',  # a vertical tab the e-mail package takes for a line break
        '"a\x1cb"@example.org',
        '"a\x7f"@example.org',
        "a@" + "é" * 63 + ".org",  # one label, too long once in IDNA
        "a@localhost",  # no patient's mailbox is on this server or the sender's
        "a@[127.0.0.1]",
        "a@[IPv6:::1]",
    ],
)
def test_an_address_the_link_email_could_not_carry_is_refused(raw: str) -> None:
    # Django's validator takes these; the link's e-mail could not be written to them, or
    # could never reach a patient.
    with pytest.raises(ValidationError) as caught:
        validation.normalise_email(raw)
    assert caught.value.code == "invalid"


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=12))
def test_any_address_taken_can_be_written_into_an_email(local: str) -> None:
    from django.core.mail import EmailMessage

    for raw in (f"{local}@example.org", f'"{local}"@example.org', f"{local}@exämple.fr"):
        try:
            address = validation.normalise_email(raw)
        except ValidationError:
            continue
        EmailMessage(subject="s", body="b", to=[address]).message().as_bytes(linesep="\r\n")
