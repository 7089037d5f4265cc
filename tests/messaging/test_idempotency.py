"""``Idempotency-Key`` on POST /api/v1/messages: a retry answers the first send again and
creates nothing; another request under the same key, a malformed key, a key in flight are
refused; keys are per user and expire."""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from messaging.conftest import stored_blobs, temp_files
from messaging.factories import api_client, patient_fields, personal_mailbox, practitioner
from pli.api import idempotency
from pli.api.models import IdempotencyKey
from pli.audit.models import AuditEvent
from pli.messaging.models import Attachment, Delivery, Message

KEY = "8e03978e-40d5-43e8-bc93-6894a57f9324"


def _file(content: bytes = b"compte rendu", name: str = "cr.txt") -> io.BytesIO:
    f = io.BytesIO(content)
    f.name = name
    return f


def _send(client: Client, sender: Any, to: Any, key: str | None = KEY, **overrides: Any) -> Any:
    data: dict[str, Any] = {
        "sender": sender.address,
        "to": [to.address],
        "subject": "Résultats",
        "body": "Bonjour",
        "attachments": [_file()],
        **patient_fields(),
    }
    data.update(overrides)
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post("/api/v1/messages", data, **headers)


def _counts() -> tuple[int, int, int, int]:
    return Message.objects.count(), Delivery.objects.count(), Attachment.objects.count(), len(stored_blobs())


@pytest.fixture
def pair(db: None) -> tuple[Any, Any, Any, Client]:
    alice, bob = practitioner(), practitioner()
    return alice, personal_mailbox(alice), personal_mailbox(bob), api_client(alice)


def test_a_retry_answers_the_first_send_and_creates_nothing(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, a_box, b_box, client = pair
    first = _send(client, a_box, b_box)
    assert first.status_code == 201, first.content
    assert _counts() == (1, 2, 1, 1)
    again = _send(client, a_box, b_box)
    assert again.status_code == 201, again.content
    assert again.json() == first.json()
    # The retry's upload was encrypted to a blob as it arrived, then discarded.
    assert _counts() == (1, 2, 1, 1)
    assert temp_files() == []
    assert IdempotencyKey.objects.count() == 1
    actions = AuditEvent.objects.filter(action__in=["message.send", "api.idempotent_replay"])
    assert sorted(actions.values_list("action", flat=True)) == ["api.idempotent_replay", "message.send"]


def test_the_key_and_the_request_are_stored_as_keyed_hashes(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, a_box, b_box, client = pair
    assert _send(client, a_box, b_box, key="Durand-1984-02-15").status_code == 201
    row = IdempotencyKey.objects.get()
    assert len(row.digest) == 64 and len(row.fingerprint) == 64
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM pli_api_idempotency_key")
        dump = repr(cursor.fetchall())
    # The whole date: a bare "1984" can occur in a hex digest or a timestamp's microseconds.
    assert "Durand" not in dump and "1984-02-15" not in dump


@pytest.mark.parametrize(
    "change",
    [
        {"body": "Bonjour !"},
        {"attachments": [_file(b"autre contenu")]},
        {"attachments": [_file(name="autre.txt")]},
        {"attachments": []},
    ],
)
def test_the_same_key_for_another_request_is_refused(pair: tuple[Any, Any, Any, Client], change: Any) -> None:
    _alice, a_box, b_box, client = pair
    assert _send(client, a_box, b_box).status_code == 201
    response = _send(client, a_box, b_box, **change)
    assert response.status_code == 422, response.content
    assert "Idempotency-Key" in response.json()["detail"]
    assert _counts() == (1, 2, 1, 1)


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "a\tb"])
def test_a_malformed_key_is_refused_in_french(pair: tuple[Any, Any, Any, Client], key: str) -> None:
    _alice, a_box, b_box, client = pair
    response = _send(client, a_box, b_box, key=key)
    assert response.status_code == 400
    assert response.json() == {
        "Idempotency-Key": ["L’en-tête Idempotency-Key doit compter de 1 à 255 caractères ASCII imprimables."]  # noqa: RUF001
    }
    assert _counts() == (0, 0, 0, 0)
    assert not IdempotencyKey.objects.exists()


