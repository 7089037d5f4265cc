from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from pli.audit import services as audit
from pli.audit.chain import event_hash
from pli.audit.models import AuditEvent, AuditHead
from pli.core.models import DataKey


def _fill(n: int = 5) -> list[AuditEvent]:
    return [audit.record("test.event", actor=("user", str(i)), target=("thing", str(i))) for i in range(n)]


def _hash(event: AuditEvent) -> str:
    """The hash ``event`` should carry: the algorithm is documented, anyone can compute it."""
    fields = ("seq", "at", "actor_type", "actor_id", "action", "target_type", "target_id", "ip", "outcome", "details")
    return event_hash(prev_hash=event.prev_hash, **{name: getattr(event, name) for name in fields})


def _rewrite(seq: int, **changes: Any) -> None:
    """Alter an entry and give it the hash of its new content, as a forger would."""
    event = AuditEvent.objects.get(seq=seq)
    for name, value in changes.items():
        setattr(event, name, value)
    AuditEvent.objects.filter(seq=seq).update(**changes, hash=_hash(event))


def test_record_is_a_one_liner_and_chains(db: None) -> None:
    request = RequestFactory().get("/x", REMOTE_ADDR="203.0.113.9")
    first = audit.record("message.read", actor=("user", "42"), target=("messaging.message", "abc"), request=request)
    second = audit.record("message.read", target=("messaging.message", "def"), outcome=audit.DENIED)
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash
    assert first.ip == "203.0.113.9"
    assert second.actor_type == "system"
    head = AuditHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (2, second.hash)
    assert audit.verify().ok


def test_a_model_instance_is_a_target(db: None) -> None:
    key = DataKey(key_version=1, wrapped=b"x")
    key.save()
    event = audit.record("key.created", target=key)
    assert (event.target_type, event.target_id) == ("core.datakey", str(key.pk))


def test_details_refuse_content_like_values(db: None) -> None:
    with pytest.raises(TypeError):
        audit.record("x", details={"body": {"nested": "content"}})
    with pytest.raises(ValueError, match="too long"):
        audit.record("x", details={"note": "a" * 500})
    assert AuditEvent.objects.count() == 0


def test_event_rolls_back_with_the_change_it_describes(db: None) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record("message.sent")
        raise RuntimeError("the send failed")
    assert AuditEvent.objects.count() == 0
    assert audit.verify().ok


def test_database_refuses_updates_and_deletes(db: None) -> None:
    _fill(2)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(seq=1).update(action="forged")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(seq=2).delete()
    assert AuditEvent.objects.count() == 2


def test_verify_names_an_altered_entry(db: None, audit_unlocked: None) -> None:
    _fill(5)
    AuditEvent.objects.filter(seq=3).update(actor_id="someone-else")
    result = audit.verify()
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "entry 3 was altered" in result.problem


def test_verify_names_a_removed_entry(db: None, audit_unlocked: None) -> None:
    _fill(5)
    AuditEvent.objects.filter(seq=2).delete()
    result = audit.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "entry 2 is missing" in result.problem


def test_verify_detects_an_inserted_entry(db: None, audit_unlocked: None) -> None:
    events = _fill(4)
    # Shift entries 3.. up by one and slip a forged entry in as #3, re-using #2's hash as
    # its predecessor: the forger cannot produce #4's stored prev_hash without rewriting it.
    for seq in (4, 3):
        AuditEvent.objects.filter(seq=seq).update(seq=seq + 1)
    forged = AuditEvent.objects.get(seq=2)
    forged.pk = None
    forged.seq = 3
    forged.action = "forged.event"
    forged.prev_hash = events[1].hash
    forged.save(force_insert=True)
    result = audit.verify()
    assert not result.ok
    assert result.first_bad_seq == 3


def test_verify_detects_removal_at_the_end(db: None, audit_unlocked: None) -> None:
    _fill(4)
    AuditEvent.objects.filter(seq=4).delete()
    result = audit.verify()
    assert not result.ok
    assert "entries removed at the end" in result.problem


def test_verify_command_exit_codes(db: None, audit_unlocked: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(3)
    call_command("audit", "verify")
    assert "audit trail intact: 3 entries" in capsys.readouterr().out
    AuditEvent.objects.filter(seq=2).update(outcome="failure")
    with pytest.raises(CommandError, match="entry 2 was altered"):
        call_command("audit", "verify")


def test_head_missing_with_events_is_refused(db: None, audit_unlocked: None) -> None:
    _fill(1)
    AuditHead.objects.all().delete()
    with pytest.raises(audit.AuditHeadMissing):
        audit.record("x")
    assert "head row was removed" in audit.verify().problem


def test_raw_sql_tamper_of_details_is_detected(db: None, audit_unlocked: None) -> None:
    _fill(2)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pli_audit_event SET details = %s WHERE seq = 1", ['{"reason": "forged"}'])
    assert audit.verify().first_bad_seq == 1


@pytest.mark.parametrize(
    "change",
    [
        {"at": datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)},
        {"actor_type": "system"},
        {"actor_id": "someone-else"},
        {"action": "forged.event"},
        {"target_type": "other.thing"},
        {"target_id": "another-id"},
        {"ip": "198.51.100.7"},
        {"outcome": "denied"},
        {"details": {"reason": "forged"}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_verify_names_an_entry_with_any_field_altered(db: None, audit_unlocked: None, change: dict[str, Any]) -> None:
    _fill(4)
    AuditEvent.objects.filter(seq=3).update(**change)
    result = audit.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "entry 3 was altered" in result.problem


def test_verify_detects_an_entry_rewritten_with_a_matching_hash(db: None, audit_unlocked: None) -> None:
    """Its own hash checks out; the next entry still names the hash it had."""
    _fill(4)
    _rewrite(2, actor_id="someone-else")
    result = audit.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "entry 3 does not follow entry 2" in result.problem


def test_verify_detects_the_last_entry_rewritten_with_a_matching_hash(db: None, audit_unlocked: None) -> None:
    """No entry follows it, but the head remembers its hash."""
    _fill(3)
    _rewrite(3, action="forged.event")
    result = audit.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "entry 3 was altered" in result.problem


def test_verify_detects_an_entry_slipped_in_past_the_head(db: None, audit_unlocked: None) -> None:
    """Chained to the last entry, but written to the table alone (the head not moved)."""
    events = _fill(3)
    forged = AuditEvent.objects.get(seq=3)
    forged.pk = None
    forged.seq = 4
    forged.action = "forged.event"
    forged.prev_hash = events[-1].hash
    forged.hash = _hash(forged)
    forged.save(force_insert=True)
    result = audit.verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "entry 4" in result.problem and "inserted" in result.problem


def test_verify_of_a_trail_in_use_is_not_a_false_alarm(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries appended while the walk runs (the instance keeps working during the nightly
    check) are not taken for entries removed at the end."""
    _fill(3)
    walk = audit._events

    def walk_then_append(*args: Any) -> Iterator[AuditEvent]:
        seen = list(walk(*args))  # the walk's snapshot...
        audit.record("test.event", actor=("user", "late"))  # ...then an append commits
        return iter(seen)

    monkeypatch.setattr(audit, "_events", walk_then_append)
    result = audit.verify()
    assert result.ok, result.problem
    assert result.checked in (3, 4)
    monkeypatch.undo()
    assert audit.verify().checked == 4
