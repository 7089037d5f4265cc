"""Property tests (hypothesis) for the parsers and validators of messaging."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.utils.html import escape
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.fr import nir

from pli.messaging import search, services
from pli.messaging.forms import AddressListField, ComposeForm
from pli.messaging.models import Delivery
from pli.messaging.templatetags.messaging_tags import linkify
from pli.messaging.uploads import clean_content_type, clean_name
from pli.messaging.views import content_disposition

ANCHOR = re.compile(r'<a href="[^"<>]*" rel="noopener noreferrer nofollow" target="_blank">|</a>')


@given(st.text(max_size=300))
def test_linkify_adds_nothing_but_links(text: str) -> None:
    html = str(linkify(text))
    assert ANCHOR.sub("", html) == str(escape(text))
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith(("http://", "https://"))


@given(st.from_regex(r"https?://[a-z0-9.-]{1,20}(/[a-zA-Z0-9/?=&%._-]{0,30})?", fullmatch=True))
def test_linkify_makes_web_addresses_clickable(url: str) -> None:
    html = str(linkify(f"voir {url} ici"))
    assert f">{escape(url).rstrip('.,;:!?)')}</a>" in html or len(url.rstrip(".,;:!?)")) <= len("https://")


@pytest.mark.parametrize(
    ("text", "href"),
    [
        ("Voir www.ameli.fr.", "https://www.ameli.fr"),
        ("(www.has-sante.fr/reco)", "https://www.has-sante.fr/reco"),
        ("https://www.ameli.fr/x", "https://www.ameli.fr/x"),
    ],
)
def test_linkify_takes_www_addresses_as_mail_programs_do(text: str, href: str) -> None:
    assert re.findall(r'href="([^"]*)"', str(linkify(text))) == [href]


@pytest.mark.parametrize("text", ["dr.www.x", "contact@www.cabinet.fr", "www.", "www.fr"])
def test_linkify_leaves_www_inside_other_words_alone(text: str) -> None:
    assert "<a " not in str(linkify(text))


@given(st.text(max_size=200))
def test_content_disposition_is_one_safe_header_line(name: str) -> None:
    value = content_disposition("attachment", name or "x")
    assert "\r" not in value and "\n" not in value
    ascii_part = value.split("filename*=")[0]
    assert all(32 <= ord(c) < 127 for c in ascii_part)
    assert value.count('"') == 2


@given(st.text(max_size=400))
def test_names_are_bounded(name: str) -> None:
    assert 0 < len(clean_name(name)) <= 255


@given(st.text(max_size=80), st.binary(max_size=20))
def test_content_type_is_well_formed(declared: str, head: bytes) -> None:
    value = clean_content_type(declared, "file.bin", head)
    assert re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*", value)


@given(st.from_regex(r"[12][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{6}", fullmatch=True))
@settings(max_examples=200)
def test_ins_key_is_checked(base: str) -> None:
    key = nir.calc_check_digits(base)
    wrong = f"{(int(key) + 1) % 97 or 97:02d}"
    field_ok = _patient_ins(base + key)
    assert field_ok == ([], base + key)
    errors, _ = _patient_ins(base + wrong)
    assert errors == ["checksum"]


def _patient_ins(value: str) -> tuple[list[str], str]:
    form = ComposeForm.__new__(ComposeForm)
    form.cleaned_data = {"patient_ins": value}
    try:
        return [], form.clean_patient_ins()
    except Exception as exc:
        return [getattr(exc, "code", "")], ""


@given(
    st.lists(st.from_regex(r"[a-z]{1,8}\.[a-z]{1,8}@pli\.localhost", fullmatch=True), max_size=6),
    st.sampled_from([", ", ";", " ", "\n"]),
)
def test_address_lists_split_and_deduplicate(addresses: list[str], separator: str) -> None:
    field = AddressListField(required=False)
    joined = separator.join(a.upper() for a in addresses)
    assert field.to_python([joined]) == list(dict.fromkeys(addresses))
    assert field.to_python(addresses) == list(dict.fromkeys(addresses))


@given(st.text(max_size=120))
def test_search_words_are_folded(text: str) -> None:
    words = search.words(text)
    assert words == search.words(search.fold(text))
    assert all(len(w) >= 2 and w == search.fold(w) for w in words)


@pytest.mark.parametrize(
    ("a", "b"), [("Échographie", "echographie"), ("LEFÈVRE", "lefevre"), ("Çà", "ca"), ("ŒDÈME", "œdeme")]
)
def test_accent_and_case_insensitive(a: str, b: str) -> None:
    assert search.words(a) == search.words(b)


@given(st.text(max_size=60))
def test_any_cursor_is_decoded_or_refused_cleanly(cursor: str) -> None:
    try:
        moment, pk = services.decode_cursor(cursor)
    except services.BadCursor:
        return
    assert isinstance(moment, datetime.datetime) and isinstance(pk, int)


@given(
    st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1)),
    st.integers(min_value=1, max_value=2**62),
)
def test_cursor_round_trip(moment: datetime.datetime, pk: int) -> None:
    aware = moment.replace(tzinfo=datetime.UTC)
    delivery: Any = Delivery(pk=pk, sent_at=aware)
    assert services.decode_cursor(services.encode_cursor(delivery)) == (aware, pk)
