"""Software that files the letters it imported (archives them, bins them, deletes them from
the trash) has a token that may do that and read, but not send in the practitioner's name."""

from __future__ import annotations

from django.db import connection

from messaging.factories import api_client, personal_mailbox, practitioner
from pli.api.models import ApiToken
from pli.api.services import create_token
from pli.messaging.models import Delivery


def test_a_filing_token_files_and_deletes_but_cannot_send(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    sent = api_client(alice).post(
        "/api/v1/messages", {"sender": a_box.address, "to": [b_box.address], "subject": "Bilan", "body": "."}
    )
    message_id = sent.json()["id"]
    filing = api_client(bob, ["messages:read", "messages:file"])
    assert filing.get(f"/api/v1/messages/{message_id}").status_code == 200
    moved = filing.post(f"/api/v1/messages/{message_id}/move", {"folder": "trash"})
    assert moved.status_code == 200 and moved.json()["copies"][0]["folder"] == "trash"
    assert filing.delete(f"/api/v1/messages/{message_id}").status_code == 204
    assert not Delivery.objects.filter(message_id=message_id, mailbox=b_box).exists()
    refused = filing.post("/api/v1/messages", {"sender": b_box.address, "to": [a_box.address], "subject": "Re"})
    assert refused.status_code == 403
    assert "messages:send" in refused.json()["detail"]


def test_a_sending_token_no_longer_files_unless_it_may(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    sent = api_client(alice).post(
        "/api/v1/messages", {"sender": a_box.address, "to": [b_box.address], "subject": "Bilan", "body": "."}
    )
    message_id = sent.json()["id"]
    sender_only = api_client(bob, ["messages:read", "messages:send"])
    refused = sender_only.post(f"/api/v1/messages/{message_id}/move", {"folder": "archive"})
    assert refused.status_code == 403 and "messages:file" in refused.json()["detail"]
    assert sender_only.delete(f"/api/v1/messages/{message_id}").status_code == 403
    assert Delivery.objects.get(message_id=message_id, mailbox=b_box).folder == "inbox"


def test_the_upgrade_lets_every_token_that_could_file_still_file(transactional_db: None) -> None:
    """Migration api 0005: a token made to send could move and delete before; it keeps it."""
    from django.db.migrations.executor import MigrationExecutor

    doctor = practitioner()
    sender, _ = create_token(doctor, "logiciel", ["messages:read", "messages:send", "shares:read"])
    reader, _ = create_token(doctor, "lecture", ["messages:read"])
    MigrationExecutor(connection).migrate([("api", "0004_idempotency_key")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert ApiToken.objects.get(pk=sender.pk).scopes == [
        "messages:read",
        "messages:send",
        "messages:file",
        "shares:read",
    ]
    assert ApiToken.objects.get(pk=reader.pk).scopes == ["messages:read"]
