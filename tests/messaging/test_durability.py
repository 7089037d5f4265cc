"""Durability: a 201 means committed, and killing the server at random during sends leaves
either whole messages or nothing; the cleanup then leaves no orphan blob.

A real `pli serve` (gunicorn) runs in a subprocess on its own data dir (and, on
PostgreSQL, its own database); clients send messages with attachments concurrently; the
server's process group is SIGKILLed at a random moment, restarted, and the data checked,
three times over."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from messaging.conftest import stored_blobs
from messaging.factories import api_client, personal_mailbox, practitioner
from messaging.live import Server, age_blobs, kill_during, own_database, pli, server_env, setup_users, shell_json
from pli.messaging import services
from pli.messaging.models import Attachment, Message
from pli.testing.faults import LostAfterCommit

CLIENTS = 6
ROUNDS = 3

CHECK = """
import json, os, time
from pli.messaging.models import Attachment, Delivery, Message
from pli.messaging.uploads import blob_store
store = blob_store()
problems = []
for m in Message.objects.all():
    atts = list(Attachment.objects.filter(message=m))
    if len(atts) != m.attachment_count:
        problems.append(f"message {m.pk}: {len(atts)} attachments of {m.attachment_count}")
    if Delivery.objects.filter(message=m, role="sender").count() != 1:
        problems.append(f"message {m.pk}: no sender copy")
    if Delivery.objects.filter(message=m, role="to").count() != 1:
        problems.append(f"message {m.pk}: no recipient copy")
    for a in atts:
        try:
            with store.open(a.blob_id, a.data_encryption_key(), a.blob_aad("content")) as r:
                digest = __import__("hashlib").sha256()
                for piece in r:
                    digest.update(piece)
            if digest.hexdigest() != a.sha256:
                problems.append(f"attachment {a.pk}: wrong content")
        except Exception as exc:
            problems.append(f"attachment {a.pk}: {type(exc).__name__}")
digests = {str(m.pk): [(a.name, a.sha256) for a in Attachment.objects.filter(message=m).order_by("position")]
           for m in Message.objects.all()}
blobs = set(store.iter_ids())
referenced = {a.pk.hex for a in Attachment.objects.all()}
temp = [p.name for p in store.temp_dir.iterdir()] if store.temp_dir.is_dir() else []
print("CHECK" + json.dumps({"problems": problems, "messages": Message.objects.count(), "digests": digests,
      "orphans": sorted(blobs - referenced), "missing": sorted(referenced - blobs), "temp": temp}))
