"""POST /api/v1/mailboxes/{id}/messages/search: the listing's search with its criteria in the
body, so that a patient's name or INS never travels in a URL (proxies log URLs)."""

from __future__ import annotations

import pytest

from messaging.factories import api_client, patient_fields, personal_mailbox, practitioner, valid_ins
from pli.accounts.models import User
from pli.audit.models import AuditEvent


@pytest.fixture
def pair(db: None) -> tuple[User, User]:
    return practitioner(), practitioner()


def _send(sender: User, recipient: User, subject: str, **fields: str) -> str:
    response = api_client(sender).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(sender).address,
            "to": [personal_mailbox(recipient).address],
            "subject": subject,
            **fields,
        },
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def test_a_search_in_the_body_finds_what_the_listing_finds(pair: tuple[User, User]) -> None:
    alice, bob = pair
    first = _send(alice, bob, "Bilan sanguin", **patient_fields())
    second = _send(alice, bob, "Compte rendu", **patient_fields())
    _send(alice, bob, "Autre patient", **patient_fields(patient_family_name="Martin", patient_ins=""))
    box = personal_mailbox(bob).pk
    client = api_client(bob)
    url = f"/api/v1/mailboxes/{box}/messages/search"

    page = client.post(url, {"q": "Durand", "limit": 1}, content_type="application/json")
    assert page.status_code == 200, page.content
    body = page.json()
    assert [m["id"] for m in body["results"]] == [second] and body["next_cursor"]
    assert set(body) == {"next_cursor", "results"}
    following = client.post(
        url, {"q": "Durand", "limit": 1, "cursor": body["next_cursor"]}, content_type="application/json"
    ).json()
    assert [m["id"] for m in following["results"]] == [first] and following["next_cursor"] is None
    # The same as the listing's query, by INS, as a form too; JSON's true and false as the query's words.
    listing = client.get(f"/api/v1/mailboxes/{box}/messages?q={valid_ins()}&unread=true").json()["results"]
    as_form = client.post(url, f"q={valid_ins()}&unread=true", content_type="application/x-www-form-urlencoded").json()[
        "results"
    ]
    as_json = client.post(url, {"q": valid_ins(), "unread": True}, content_type="application/json").json()["results"]
    assert [m["id"] for m in as_form] == [m["id"] for m in as_json] == [m["id"] for m in listing] == [second, first]
    # A search is a read of the mailbox, recorded as the listing's.
    assert AuditEvent.objects.filter(action="mailbox.list", target_id=str(box)).count() >= 4


def test_a_searchs_criteria_are_checked_as_the_listings(pair: tuple[User, User]) -> None:
    alice, bob = pair
    _send(alice, bob, "Bilan")
    client = api_client(bob)
    url = f"/api/v1/mailboxes/{personal_mailbox(bob).pk}/messages/search"

    def refused(data: object, content_type: str = "application/json") -> dict[str, object]:
        response = client.post(url, data, content_type=content_type)
        assert response.status_code == 400, response.content
        return dict(response.json())

    assert set(refused({"patient": "Durand"})) == {"patient"}
    assert set(refused({"folder": "nowhere", "date_to": "31/12/2026"})) == {"folder", "date_to"}
    assert set(refused({"q": ["Durand"]})) == {"q"}
    assert set(refused(["Durand"])) == {"detail"}
    assert set(refused("q=a&q=b", "application/x-www-form-urlencoded")) == {"q"}
    assert set(refused({"cursor": "pas-un-curseur"})) == {"cursor"}
    # Another's mailbox: not found, as a missing one.
    elsewhere = api_client(alice).post(url, {"q": "Bilan"}, content_type="application/json")
    assert elsewhere.status_code == 404
