"""A full disk: the blob store's file system, or the database's. The answer says so (507,
in French, the form kept as it was typed), nothing is half-saved, and sending works again
once there is room."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from messaging.conftest import assert_nothing_saved
from messaging.factories import api_client, personal_mailbox, practitioner, web_client
from pli.accounts.models import User
from pli.messaging import services
from pli.messaging.models import Message
from pli.testing.faults import FullDisk, database_full_error

NO_ROOM = "Le serveur n\u2019a plus d\u2019espace de stockage\u00a0: rien n\u2019a été enregistré."


def _file(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


@pytest.fixture
def pair(db: None) -> tuple[User, User]:
    return practitioner(), practitioner()


def _payload(sender: User, recipient: User) -> dict[str, Any]:
    return {
        "sender": personal_mailbox(sender).address,
        "to": [personal_mailbox(recipient).address],
        "subject": "Résultats du bilan",
        "body": "Bonjour",
        # Several segments: the disk fills while the upload streams in.
        "attachments": [_file("bilan.pdf", os.urandom(3 * 2**20)), _file("radio.png", os.urandom(1000))],
    }


def test_a_full_disk_is_a_507_saying_so_and_nothing_is_kept(
    pair: tuple[User, User], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = pair
    disk = FullDisk(monkeypatch)
    response = api_client(alice).post("/api/v1/messages", _payload(alice, bob))
    assert response.status_code == 507
    assert response.json()["detail"].startswith(NO_ROOM)
    assert_nothing_saved()
    # One line for the operator, which says what happened; no traceback, no content.
    full = [r for r in caplog.records if "storage full" in r.getMessage()]
    assert len(full) == 1 and full[0].levelname == "ERROR" and full[0].exc_info is None
    assert "Résultats" not in caplog.text and "bilan" not in caplog.text

    disk.free()
    assert api_client(alice).post("/api/v1/messages", _payload(alice, bob)).status_code == 201


def test_the_compose_form_comes_back_filled_in_when_the_disk_is_full(
    pair: tuple[User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = pair
    FullDisk(monkeypatch)
    response = web_client(alice).post("/messages/compose/", _payload(alice, bob))
    assert response.status_code == 507
    page = response.content.decode()
    assert NO_ROOM in page
    assert 'value="Résultats du bilan"' in page and 'id="compose-form"' in page
    assert_nothing_saved()


@pytest.mark.parametrize("via", ["api", "web"])
def test_a_full_database_is_a_507_and_the_uploaded_blobs_go(
    pair: tuple[User, User], monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    alice, bob = pair

    def full(rows: Any) -> None:
        raise database_full_error()

    monkeypatch.setattr(services, "insert_rows", full)
    client = api_client(alice) if via == "api" else web_client(alice)
    response = client.post("/api/v1/messages" if via == "api" else "/messages/compose/", _payload(alice, bob))
    assert response.status_code == 507
    assert NO_ROOM in (response.json()["detail"] if via == "api" else response.content.decode())
    assert_nothing_saved()


def test_any_page_says_so_when_the_database_is_full(pair: tuple[User, User], monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a mailbox records the reading: with no room for the record, the page is a
    507 in French, not the generic error page."""
    alice, _bob = pair
    from pli.audit import services as audit

    browser, api_user, mailbox = web_client(alice), api_client(alice), personal_mailbox(alice)

    def full(*args: Any, **kwargs: Any) -> None:
        raise database_full_error()

    monkeypatch.setattr(audit, "record", full)
    response = browser.get(f"/messages/{mailbox.pk}/inbox/")
    assert response.status_code == 507
    assert NO_ROOM in response.content.decode()
    api = api_user.get(f"/api/v1/mailboxes/{mailbox.pk}/messages")
    assert api.status_code == 507 and api.json()["detail"].startswith(NO_ROOM)
    assert not Message.objects.exists()
