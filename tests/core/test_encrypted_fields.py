from __future__ import annotations

import base64
import datetime
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from pli.audit.models import AuditEvent
from pli.core import keys
from pli.core.encryption import ContentShredded
from pli.core.models import DataKey
from pli.crypto import DecryptionError, UnknownKeyVersion, WrappingRefused
from pli.testing.models import Specimen

MARKER = "MARKER-7f3a9c-health"


def _raw(table: str, column: str, pk: object) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk.hex if connection.vendor == "sqlite" else pk])  # noqa: S608
        return bytes(cursor.fetchone()[0])


def test_round_trip_of_every_kind(db: None) -> None:
    born = datetime.date(1980, 2, 29)
    s = Specimen.objects.create(note=f"Dr {MARKER}", born=born, payload=b"\x00\xffbytes", meta={"n": MARKER})
    again = Specimen.objects.get(pk=s.pk)
    assert again.note == f"Dr {MARKER}"
    assert again.born == born
    assert again.payload == b"\x00\xffbytes"
    assert again.meta == {"n": MARKER}
    assert MARKER not in repr(again)


def test_nothing_readable_in_the_database(db: None) -> None:
    s = Specimen.objects.create(note=MARKER, meta={"k": MARKER})
    for column in ("note", "meta"):
        raw = _raw("pli_testing_specimen", column, s.pk)
        assert MARKER.encode() not in raw
        assert raw[0] == 0x01  # versioned format
    dump = "\n".join(connection.connection.iterdump()) if connection.vendor == "sqlite" else ""
    assert MARKER not in dump


def test_each_object_has_its_own_data_key(db: None) -> None:
    a = Specimen.objects.create(note="same")
    b = Specimen.objects.create(note="same")
    assert a.data_key_id != b.data_key_id
    assert _raw("pli_testing_specimen", "note", a.pk) != _raw("pli_testing_specimen", "note", b.pk)


def test_ciphertext_copied_to_another_row_or_field_fails(db: None) -> None:
    a = Specimen.objects.create(note="alpha", meta="beta")
    b = Specimen.objects.create(note="gamma")
    stolen = _raw("pli_testing_specimen", "note", a.pk)
    # Another row, even with the right data key copied along, fails: the row id is bound.
    Specimen.objects.filter(pk=b.pk).update(note=stolen, data_key=a.data_key_id)
    with pytest.raises(DecryptionError):
        _ = Specimen.objects.get(pk=b.pk).note
    # Another field of the same row fails: the field name is bound.
    Specimen.objects.filter(pk=a.pk).update(meta=stolen)
    with pytest.raises(DecryptionError):
        _ = Specimen.objects.get(pk=a.pk).meta


def test_a_wrapped_key_opens_only_as_the_key_row_it_was_made_for(db: None) -> None:
    """Copied over another object's key row, a wrapped key does not open: it is bound to
    its row's id, not only to the master key."""
    a = Specimen.objects.create(note="alpha")
    b = Specimen.objects.create(note="beta")
    wrapped = DataKey.objects.get(pk=a.data_key_id).wrapped
    DataKey.objects.filter(pk=b.data_key_id).update(wrapped=wrapped)
    assert DataKey.objects.get(pk=a.data_key_id).unwrap()
    with pytest.raises(DecryptionError):
        DataKey.objects.get(pk=b.data_key_id).unwrap()


def test_tampered_ciphertext_is_refused(db: None) -> None:
    s = Specimen.objects.create(note="intact")
    raw = bytearray(_raw("pli_testing_specimen", "note", s.pk))
    raw[-1] ^= 1
    Specimen.objects.filter(pk=s.pk).update(note=bytes(raw))
    with pytest.raises(DecryptionError):
        _ = Specimen.objects.get(pk=s.pk).note


def test_filtering_on_encrypted_columns_is_refused(db: None) -> None:
    with pytest.raises(TypeError, match="cannot be filtered"):
        Specimen.objects.filter(note="x").exists()
    assert Specimen.objects.filter(note__isnull=True).count() == 0