def test_the_longest_key_and_spaces_are_taken(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, a_box, b_box, client = pair
    assert _send(client, a_box, b_box, key="~" * 255).status_code == 201
    assert _send(client, a_box, b_box, key="a b").status_code == 201
    assert _counts()[0] == 2


def test_keys_are_per_user(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, a_box, b_box, client = pair
    carol = practitioner()
    c_box = personal_mailbox(carol)
    first = _send(client, a_box, b_box)
    other = _send(api_client(carol), c_box, b_box)
    assert first.status_code == other.status_code == 201
    assert first.json()["id"] != other.json()["id"]
    # Another token of the same user shares the key: it is the user's.
    assert _send(api_client(_alice), a_box, b_box).json() == first.json()
    assert Message.objects.count() == 2


def test_a_refused_first_request_records_nothing(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, a_box, b_box, client = pair
    refused = _send(client, a_box, b_box, patient_sex="Z")
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists()
    assert stored_blobs() == []
    corrected = _send(client, a_box, b_box)
    assert corrected.status_code == 201, corrected.content
    assert _counts() == (1, 2, 1, 1)


def test_a_key_in_flight_is_a_conflict(pair: tuple[Any, Any, Any, Client]) -> None:
    alice, a_box, b_box, client = pair
    held = idempotency.claim(alice, idempotency.MESSAGES, KEY)
    response = _send(client, a_box, b_box)
    assert response.status_code == 409
    assert "en cours" in response.json()["detail"]
    # Told apart from a result gone (below) by a program, and when to try again.
    assert response.json()["code"] == "in_progress" and response["Retry-After"] == "1"
    assert _counts() == (0, 0, 0, 0)
    # Left by a worker that died: taken over once the lease has passed.
    IdempotencyKey.objects.filter(pk=held.row.pk).update(
        created_at=held.row.created_at - idempotency.IN_FLIGHT_LEASE - datetime.timedelta(seconds=1)
    )
    assert _send(client, a_box, b_box).status_code == 201
    assert IdempotencyKey.objects.count() == 1


def test_a_claim_taken_over_meanwhile_rolls_the_send_back(
    pair: tuple[Any, Any, Any, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    _alice, a_box, b_box, client = pair
    complete = idempotency.complete

    def taken_over(held: idempotency.Claim, object_id: Any, *, request_fingerprint: str) -> None:
        IdempotencyKey.objects.filter(pk=held.row.pk).delete()
        complete(held, object_id, request_fingerprint=request_fingerprint)

    monkeypatch.setattr(idempotency, "complete", taken_over)
    response = _send(client, a_box, b_box)
    assert response.status_code == 409 and response.json()["code"] == "in_progress"
    assert _counts() == (0, 0, 0, 0)
    assert AuditEvent.objects.filter(action="message.send").count() == 0


def test_a_key_expires_after_24_hours(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, a_box, b_box, client = pair
    first = _send(client, a_box, b_box)
    IdempotencyKey.objects.update(created_at=IdempotencyKey.objects.get().created_at - idempotency.KEEP)
    second = _send(client, a_box, b_box)
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert IdempotencyKey.objects.count() == 1


def test_a_deleted_result_is_not_replayed(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, a_box, b_box, client = pair
    mid = _send(client, a_box, b_box).json()["id"]
    assert client.post(f"/api/v1/messages/{mid}/move", {"folder": "trash"}).status_code == 200
    assert client.delete(f"/api/v1/messages/{mid}").status_code == 204
    response = _send(client, a_box, b_box)
    assert response.status_code == 409
    assert response.json()["code"] == "result_gone" and "Retry-After" not in response
    assert Message.objects.filter(pk=mid).exists()  # the recipient's copy keeps it
    assert Message.objects.count() == 1


def test_without_a_key_a_retry_sends_again(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, a_box, b_box, client = pair
    assert _send(client, a_box, b_box, key=None).status_code == 201
    assert _send(client, a_box, b_box, key=None).status_code == 201
    assert Message.objects.count() == 2
    assert not IdempotencyKey.objects.exists()


def test_the_schema_documents_the_header(pair: tuple[Any, Any, Any, Client]) -> None:
    _alice, _a, _b, client = pair
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/v1/messages", "/api/v1/shares"):
        operation = schema["paths"][path]["post"]
        header = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in header] == ["Idempotency-Key"]
        assert {"409", "422"} <= set(operation["responses"])
