"""A token revoked (or its user deactivated) while a long upload streams in creates nothing:
the token is read again, locked, in the transaction that would commit the message or share."""

from __future__ import annotations

import io
from functools import partial
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from interleave import while_committing
from messaging.conftest import stored_blobs
from messaging.factories import personal_mailbox, practitioner
from pli.accounts.models import User
from pli.api import authentication
from pli.api import services as api_services
from pli.api.models import ApiToken
from pli.messaging import services as messaging_services
from pli.messaging.models import Message
from pli.sharing import services as sharing_services
from pli.sharing.models import PatientShare
from sharing.helpers import pdf_bytes


def _client(user: User) -> tuple[Client, int]:
    token, raw = api_services.create_token(user, "test", None)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}"), token.pk


def _file(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


@pytest.fixture
def long_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every request counts as long: the token is read again at commit.
    monkeypatch.setattr(authentication, "RECHECK_AFTER_SECONDS", -1.0)


def _meanwhile(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, act: Any) -> None:
    """``act`` commits (as another request would) once the upload is in, before the service
    opens its transaction."""
    original = getattr(module, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        act()
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.parametrize("how", ["revoked", "deactivated"])
def test_a_message_whose_token_is_revoked_during_the_upload_is_not_sent(
    db: None, long_requests: None, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    alice, bob = practitioner(), practitioner()
    client, token_id = _client(alice)

    def revoke() -> None:
        if how == "revoked":
            api_services.revoke_token(alice, token_id)
        else:
            User.objects.filter(pk=alice.pk).update(is_active=False)

    _meanwhile(monkeypatch, messaging_services, "send_message", revoke)
    response = client.post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(alice).address,
            "to": [personal_mailbox(bob).address],
            "subject": "Compte rendu",
            "body": "Texte",
            "attachments": [_file("cr.pdf", b"%PDF-1.4 compte rendu")],
        },
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert response.status_code == 401, response.content
    assert "révoqué" in response.json()["detail"]
    assert not Message.objects.exists() and stored_blobs() == []


def _share_fields() -> dict[str, Any]:
    return {
        "patient_given_name": "Élodie",
        "patient_family_name": "Durand",
        "patient_birth_date": "1984-02-15",
        "patient_mobile": "+33612345678",
        "documents": [SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf")],
    }


def test_a_share_whose_token_is_revoked_during_the_upload_is_not_made(
    db: None, long_requests: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = practitioner()
    client, token_id = _client(alice)
    _meanwhile(monkeypatch, sharing_services, "create_share", lambda: api_services.revoke_token(alice, token_id))
    response = client.post("/api/v1/shares", _share_fields())
    assert response.status_code == 401
    assert not PatientShare.objects.exists()


def test_a_token_still_active_sends_whatever_the_time_taken(db: None, long_requests: None) -> None:
    alice, bob = practitioner(), practitioner()
    client, _token_id = _client(alice)
    response = client.post(
        "/api/v1/messages",
        {"sender": personal_mailbox(alice).address, "to": [personal_mailbox(bob).address], "subject": "S", "body": "B"},
    )
    assert response.status_code == 201


@pytest.mark.parametrize("kind", ["message", "share"])
def test_a_token_revoked_as_the_upload_commits_is_no_error(
    transactional_db: None, long_requests: None, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """An integrator's token was revoked (or the password changed) just as a message or a
    share was committing: on PostgreSQL the two transactions waited for each other (the
    creation held the audit trail's head and wanted the token's row, the revocation the
    reverse), and one of them failed with a 500."""
    alice, bob = practitioner(), practitioner()
    client, token_id = _client(alice)
    client.raise_request_exception = False
    action = "message.send" if kind == "message" else "share.created"
    join = while_committing(
        monkeypatch, action, partial(api_services.revoke_token, alice, token_id), "api.token_revoked"
    )
    if kind == "message":
        response = client.post(
            "/api/v1/messages",
            {"sender": personal_mailbox(alice).address, "to": [personal_mailbox(bob).address], "subject": "S"},
        )
    else:
        response = client.post("/api/v1/shares", _share_fields())
    assert join() == []
    # Whichever went first: either made with the token still valid, or refused, never a 500.
    assert response.status_code in (201, 401), response.content
    assert ApiToken.objects.get(pk=token_id).revoked_at is not None
    made = Message.objects.exists() if kind == "message" else PatientShare.objects.exists()
    assert made == (response.status_code == 201)