def test_crypto_shredding(db: None) -> None:
    s = Specimen.objects.create(note=MARKER)
    key_id = s.data_key_id
    s.shred()
    assert not DataKey.objects.filter(pk=key_id).exists()
    again = Specimen.objects.get(pk=s.pk)
    assert again.note is None
    assert again.data_key_id is None


def test_shredding_deletes_the_key_in_one_statement(db: None) -> None:
    s = Specimen.objects.create(note=MARKER)
    key_id = s.data_key_id
    Specimen.objects.filter(pk=s.pk).update(data_key=None, note=None)
    with CaptureQueriesContext(connection) as queries:
        DataKey.forget([key_id])
    # Not an UPDATE of every table that may hold a key, as Django's collector does.
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["DELETE"]
    assert not DataKey.objects.filter(pk=key_id).exists()


def test_forgetting_a_key_still_in_use_is_refused_at_commit(transactional_db: None) -> None:
    # Without Django's collector, nothing sets the reference to NULL: the foreign key does
    # refuse the whole transaction, and the key and its content stay.
    s = Specimen.objects.create(note=MARKER)
    with pytest.raises(IntegrityError), transaction.atomic():
        DataKey.forget([s.data_key_id])
    assert DataKey.objects.filter(pk=s.data_key_id).exists()
    assert Specimen.objects.get(pk=s.pk).note == MARKER


def test_deleting_the_data_key_alone_makes_content_unrecoverable(db: None) -> None:
    s = Specimen.objects.create(note=MARKER)
    DataKey.objects.filter(pk=s.data_key_id).delete()
    again = Specimen.objects.get(pk=s.pk)
    with pytest.raises(ContentShredded):
        _ = again.note


def test_rotation_rewrap_and_retire(db: None, capsys: pytest.CaptureFixture[str]) -> None:
    old = Specimen.objects.create(note="before rotation")
    assert DataKey.objects.get(pk=old.data_key_id).key_version == 1
    call_command("keys", "rotate")
    new = Specimen.objects.create(note="after rotation")
    assert DataKey.objects.get(pk=new.data_key_id).key_version == 2
    # Old objects still read under the old version.
    assert Specimen.objects.get(pk=old.pk).note == "before rotation"
    ciphertext_before = _raw("pli_testing_specimen", "note", old.pk)
    call_command("keys", "rewrap")
    assert DataKey.objects.get(pk=old.data_key_id).key_version == 2
    # Re-wrapping touches only the data key, never the data.
    assert _raw("pli_testing_specimen", "note", old.pk) == ciphertext_before
    call_command("keys", "retire", "1")
    keys.reset()
    assert Specimen.objects.get(pk=old.pk).note == "before rotation"
    call_command("keys", "status")
    out = capsys.readouterr().out
    assert "current version: 2" in out
    assert "v1:" not in out
    # Each operation is in the audit trail, by the system, with the version it concerned.
    recorded = AuditEvent.objects.filter(action__startswith="keys.").order_by("seq")
    assert [(e.action, e.actor_type, e.details) for e in recorded] == [
        ("keys.rotated", "system", {"version": 2}),
        ("keys.rewrapped", "system", {"version": 2, "data_keys": 1}),
        ("keys.retired", "system", {"version": 1}),
    ]


def test_retired_key_cannot_decrypt(db: None) -> None:
    old = Specimen.objects.create(note="before")
    call_command("keys", "rotate")
    # Retiring without re-wrapping is refused …
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="still use v1"):
        call_command("keys", "retire", "1")
    # … and if the key file disappears anyway, reading fails clearly instead of guessing.
    os.remove(Path(settings.PLI_KEYS_DIR) / "master-v1.key")
    keys.reset()
    with pytest.raises(UnknownKeyVersion):
        _ = Specimen.objects.get(pk=old.pk).note


def test_master_key_file_is_private(db: None) -> None:
    Specimen.objects.create(note="x")
    key_file = Path(settings.PLI_KEYS_DIR) / "master-v1.key"
    assert key_file.stat().st_mode & 0o077 == 0


