"""Attempt counters are atomic: requests racing each other never get past a limit
(threads, each with its own database connection, on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from pli.audit.models import AuditEvent
from pli.sharing import services, tokens
from pli.sharing.models import OneTimeCode, PatientSession, PatientShare, ShareNotification, Status
from sharing.helpers import BIRTH_DATE, make_share

THREADS = 8


def race(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released at the same instant."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_concurrent_wrong_birth_dates_stop_at_five(transactional_db: None) -> None:
    share, _token = make_share()
    wrong = datetime.date(1990, 1, 1)
    outcomes = Counter(r.outcome for r in race(lambda i: services.check_birth_date(share.pk, wrong)))
    share.refresh_from_db()
    assert share.birth_date_failures == 5
    assert share.status == Status.LOCKED
    assert outcomes["wrong"] == 4 and outcomes[Status.LOCKED] == THREADS - 4


def test_concurrent_correct_birth_dates_never_exceed_the_code_limit(transactional_db: None) -> None:
    share, _token = make_share()
    # Spaced past the cool-down, or each would find the previous code on its way and reuse it.
    step = services.RESEND_COOLDOWN + datetime.timedelta(seconds=1)
    start = timezone.now()
    for i in range(4):
        services.check_birth_date(share.pk, BIRTH_DATE, now=start + i * step)
    assert OneTimeCode.objects.filter(share=share).count() == 4
    at = start + 4 * step
    outcomes = Counter(r.outcome for r in race(lambda i: services.check_birth_date(share.pk, BIRTH_DATE, now=at)))
    # One sends the hour's fifth code; the others find it on its way instead of sending more.
    assert OneTimeCode.objects.filter(share=share).count() == 5
    assert outcomes["ok"] == THREADS
    assert services.check_birth_date(share.pk, BIRTH_DATE, now=at + step).outcome == Status.LOCKED
    assert OneTimeCode.objects.filter(share=share).count() == 5
    share.refresh_from_db()
    assert share.status == Status.LOCKED and share.lock_reason == "codes_sent"


def _session_with_code(share: PatientShare) -> tuple[str, str]:
    """A patient session past the birth date, and the code it was sent (set by the test)."""
    result = services.check_birth_date(share.pk, BIRTH_DATE)
    assert result.outcome == "ok" and result.session_key
    code = "424242"
    OneTimeCode.objects.filter(share=share, retired=False).update(code_hash=tokens.code_hash(share.pk, code))
    return result.session_key, code


def test_the_same_correct_code_opens_once(transactional_db: None) -> None:
    share, _token = make_share()
    key, code = _session_with_code(share)
    outcomes = Counter(r.outcome for r in race(lambda i: services.check_code(share.pk, code, session_key=key)))
    assert outcomes["ok"] == 1
    share.refresh_from_db()
    assert share.open_count == 1
    assert OneTimeCode.objects.get(share=share).used_at is not None


def test_concurrent_wrong_codes_stop_at_three(transactional_db: None) -> None:
    share, _token = make_share()
    key, _code = _session_with_code(share)
    outcomes = Counter(r.outcome for r in race(lambda i: services.check_code(share.pk, "000001", session_key=key)))
    assert OneTimeCode.objects.get(share=share).attempts == 3
    assert outcomes["wrong"] == 2 and outcomes[Status.LOCKED] == THREADS - 2
    share.refresh_from_db()
    assert share.status == Status.LOCKED and share.lock_reason == "code"
    assert not PatientSession.objects.filter(share=share, stage=PatientSession.Stage.OPEN).exists()


def test_concurrent_periodic_runs_queue_one_reminder(transactional_db: None) -> None:
    """Several workers may run the periodic job at once: the share gets one reminder."""
    from django.utils import timezone

    from pli.sharing.models import ShareNotification

    share, _token = make_share(now=timezone.now() - datetime.timedelta(days=6))
    assert sum(race(lambda _i: services.send_due_reminders())) == 1
    reminders = share.notifications.filter(kind=ShareNotification.Kind.REMINDER)
    assert list(reminders.values_list("channel", flat=True)) == ["email"]


def test_concurrent_workers_deliver_a_notification_once(transactional_db: None) -> None:
    from pli.sharing import notifications
    from sharing.helpers import sms_messages

    share, _token = make_share(email=None)
    notification = share.notifications.get()
    outcomes = race(lambda _i: notifications.deliver(notification.pk))
    assert Counter(outcomes) == {"sent": 1, "skipped": THREADS - 1}
    assert len(sms_messages()) == 1


def test_the_same_code_sent_at_once_by_one_browser_opens_once_and_counts_nothing(transactional_db: None) -> None:
    """A double (or eightfold) tap: one opening; each repeat gets the session a new key."""
    share, _token = make_share()
    key, code = _session_with_code(share)
    results = race(lambda i: services.check_code(share.pk, code, session_key=key, browser_keys=[key]))
    outcomes = Counter(r.outcome for r in results)
    assert outcomes["ok"] == 1 and outcomes["again"] == THREADS - 1
    share.refresh_from_db()
    assert share.open_count == 1 and share.code_failures == 0
    assert OneTimeCode.objects.get(share=share).attempts == 0
    live = [r.session_key for r in results if services.find_session(share, r.session_key) is not None]
    assert len(live) == 1
    assert PatientSession.objects.filter(share=share, stage=PatientSession.Stage.OPEN).count() == 1


def test_unlock_and_resend_while_the_worker_records_a_delivery(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """« Débloquer et envoyer un nouveau lien » clicked as the worker recorded the delivery
    of the first link's e-mail: on PostgreSQL the page's transaction held the audit trail's
    head (the unlock's event) and then wanted the notification's row (to cancel it), while
    the worker held that row and waited for the head (its « sent » event): one of them failed
    with a 500."""
    from django.test import Client

    from interleave import while_committing
    from pli.sharing import notifications

    share, _token = make_share()
    for _ in range(5):
        services.check_birth_date(share.pk, datetime.date(1990, 1, 1))
    email = share.notifications.get(channel="email", state=ShareNotification.State.PENDING)
    deliver = partial(notifications.deliver, email.pk)
    join = while_committing(monkeypatch, "share.unlocked", deliver, "share.notification_sent")
    client = Client()
    client.force_login(share.created_by)
    client.raise_request_exception = False
    response = client.post(f"/shares/{share.pk}/unlock", {"resend": "1"})
    assert join() == []
    assert response.status_code == 303
    share.refresh_from_db()
    assert share.status == Status.SENT
    assert AuditEvent.objects.filter(action="share.resent").count() == 1


def test_a_failure_recorded_as_the_share_is_revoked_is_not_shown_for_a_cancelled_link(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider refused the link's SMS for good, and the practitioner revoked the share
    as the worker was recording that: on PostgreSQL the worker had checked the notification
    was still pending, the revocation then cancelled it, and the worker recorded a final
    failure all the same. The share's history and the API's events showed « échec de la
    notification » for a link that had been cancelled."""
    from pli.audit.models import AuditEvent
    from pli.sharing import notifications

    share, _token = make_share(email=None)
    link = share.notifications.get(kind="link")
    real_close = notifications.close
    worker = threading.current_thread()

    def refused(notification: ShareNotification) -> str:
        raise notifications.DeliveryFailed("sms:21610", retryable=False)

    def revoke() -> None:
        try:
            services.revoke(share.created_by, share.pk)
        finally:
            connection.close()

    def close(rows: Any, **fields: Any) -> None:
        if threading.current_thread() is worker:
            # The revocation commits now, unless the worker holds the notification (then it
            # waits for the worker's commit).
            thread = threading.Thread(target=revoke)
            thread.start()
            thread.join(1)
            monkeypatch.setattr(notifications, "close", real_close)
            closing.append(thread)
        real_close(rows, **fields)

    closing: list[threading.Thread] = []
    monkeypatch.setattr(notifications, "_send", refused)
    monkeypatch.setattr(notifications, "close", close)
    state = notifications.deliver(link.pk)
    for thread in closing:
        thread.join()
    link.refresh_from_db()
    failed = AuditEvent.objects.filter(action="share.notification_failed", target_id=str(share.pk)).exists()
    # Either failed before the revocation (and shown), or cancelled by it (and not).
    assert (link.state, failed) in ((ShareNotification.State.FAILED, True), (ShareNotification.State.CANCELLED, False))
    assert state == link.state
