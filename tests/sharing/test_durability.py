"""Durability of patient shares: a 201 means the share, its documents and the notification
carrying the link (and its delivery job) are committed; killing the server at random
during share creations leaves whole shares or nothing, and the clean-up then leaves no
orphan document blob.

As tests/messaging/test_durability.py for sends: a real `pli serve` in a subprocess on its
own data dir (and, on PostgreSQL, its own database), SIGKILLed mid-requests three times."""

from __future__ import annotations

import functools
import random
import string
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from messaging.live import Server, age_blobs, kill_during, own_database, pli, server_env, setup_users, shell_json
from sharing.helpers import pdf_bytes

CLIENTS = 4
ROUNDS = 3

CHECK = """
import json
from django_tasks_db.models import DBTaskResult
from pli.sharing.models import PatientShare, ShareDocument, ShareNotification
from pli.sharing.uploads import share_blob_store
store = share_blob_store()
problems = []
jobs = {str(job.args_kwargs["args"][0]) for job in DBTaskResult.objects.filter(
    task_path="pli.sharing.tasks.deliver_notification")}
sizes = {}
for share in PatientShare.objects.all():
    documents = list(ShareDocument.objects.filter(share=share))
    if len(documents) != share.document_count:
        problems.append(f"share {share.pk}: {len(documents)} documents of {share.document_count}")
    links = list(ShareNotification.objects.filter(share=share, kind="link"))
    if len(links) != 1:
        problems.append(f"share {share.pk}: {len(links)} link notifications")
    for link in links:
        if str(link.pk) not in jobs:
            problems.append(f"share {share.pk}: its link's delivery is not queued")
    for document in documents:
        try:
            with store.open(document.blob_id, document.data_encryption_key(), document.blob_aad("content")) as r:
                size = sum(len(piece) for piece in r)
            if size != document.size:
                problems.append(f"document {document.pk}: {size} bytes of {document.size}")
        except Exception as exc:
            problems.append(f"document {document.pk}: {type(exc).__name__}")
    sizes[str(share.pk)] = [d.size for d in sorted(documents, key=lambda d: d.position)]
blobs = set(store.iter_ids())
referenced = {d.pk.hex for d in ShareDocument.objects.all()}
temp = [p.name for p in store.temp_dir.iterdir()] if store.temp_dir.is_dir() else []
print("CHECK" + json.dumps({"problems": problems, "shares": PatientShare.objects.count(), "sizes": sizes,
      "orphans": sorted(blobs - referenced), "missing": sorted(referenced - blobs), "temp": temp}))
"""


CLEANUP = """
from django.utils import timezone
from pli.sharing import services
print("REMOVED", services._remove_orphan_blobs(timezone.now()))
"""


def _check(env: dict[str, str]) -> dict[str, Any]:
    return shell_json(env, CHECK, "CHECK")


@pytest.fixture
def database_url(db: None) -> Iterator[str | None]:
    with own_database() as url:
        yield url


def _creator(
    server: Server,
    users: dict[str, Any],
    index: int,
    stop: threading.Event,
    committed: dict[str, list[int]],
    lock: threading.Lock,
) -> None:
    rng = random.Random(index)
    me = users[f"user{index % 2}"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {me['token']}"
    while not stop.is_set():
        documents, sizes = [], []
        for n in range(rng.randint(1, 3)):
            marker = "".join(rng.choices(string.ascii_letters, k=rng.choice([100, 50_000, 400_000, 1_500_000])))
            content = pdf_bytes(marker)
            sizes.append(len(content))
            documents.append(("documents", (f"bilan{n}.pdf", content, "application/pdf")))
        data = {
            "patient_given_name": "Élodie",
            "patient_family_name": "Durand",
            "patient_birth_date": "1984-02-15",
            "patient_email": "elodie.durand@example.fr",
        }
        try:
            response = session.post(f"{server.url}/api/v1/shares", data=data, files=documents, timeout=30)
        except requests.RequestException:
            continue  # the server died mid-request: this share may or may not have committed
        if response.status_code == 201:
            with lock:
                committed[response.json()["id"]] = sizes
        elif response.status_code == 429:
            time.sleep(0.5)
        elif response.status_code >= 500:
            raise AssertionError(f"server error {response.status_code}: {response.text[:500]}")


def test_killing_the_server_never_leaves_half_a_share(
    database_url: str | None, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = server_env(tmp_path / "data", database_url)
    users = setup_users(env, 2)
    server = Server(env, tmp_path / "server.log")
    request.addfinalizer(server.stop)
    committed: dict[str, list[int]] = {}
    lock = threading.Lock()
    client = functools.partial(_creator, committed=committed, lock=lock)
    kill_during(server, users, client, rounds=ROUNDS, clients=CLIENTS)

    # Every acknowledged share is whole: documents readable, the link's notification and
    # its delivery job queued with it; no document row without its blob.
    state = _check(env)
    assert committed, "no share was acknowledged: the test proved nothing"
    assert state["problems"] == []
    assert state["missing"] == []
    assert state["shares"] >= len(committed)
    for share_id, sizes in committed.items():
        assert state["sizes"][share_id] == sizes, share_id

    # Creations cut short leave orphan blobs (and partial temporary files); the clean-up,
    # once they are old enough, removes every one and nothing else.
    age_blobs(env, "pli.sharing.uploads.share_blob_store")
    pli(env, "shell", "-c", CLEANUP)
    after = _check(env)
    assert after["orphans"] == [] and after["temp"] == [] and after["missing"] == []
    assert after["problems"] == [] and after["shares"] == state["shares"]
    print(
        f"share durability: {len(committed)} acknowledged, {state['shares']} committed, "
        f"{len(state['orphans'])} orphans and {len(state['temp'])} partial files cleaned"
    )
