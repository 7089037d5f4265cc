"""One browser, several shares: a patient who received documents from two practices opens
both; being let into the second does not let them out of the first, and « Quitter » closes all."""

from __future__ import annotations

import re

from pli.sharing.models import PatientSession
from sharing.helpers import Patient, make_share


def _same_browser(first: Patient, token: str) -> Patient:
    other = Patient(token)
    other.client = first.client
    return other


def test_two_shares_stay_open_side_by_side_and_leaving_closes_both(db: None) -> None:
    _first, first_token = make_share()
    _second, second_token = make_share()
    first = Patient(first_token)
    assert first.sign_in().status_code == 200
    second = _same_browser(first, second_token)
    assert second.sign_in().status_code == 200

    # Back to the first: still open, no new birth date and code.
    assert first.get("/documents").status_code == 200
    assert first.get()["Location"].endswith("/documents")
    assert second.get("/documents").status_code == 200

    # « Quitter » closes both: on a shared computer nothing may stay open behind.
    other_browser = Patient(first_token)
    assert other_browser.sign_in().status_code == 200
    assert second.client.post(second.url("/leave")).status_code == 200
    assert second.get("/documents")["Location"].endswith("?session=expired")
    assert first.get("/documents")["Location"].endswith("?session=expired")
    assert "pli_patient" not in second.client.cookies or not second.client.cookies["pli_patient"].value
    # Another browser's session on the same share is not this browser's to end.
    assert other_browser.get("/documents").status_code == 200
    assert PatientSession.objects.filter(ended_at__isnull=True, stage=PatientSession.Stage.OPEN).count() == 1


def test_the_cookie_keeps_the_latest_shares_only(db: None) -> None:
    tokens = [make_share()[1] for _ in range(5)]
    browser = Patient(tokens[0])
    assert browser.sign_in().status_code == 200
    for token in tokens[1:]:
        assert _same_browser(browser, token).sign_in().status_code == 200
    keys = browser.client.cookies["pli_patient"].value.split(".")
    assert len(keys) == 4 and len(set(keys)) == 4
    # The oldest share asks again who the patient is; the four latest are open.
    assert browser.get("/documents")["Location"].endswith("?session=expired")
    for token in tokens[1:]:
        assert _same_browser(browser, token).get("/documents").status_code == 200


def test_what_the_cookie_holds_besides_session_keys_is_dropped(db: None) -> None:
    """Anything in the cookie that is not a key Pli issued (a non-Latin-1 character, which a
    server cannot put back in a header, other separators, oversized pieces) is not sent
    back: the patient still gets in, and the cookie holds their key alone."""
    _share, token = make_share()
    patient = Patient(token)
    junk = ["\u20ac" * 3, "a b,c", "x" * 3000, "abc"]
    # As a WSGI server hands it over: the header's bytes (UTF-8 here) read as Latin-1.
    patient.client.cookies["pli_patient"] = ".".join(junk).encode().decode("latin-1")
    sent = patient.birth_date()
    assert sent.status_code == 303
    value = sent.cookies["pli_patient"].value
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value), value[:80]
    assert patient.sign_in().status_code == 200
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", patient.client.cookies["pli_patient"].value)


def test_pieces_not_shaped_like_a_key_take_no_place_of_a_real_one(db: None) -> None:
    _share, token = make_share()
    patient = Patient(token)
    assert patient.sign_in().status_code == 200
    key = patient.client.cookies["pli_patient"].value
    pieces = ["short", "x" * 200, "\u00e9t\u00e9", "!!", key]
    patient.client.cookies["pli_patient"] = ".".join(pieces).encode().decode("latin-1")
    assert patient.get("/documents").status_code == 200