def test_purpose_key_is_stable_and_survives_rotation(db: None) -> None:
    first = keys.purpose_key("search-index")
    assert len(first) == 32
    assert keys.purpose_key("other") != first
    call_command("keys", "rotate")
    call_command("keys", "rewrap")
    call_command("keys", "retire", "1")
    keys.reset()
    assert keys.purpose_key("search-index") == first


def test_purpose_key_created_in_a_rolled_back_transaction_is_not_kept(db: None) -> None:
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        doomed = keys.purpose_key("rolled-back")
        raise RuntimeError
    assert keys.purpose_key("rolled-back") != doomed


def test_a_running_process_takes_up_a_rotation_by_another(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pli keys rotate` runs in its own process: a server that went on wrapping under the old
    version would write data that `pli keys retire` makes unreadable."""
    Specimen.objects.create(note="before")  # this process has loaded v1
    from pli.crypto.keyring import add_key_version

    add_key_version(settings.PLI_KEYS_DIR)  # what the other process does
    monkeypatch.setattr(keys, "RECHECK_SECONDS", 0.0)
    new = Specimen.objects.create(note="after")
    assert DataKey.objects.get(pk=new.data_key_id).key_version == 2


def test_a_wrong_key_of_the_right_version_is_named(db: None, capsys: pytest.CaptureFixture[str]) -> None:
    from django.core.management.base import CommandError

    Specimen.objects.create(note="x")
    call_command("keys", "status")
    assert "checked: v1 open their data keys" in capsys.readouterr().out
    keys_dir = Path(settings.PLI_KEYS_DIR)
    good = (keys_dir / "master-v1.key").read_bytes()
    (keys_dir / "master-v1.key").write_bytes(base64.b64encode(os.urandom(32)))
    keys.reset()
    with pytest.raises(CommandError, match="master key v1 does not open the data keys"):
        call_command("keys", "status")
    assert keys.keyring_checked() is False
    from django.test import Client

    health = Client().get("/healthz")
    assert health.status_code == 503 and health.json()["keys"] == "error"
    (keys_dir / "master-v1.key").write_bytes(good)
    keys.reset()
    assert keys.keyring_checked() is True


def test_a_key_file_being_written_stops_new_encryption_not_reading(
    db: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator writes master-v2.key, then makes it private. Meanwhile stored data still
    reads, but nothing new is encrypted: the keys in hand used to go on wrapping, and a
    process that had slept through a rotation wrapped under a version already retired."""
    from django.test import Client

    before = Specimen.objects.create(note="before")
    monkeypatch.setattr(keys, "RECHECK_SECONDS", 0.0)
    new_key = Path(settings.PLI_KEYS_DIR) / "master-v2.key"
    new_key.write_bytes(base64.b64encode(os.urandom(32)))
    new_key.chmod(0o644)  # refused by the keyring: readable by others
    with caplog.at_level("ERROR", logger="pli.core.keys"), pytest.raises(WrappingRefused):
        Specimen.objects.create(note="while the file is open to others")
    assert "not re-read" in caplog.text and "permissions 0644" in caplog.text
    assert Specimen.objects.get(pk=before.pk).note == "before"
    with caplog.at_level("ERROR", logger="pli.core.views"):
        health = Client().get("/healthz")
    assert health.status_code == 503 and health.json()["keys"] == "error"
    assert "permissions 0644" in caplog.text  # the cause, not « do not open every data key »
    new_key.chmod(0o600)  # the directory's mtime does not change; the file's ctime does
    after = Specimen.objects.create(note="after")
    assert DataKey.objects.get(pk=after.data_key_id).key_version == 2
    assert Client().get("/healthz").status_code == 200


def test_a_process_asleep_through_a_rotation_wraps_nothing_under_the_retired_key(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's review: an idle server kept v1 in hand through `rotate`, `rewrap`
    and `retire 1`; the next version's file was not yet private when a message came: it
    was encrypted under v1, whose file was gone. Lost, and the instance would not start."""
    from pli.crypto.keyring import add_key_version, retire_key_version

    Specimen.objects.create(note="before")  # this process holds v1
    directory = settings.PLI_KEYS_DIR
    add_key_version(directory)  # v2, by `pli keys rotate` in another process
    for key in DataKey.objects.all():
        key.rewrap(keys.load_keyring())
    retire_key_version(directory, 1)
    third = Path(directory) / "master-v3.key"
    third.write_bytes(base64.b64encode(os.urandom(32)))
    third.chmod(0o644)
    monkeypatch.setattr(keys, "RECHECK_SECONDS", 0.0)
    with pytest.raises(WrappingRefused):
        Specimen.objects.create(note="during")
    assert set(DataKey.objects.values_list("key_version", flat=True)) == {2}


def test_data_keys_under_a_missing_version_stop_serve_and_the_health_check(db: None) -> None:
    """A backup restored without the retired key its data keys use (or a host missing a
    version another one added): `pli keys status` said so, but `pli serve` and `pli worker`
    started and /healthz answered 200 while no such object could be read."""
    from django.core.management.base import CommandError
    from django.test import Client

    made = Specimen.objects.create(note="under a key this instance has not got")
    DataKey.objects.filter(pk=made.data_key_id).update(key_version=7)
    keys.reset()
    with pytest.raises(keys.KeyMismatch, match=r"missing master key version\(s\) \[7\]"):
        keys.check_keyring()
    assert keys.keyring_checked() is False
    health = Client().get("/healthz")
    assert health.status_code == 503 and health.json()["keys"] == "error"
    # What `pli serve` and `pli worker` run first, and refuse to start on (as a KeyMismatch).
    with pytest.raises(keys.KeyMismatch, match=r"missing master key version\(s\) \[7\]"):
        keys.check_at_start()
    with pytest.raises(CommandError, match=r"missing master key version\(s\) \[7\]"):
        call_command("keys", "status")
    DataKey.objects.filter(pk=made.data_key_id).update(key_version=1)
    keys.reset()
    assert keys.keyring_checked() is True


def test_a_send_while_the_keys_cannot_be_read_is_a_503_that_says_so(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from messaging.factories import api_client, personal_mailbox, practitioner
    from pli.messaging.models import Message

    sender, recipient = practitioner(), practitioner()
    client = api_client(sender)
    Specimen.objects.create(note="keys loaded")
    monkeypatch.setattr(keys, "RECHECK_SECONDS", 0.0)
    new_key = Path(settings.PLI_KEYS_DIR) / "master-v2.key"
    new_key.write_bytes(base64.b64encode(os.urandom(32)))
    new_key.chmod(0o644)
    data = {"sender": personal_mailbox(sender).address, "to": [personal_mailbox(recipient).address], "body": "x"}
    answer = client.post("/api/v1/messages", data, HTTP_ACCEPT_LANGUAGE="fr")
    assert answer.status_code == 503 and answer["Retry-After"] == "5"
    assert answer.json()["detail"].startswith("Le service est momentanément indisponible\u00a0: Pli ne peut pas lire")
    assert not Message.objects.exists()


def test_the_web_page_says_the_keys_not_the_database(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from messaging.factories import personal_mailbox, practitioner, web_client

    sender, recipient = practitioner(), practitioner()
    client = web_client(sender)
    client.raise_request_exception = False
    Specimen.objects.create(note="keys loaded")
    monkeypatch.setattr(keys, "RECHECK_SECONDS", 0.0)
    new_key = Path(settings.PLI_KEYS_DIR) / "master-v2.key"
    new_key.write_bytes(base64.b64encode(os.urandom(32)))
    new_key.chmod(0o644)
    sent = client.post(
        "/messages/compose/",
        {"sender": personal_mailbox(sender).address, "to": personal_mailbox(recipient).address, "body": "x"},
    )
    page = sent.content.decode()
    assert sent.status_code == 503 and sent["Retry-After"] == "5"
    assert "ne peut pas lire ses clés de chiffrement" in page and "La base de données" not in page
