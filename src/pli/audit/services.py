"""Writing and verifying the audit trail.

``record("message.read", actor=user, target=message, request=request)`` is all a service
needs. Call it inside the service's transaction, as late as possible: it locks the chain's
head row until the transaction ends, so the event commits (or rolls back) with the change
it describes.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from pli.audit.chain import GENESIS_HASH, event_hash
from pli.audit.models import AuditEvent, AuditHead
from pli.core.db import insert_rows

SUCCESS = "success"
FAILURE = "failure"
DENIED = "denied"

_SCALARS = (str, int, float, bool, type(None))


def _client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    raw = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def _actor(actor: Any) -> tuple[str, str]:
    if actor is None:
        return "system", ""
    if isinstance(actor, tuple):
        return str(actor[0]), str(actor[1])
    if getattr(actor, "is_anonymous", False):
        return "anonymous", ""
    return "user", str(actor.pk)


def _target(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        return str(target[0]), str(target[1])
    if isinstance(target, models.Model):
        return target._meta.label_lower, str(target.pk)
    raise TypeError("audit target must be a model instance or a (type, id) tuple")


def _check_details(details: dict[str, Any]) -> dict[str, Any]:
    # Details are for small facts (a reason code, a count, a version): flat scalars only,
    # short strings, so that content cannot creep into the trail by accident.
    for key, value in details.items():
        if not isinstance(value, _SCALARS):
            raise TypeError(f"audit detail {key!r} must be a scalar")
        if isinstance(value, str) and len(value) > 200:
            raise ValueError(f"audit detail {key!r} is too long")
    return details


def record(
    action: str,
    *,
    actor: Any = None,
    target: Any = None,
    request: HttpRequest | None = None,
    outcome: str = SUCCESS,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the trail, inside the caller's transaction."""
    return record_each(action, actor=actor, targets=[target], request=request, outcome=outcome, details=details)[0]


def record_each(
    action: str,
    *,
    actor: Any = None,
    targets: Sequence[Any],
    request: HttpRequest | None = None,
    outcome: str = SUCCESS,
    details: dict[str, Any] | None = None,
) -> list[AuditEvent]:
    """Append one event per target (the same action, actor and details), inside the caller's
    transaction. The events follow each other in the chain as if recorded one by one, but
    cost what one does: one read of the head, one insert, one update. A thread of 60
    messages opened is 60 reads, and was 180 statements."""
    if not targets:
        return []
    actor_type, actor_id = _actor(actor if actor is not None or request is None else getattr(request, "user", None))
    clean_details = _check_details(dict(details or {}))
    ip = _client_ip(request)
    # Inside the caller's transaction, no savepoint of its own: it would cost two more
    # statements (on PostgreSQL, round trips) in every audited request, and an event that
    # cannot be appended fails the caller's block anyway.
    with contextlib.nullcontext() if connection.in_atomic_block else transaction.atomic():
        seq, prev_hash = _locked_head()
        events = []
        for target in targets:
            target_type, target_id = _target(target)
            seq += 1
            event = AuditEvent(
                seq=seq,
                at=timezone.now(),
                actor_type=actor_type,
                actor_id=actor_id,
                action=action,
                target_type=target_type,
                target_id=target_id,
                ip=ip,
                outcome=outcome,
                details=dict(clean_details),
                prev_hash=prev_hash,
            )
            event.hash = prev_hash = _hash_of(event)
            events.append(event)
        # Plain statements rather than model saves: this runs in every audited request,
        # and on SQLite inside the write lock.
        insert_rows(events)
        with connection.cursor() as cursor:
            cursor.execute(_ADVANCE_HEAD, [seq, prev_hash])
    return events


_HEAD = AuditHead._meta.db_table
_READ_HEAD = f"SELECT seq, hash FROM {_HEAD} WHERE id = 1"  # noqa: S608 - a model's table
_ADVANCE_HEAD = f"UPDATE {_HEAD} SET seq = %s, hash = %s WHERE id = 1"  # noqa: S608 - a model's table


class AuditHeadMissing(Exception):
    pass


