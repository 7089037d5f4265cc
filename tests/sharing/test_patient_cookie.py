"""One browser, several shares: a patient who received documents from two practices opens
both; being let into the second does not let them out of the first."""

from __future__ import annotations

from pli.sharing.models import PatientSession
from sharing.helpers import Patient, make_share


def _same_browser(first: Patient, token: str) -> Patient:
    other = Patient(token)
    other.client = first.client
    return other


def test_two_shares_stay_open_side_by_side_and_leaving_one_keeps_the_other(db: None) -> None:
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

    # Leaving the second ends it alone.
    assert second.client.post(second.url("/leave")).status_code == 200
    assert second.get("/documents")["Location"].endswith("?session=expired")
    assert first.get("/documents").status_code == 200
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
