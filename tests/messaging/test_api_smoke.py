from __future__ import annotations

import io

from messaging.factories import api_client, patient_fields, personal_mailbox, practitioner


def test_api_round_trip(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    a, b = api_client(alice), api_client(bob)
    f = io.BytesIO(b"hello world")
    f.name = "note.txt"
    response = a.post(
        "/api/v1/messages",
        {
            "sender": a_box.address,
            "to": [b_box.address],
            "subject": "Bonjour",
            "body": "Texte",
            "attachments": [f],
            **patient_fields(),
        },
    )
    assert response.status_code == 201, response.content
    mid = response.json()["id"]
    boxes = b.get("/api/v1/mailboxes").json()
    assert boxes[0]["unread"] == 1
    page = b.get(f"/api/v1/mailboxes/{b_box.pk}/messages?folder=inbox").json()
    assert page["results"][0]["id"] == mid and page["results"][0]["unread"] is True
    detail = b.get(f"/api/v1/messages/{mid}").json()
    assert detail["subject"] == "Bonjour" and detail["patient"]["family_name"] == "Durand"
    att = detail["attachments"][0]
    content = b.get(f"/api/v1/messages/{mid}/attachments/{att['id']}")
    assert content.status_code == 200
    assert b"".join(content.streaming_content) == b"hello world"
    moved = b.post(f"/api/v1/messages/{mid}/move", {"folder": "archive"}, content_type="application/json")
    assert moved.status_code == 200, moved.content
    assert b.get("/api/v1/mailboxes").json()[0]["unread"] == 0
    sent = a.get(f"/api/v1/messages/{mid}").json()
    assert sent["receipts"][0]["read_at"] is not None
    schema = a.get("/api/v1/schema/")
    assert schema.status_code == 200


def test_the_schema_says_how_the_listing_searches(db: None) -> None:
    """The schema said `q` matched whole words only, so an integrator did not offer the
    search by a patient's first letters that the API does; nor did `sender` say that a
    patient's answer is found by the patient's names."""
    client = api_client(practitioner())
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    parameters = {
        p["name"]: p.get("description", "")
        for p in schema["paths"]["/api/v1/mailboxes/{mailbox_id}/messages"]["get"]["parameters"]
    }
    assert "first three letters" in parameters["q"] and "whole words" not in parameters["q"]
    assert "patient's names" in parameters["sender"]