def _locked_head() -> tuple[int, str]:
    """The chain's last (seq, hash), with the head row locked until the transaction ends."""
    sql = _READ_HEAD + (" FOR UPDATE" if connection.features.has_select_for_update else "")
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    if row is not None:
        return int(row[0]), str(row[1])
    # The head is created by the migration; it can only be missing on an empty trail (a
    # flushed test database) or because someone removed it, which must not be papered over.
    # Refused inside the savepoint, so that the head made here is undone and the caller's
    # transaction can go on.
    try:
        with transaction.atomic():
            AuditHead.objects.create(pk=1, seq=0, hash=GENESIS_HASH)
            if AuditEvent.objects.exists():
                raise AuditHeadMissing("the audit trail's head row is missing: run `pli audit verify`")
    except IntegrityError:
        pass  # a concurrent writer created it first: wait for and lock theirs below
    head = AuditHead.objects.select_for_update().get(pk=1)
    return head.seq, head.hash


def _hash_of(event: AuditEvent) -> str:
    return event_hash(
        seq=event.seq,
        at=event.at,
        actor_type=event.actor_type,
        actor_id=event.actor_id,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        ip=event.ip,
        outcome=event.outcome,
        details=event.details,
        prev_hash=event.prev_hash,
    )


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


def _events(last_seq: int | None) -> Iterator[AuditEvent]:
    events = AuditEvent.objects.order_by("seq")
    if last_seq is not None:
        events = events.filter(seq__lte=last_seq)
    return events.iterator(chunk_size=5000)


def verify() -> Verification:
    """Walk the chain from the start to its head; report the first entry altered, removed or
    inserted.

    The head is read before the walk, which stops there: on an instance in use, entries
    appended while the walk runs (after its snapshot) would otherwise look like entries
    removed at the end.
    """
    head = AuditHead.objects.filter(pk=1).first()
    expected_prev = GENESIS_HASH
    before_last = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for event in _events(head.seq if head is not None else None):
        if event.seq != expected_seq:
            if event.seq > expected_seq:
                problem = f"entry {expected_seq} is missing (removed)"
            else:
                problem = f"entry {event.seq} is out of sequence (inserted)"
            return Verification(False, checked, expected_prev, expected_seq, problem)
        if event.prev_hash != expected_prev:
            return Verification(
                False,
                checked,
                expected_prev,
                event.seq,
                f"entry {event.seq} does not follow entry {event.seq - 1} (removed or inserted entries)",
            )
        if _hash_of(event) != event.hash:
            return Verification(False, checked, expected_prev, event.seq, f"entry {event.seq} was altered")
        before_last, expected_prev = expected_prev, event.hash
        expected_seq += 1
        checked += 1
    if head is None:
        if checked == 0:
            return Verification(True, 0, expected_prev)
        return Verification(False, checked, expected_prev, checked + 1, "the trail's head row was removed")
    if head.seq != checked:
        return Verification(
            False,
            checked,
            expected_prev,
            checked + 1,
            f"the trail ends at entry {checked} but its head records entry {head.seq} (entries removed at the end)",
        )
    if head.hash != expected_prev and checked == 0:
        return Verification(False, 0, expected_prev, 1, "the trail's head row was altered")
    if head.hash != expected_prev:
        # The last entry, rewritten with a hash of its own content: no entry follows it to
        # tell, but the head kept the hash it had.
        return Verification(
            False, checked - 1, before_last, checked, f"entry {checked} was altered (the head records another hash)"
        )
    # Past the head: entries appended since it was read (the head has moved on with them,
    # in the same transaction), or one written to the table alone (the head has not).
    beyond = AuditEvent.objects.filter(seq__gt=head.seq).order_by("seq").values_list("seq", flat=True).first()
    if beyond is not None and AuditHead.objects.filter(pk=1, seq__lt=beyond).exists():
        return Verification(
            False, checked, expected_prev, beyond, f"entry {beyond} is past the trail's head (inserted)"
        )
    return Verification(True, checked, expected_prev)


def events_for(target: Any) -> models.QuerySet[AuditEvent]:
    target_type, target_id = _target(target)
    return AuditEvent.objects.filter(target_type=target_type, target_id=target_id).order_by("seq")