"""


def _check(env: dict[str, str]) -> dict[str, Any]:
    return shell_json(env, CHECK, "CHECK")


@pytest.fixture
def database_url(db: None) -> Iterator[str | None]:
    with own_database() as url:
        yield url


def _sender(
    server: Server,
    users: dict[str, Any],
    index: int,
    stop: threading.Event,
    committed: dict[str, list[tuple[str, str]]],
    lock: threading.Lock,
) -> None:
    rng = random.Random(index)
    me, peer = users[f"user{index % 2}"], users[f"user{(index + 1) % 2}"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {me['token']}"
    while not stop.is_set():
        files = []
        digests = []
        for n in range(rng.randint(1, 3)):
            content = os.urandom(rng.choice([1_000, 50_000, 400_000, 1_500_000]))
            digests.append((f"f{n}.bin", hashlib.sha256(content).hexdigest()))
            files.append(("attachments", (f"f{n}.bin", content, "application/octet-stream")))
        data = {"sender": me["address"], "to": peer["address"], "subject": "Durabilité", "body": "x"}
        try:
            response = session.post(f"{server.url}/api/v1/messages", data=data, files=files, timeout=30)
        except requests.RequestException:
            continue  # the server died mid-request: this send may or may not have committed
        if response.status_code == 201:
            with lock:
                committed[response.json()["id"]] = digests
        elif response.status_code >= 500:
            raise AssertionError(f"server error {response.status_code}: {response.text[:500]}")


def test_killing_the_server_never_leaves_half_a_message(
    database_url: str | None, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = server_env(tmp_path / "data", database_url)
    users = setup_users(env, 2)
    server = Server(env, tmp_path / "server.log")
    request.addfinalizer(server.stop)
    committed: dict[str, list[tuple[str, str]]] = {}
    lock = threading.Lock()
    client = functools.partial(_sender, committed=committed, lock=lock)
    kill_during(server, users, client, rounds=ROUNDS, clients=CLIENTS)

    # Restarted: acknowledged messages read back whole through the API (a sample: the API
    # limits each token's rate), and all of them are checked in the database below.
    server.start()
    sample = random.sample(sorted(committed), min(25, len(committed)))
    for message_id in sample:
        digests = committed[message_id]
        found, reader = None, users["user0"]
        for user in (users["user0"], users["user1"]):
            response = requests.get(
                f"{server.url}/api/v1/messages/{message_id}",
                headers={"Authorization": f"Bearer {user['token']}"},
                timeout=30,
            )
            if response.status_code == 200:
                found, reader = response.json(), user
                break
        assert found is not None, f"acknowledged message {message_id} is gone"
        assert [(a["name"], a["sha256"]) for a in found["attachments"]] == digests
        for attachment in found["attachments"]:
            download = requests.get(
                f"{server.url}/api/v1/messages/{message_id}/attachments/{attachment['id']}",
                headers={"Authorization": f"Bearer {reader['token']}"},
                timeout=30,
            )
            assert download.status_code == 200
            assert hashlib.sha256(download.content).hexdigest() == attachment["sha256"]
    server.stop()

    # No message without all its attachments and copies; no attachment without its blob.
    state = _check(env)
    assert committed, "no send was acknowledged: the test proved nothing"
    assert state["problems"] == []
    assert state["missing"] == []
    assert state["messages"] >= len(committed)
    for message_id, digests in committed.items():
        assert [tuple(d) for d in state["digests"][message_id]] == digests, message_id

    # Sends cut short leave orphans (and partial temporary files); the cleanup, once they
    # are old enough, removes every one and nothing else.
    age_blobs(env, "pli.messaging.uploads.blob_store")
    out = pli(env, "messaging", "cleanup-blobs")
    assert out.startswith("removed")
    after = _check(env)
    assert after["orphans"] == [] and after["temp"] == [] and after["missing"] == []
    assert after["problems"] == [] and after["messages"] == state["messages"]
    print(
        f"durability: {len(committed)} acknowledged, {state['messages']} committed, "
        f"{len(state['orphans'])} orphans and {len(state['temp'])} partial files cleaned"
    )


def test_a_send_whose_commit_outcome_is_unknown_keeps_its_blobs(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database committed the message, then the connection broke before it said so (a
    PostgreSQL restart, a network cut). The request fails, yet the message exists: its
    blobs must stay, for the orphan clean-up to judge once the database answers again,
    never be discarded with the failed request's uploads."""
    alice, bob = practitioner(), practitioner()
    fault = LostAfterCommit(monkeypatch, services, "insert_rows")
    client = api_client(alice)
    upload = __import__("io").BytesIO(os.urandom(5000))
    upload.name = "bilan.pdf"
    fields = {"sender": personal_mailbox(alice).address, "to": [personal_mailbox(bob).address], "subject": "Bilan"}
    response = client.post("/api/v1/messages", {**fields, "attachments": [upload]})
    # PostgreSQL's lost connection is answered 503 (the database away, not a bug of Pli).
    assert fault.fired and response.status_code == (503 if connection.vendor == "postgresql" else 500)
    attachment = Attachment.objects.get()  # committed, though the request failed
    assert Message.objects.count() == 1
    assert stored_blobs() == [attachment.blob_id]
    assert services.cleanup_orphan_blobs(older_than=0).orphans == 0
    assert stored_blobs() == [attachment.blob_id]
