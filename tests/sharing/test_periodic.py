"""Periodic jobs: one reminder after 5 days, expiry, clean-up; and the scheduler chain.
Time is passed in (``now``), never slept."""

from __future__ import annotations

import datetime
import os
import time
import zoneinfo
from typing import Any

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from pli.core.models import DataKey
from pli.crypto import new_data_key
from pli.sharing import services
from pli.sharing.models import OneTimeCode, PatientSession, PatientShare, ShareDocument, ShareNotification, Status
from pli.sharing.tasks import periodic_jobs, schedule_periodic
from pli.sharing.uploads import share_blob_store
from pli.testing.accounts import make_user
from sharing.helpers import (
    MOBILE,
    Patient,
    last_code,
    link_token,
    make_share,
    pending_document,
    run_tasks,
    share_input,
    sms_messages,
    token_of,
)

DAY = datetime.timedelta(days=1)
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def test_one_reminder_after_five_days_with_a_fresh_link(db: None) -> None:
    share, first_token = make_share(email=None)
    run_tasks()
    # The patient has started with the first link when the reminder goes out.
    started = Patient(first_token)
    assert started.birth_date().status_code == 303
    run_tasks()
    code = last_code(MOBILE)
    now = timezone.now()
    assert services.send_due_reminders(now + 4 * DAY) == 0
    assert services.send_due_reminders(now + 5 * DAY + datetime.timedelta(minutes=1)) == 1
    reminder_token = token_of(share)
    run_tasks()
    reminders = share.notifications.filter(kind=ShareNotification.Kind.REMINDER)
    assert {n.channel for n in reminders} == {"sms"} and {n.state for n in reminders} == {"sent"}
    texts = [m["text"] for m in sms_messages()]
    link_texts = [t for t in texts if "/p/" in t]
    assert len(link_texts) == 2 and link_token(link_texts[-1]) == reminder_token != first_token
    assert "Rappel" in texts[-1]
    # Only once.
    assert services.send_due_reminders(now + 6 * DAY) == 0
    assert services.send_due_reminders(now + 20 * DAY) == 0
    assert Patient(reminder_token).get().status_code == 200
    assert "reminder_queued" in [e.type for e in services.events(share)]
    # The first link still works, and so does the code it led to.
    assert Patient(first_token).get().status_code == 200
    assert started.code(code).status_code == 303
    assert started.get("/documents").status_code == 200
    # A practitioner's resend retires both.
    services.resend(share.created_by, share.pk)
    assert Patient(first_token).get().status_code == 404
    assert Patient(reminder_token).get().status_code == 404


def test_no_reminder_once_opened_or_revoked(db: None) -> None:
    _opened, token = make_share()
    run_tasks()
    Patient(token).sign_in()
    revoked, _t = make_share()
    services.revoke(revoked.created_by, revoked.pk)
    assert services.send_due_reminders(timezone.now() + 6 * DAY) == 0


def test_expiry_is_recorded(db: None) -> None:
    share, token = make_share(expires_in_days=3)
    patient = Patient(token)
    patient.birth_date()
    assert services.expire_shares(timezone.now() + 2 * DAY) == 0
    assert services.expire_shares(timezone.now() + 3 * DAY + datetime.timedelta(seconds=1)) == 1
    share.refresh_from_db()
    assert share.status == Status.EXPIRED
    assert not PatientSession.objects.filter(share=share, ended_at__isnull=True).exists()
    assert "expired" in [e.type for e in services.events(share)]


def test_cleanup_forgets_codes_sessions_and_old_documents(db: None, django_capture_on_commit_callbacks: Any) -> None:
    share, token = make_share(expires_in_days=1)
    Patient(token).birth_date()
    document = share.documents.get()
    store = share_blob_store()
    assert store.exists(document.blob_id)
    later = timezone.now() + 2 * DAY
    result = services.cleanup(later)
    assert result["codes"] == 1 and result["sessions"] == 1
    assert not OneTimeCode.objects.exists() and not PatientSession.objects.exists()
    services.expire_shares(later)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.cleanup(later + 31 * DAY)["documents"] == 1
    assert not ShareDocument.objects.exists() and not store.exists(document.blob_id)
    # Shredded: the key goes too, so that no copy of the blob (a backup) can be read.
    assert not DataKey.objects.filter(pk=document.data_key_id).exists()
    share.refresh_from_db()
    assert share.document_count == 0


def test_cleanup_removes_orphan_blobs_only(db: None) -> None:
    share, _token = make_share()
    kept = share.documents.get().blob_id
    store = share_blob_store()
    orphan = "f" * 32
    store.put(orphan, [b"an upload whose share never committed"], new_data_key(), b"aad")
    recent = "e" * 32
    store.put(recent, [b"an upload in progress"], new_data_key(), b"aad")
    hour_ago = time.time() - 3700
    os.utime(store.path_for(orphan), (hour_ago, hour_ago))
    os.utime(store.path_for(kept), (hour_ago, hour_ago))
    assert services.cleanup()["orphans"] == 1
    assert not store.exists(orphan) and store.exists(kept) and store.exists(recent)


def test_a_document_the_cleanup_may_have_taken_is_never_committed(db: None) -> None:
    """A share sent slowly: its first document was finished two hours before the last one
    arrived, and the worker's clean-up, finding that blob old and referenced by nothing,
    removed it meanwhile. The share is refused, never saved with a document whose content
    is gone."""
    document = pending_document()
    store = share_blob_store()
    two_hours_ago = time.time() - 7200
    os.utime(store.path_for(document.blob_id), (two_hours_ago, two_hours_ago))
    document.completed_at -= 7200
    assert services.cleanup()["orphans"] == 1  # the worker, while the rest was uploading
    with pytest.raises(services.ShareError):
        services.create_share(make_user(), share_input(), [document])
    assert not PatientShare.objects.exists() and not ShareDocument.objects.exists()


def test_an_upload_finished_long_ago_is_refused_before_the_cleanup_can_take_it(db: None) -> None:
    """The clean-up takes only blobs older than PLI_ORPHAN_BLOB_AGE (an hour at least); a
    document finished more than half that long ago is refused at once, so that no share is
    ever committed with a blob that the clean-up of another process is about to remove."""
    document = pending_document()
    document.completed_at -= services.MAX_PENDING_AGE + 1
    with pytest.raises(services.ShareError):
        services.create_share(make_user(), share_input(), [document])
    assert not PatientShare.objects.exists()


def test_the_cleanup_of_shares_keeps_orphans_younger_than_the_configured_age(db: None, settings: Any) -> None:
    settings.PLI_ORPHAN_BLOB_AGE = 3 * 3600
    store = share_blob_store()
    orphan = "f" * 32
    store.put(orphan, [b"an upload whose share never committed"], new_data_key(), b"aad")
    two_hours_ago = time.time() - 7200
    os.utime(store.path_for(orphan), (two_hours_ago, two_hours_ago))
    assert services.cleanup()["orphans"] == 0 and store.exists(orphan)
    settings.PLI_ORPHAN_BLOB_AGE = 3600
    assert services.cleanup()["orphans"] == 1 and not store.exists(orphan)


def test_the_scheduler_keeps_one_waiting_run(db: None) -> None:
    assert schedule_periodic() is True
    assert schedule_periodic() is False
    run_tasks()  # runs the periodic job, which queues its next run
    runs = DBTaskResult.objects.filter(task_path=periodic_jobs.module_path)
    assert runs.filter(status="SUCCESSFUL").count() == 1
    waiting = runs.get(status="READY")
    assert waiting.run_after > timezone.now() + datetime.timedelta(minutes=4)
    assert schedule_periodic() is False


def test_periodic_job_sends_due_reminders(db: None) -> None:
    user = make_user()
    share, _token = make_share(user, now=timezone.now() - 6 * DAY)
    run_tasks()
    schedule_periodic()
    run_tasks()
    # By e-mail, as the link went: the code comes by SMS.
    assert share.notifications.filter(kind=ShareNotification.Kind.REMINDER, state="sent").get().channel == "email"


def test_periodic_job_forgets_expired_sign_in_sessions(db: None) -> None:
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    old, current = SessionStore(), SessionStore()
    for store in (old, current):
        store["_auth_user_id"] = "1"
        store.create()
    Session.objects.filter(session_key=old.session_key).update(expire_date=timezone.now() - DAY)
    schedule_periodic()
    run_tasks()
    assert list(Session.objects.values_list("session_key", flat=True)) == [current.session_key]


def test_periodic_job_forgets_the_browser_and_address_of_ended_sign_in_sessions(db: None) -> None:
    """allauth keeps, beside each sign-in session, its browser and IP address (the « Sessions »
    page lists them). Those rows have no foreign key to the session: they outlived it, and
    stayed for ever unless their user signed in again (a member who left, never)."""
    from allauth.usersessions.models import UserSession
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    user = make_user()
    ended, current = SessionStore(), SessionStore()
    for store, address in ((ended, "203.0.113.10"), (current, "203.0.113.11")):
        store["_auth_user_id"] = str(user.pk)
        store.create()
        UserSession.objects.create(user=user, ip=address, session_key=store.session_key, user_agent="Firefox")
    Session.objects.filter(session_key=ended.session_key).update(expire_date=timezone.now() - DAY)
    schedule_periodic()
    run_tasks()
    assert list(UserSession.objects.values_list("ip", flat=True)) == ["203.0.113.11"]


def test_periodic_job_removes_expired_cache_entries(db: None) -> None:
    """The shared (database) cache holds short-lived entries: counters of unknown links per
    IP address (10 minutes), the former session key of a patient who has just typed the
    code (30 s), allauth's sign-in counters. Django deletes an expired entry only when it is
    read again, or when the table holds more than MAX_ENTRIES (a million here): they stayed
    for ever, the patients' and practitioners' IP addresses with them."""
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client

    from pli.sharing.patient import UNKNOWN_LINK_WINDOW
    from pli.sharing.tasks import clear_expired_cache

    def keys() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT cache_key FROM pli_cache")
            return sorted(key for (key,) in cursor.fetchall())

    assert Client(REMOTE_ADDR="203.0.113.78").get("/p/" + "E" * 43).status_code == 404
    cache.set("pli:still-valid", 1, 3 * UNKNOWN_LINK_WINDOW)
    assert keys() == [":1:pli:share-unknown:203.0.113.78", ":1:pli:still-valid"]
    later = timezone.now() + datetime.timedelta(seconds=UNKNOWN_LINK_WINDOW + 1)
    assert clear_expired_cache(later) == 1
    assert keys() == [":1:pli:still-valid"]
    # The worker's periodic run does it.
    cache.set("pli:gone", 1, 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pli_cache SET expires = %s WHERE cache_key = %s",
            [connection.ops.adapt_datetimefield_value(timezone.now() - DAY), ":1:pli:gone"],
        )
    schedule_periodic()
    run_tasks()
    run = DBTaskResult.objects.filter(task_path=periodic_jobs.module_path, status="SUCCESSFUL").get()
    assert run.return_value["expired_cache_entries"] == 1
    assert keys() == [":1:pli:still-valid"]


def test_the_next_periodic_run_is_planned_before_this_one_works(db: None, monkeypatch: Any) -> None:
    """The next run used to be queued only once this one ended. A worker killed during a
    run (the OOM killer, a deploy), or a database lost during one (so that re-queueing in
    `finally` failed too), ended the chain: with another worker still running, reminders,
    expiry and the re-queueing of stuck notifications stopped until some worker restarted."""
    from django.db import OperationalError

    from pli.sharing import tasks

    planned: list[bool] = []
    lost = False
    schedule = tasks.schedule_periodic

    def run_periodic(now: datetime.datetime | None = None) -> dict[str, int]:
        nonlocal lost
        planned.append(DBTaskResult.objects.filter(task_path=periodic_jobs.module_path, status="READY").exists())
        lost = True
        raise OperationalError("server closed the connection unexpectedly")

    def schedule_unless_lost(delay: datetime.timedelta = datetime.timedelta(0)) -> bool:
        if lost:
            raise OperationalError("server closed the connection unexpectedly")
        return schedule(delay)

    monkeypatch.setattr(services, "run_periodic", run_periodic)
    monkeypatch.setattr(tasks, "schedule_periodic", schedule_unless_lost)
    schedule()
    run_tasks()
    assert planned == [True]
    runs = DBTaskResult.objects.filter(task_path=periodic_jobs.module_path)
    assert runs.filter(status="FAILED").count() == 1
    assert runs.get(status="READY").run_after > timezone.now() + datetime.timedelta(minutes=4)


def test_a_periodic_run_is_not_joined_by_the_next_one(db: None, monkeypatch: Any) -> None:
    """The next run is planned as one starts: should a run last longer than the period,
    the next one, on another worker, leaves the work to it (and plans the one after)."""
    import uuid

    ran: list[bool] = []

    def run_periodic(now: datetime.datetime | None = None) -> dict[str, int]:
        ran.append(True)
        return {}

    monkeypatch.setattr(services, "run_periodic", run_periodic)
    DBTaskResult.objects.create(
        id=uuid.uuid4(),
        args_kwargs={"args": [], "kwargs": {}},
        task_path=periodic_jobs.module_path,
        backend_name="default",
        run_after=timezone.now(),
        status="RUNNING",
        started_at=timezone.now() - datetime.timedelta(minutes=6),
    )
    schedule_periodic()
    run_tasks()
    assert ran == []
    assert DBTaskResult.objects.filter(task_path=periodic_jobs.module_path, status="READY").exists()
    # A run left "running" long ago (its worker was killed) holds nothing back.
    DBTaskResult.objects.filter(status="RUNNING").update(started_at=timezone.now() - datetime.timedelta(hours=1))
    DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())
    run_tasks()
    assert ran == [True]


def test_a_reminder_still_waiting_when_the_patient_opens_is_not_sent(db: None) -> None:
    """The reminder is for a share not opened. Queued on day 5 while the provider was down,
    it used to go out once the provider was back, to a patient who had opened it since."""
    from pli.sharing import notifications

    share, token = make_share(email=None)
    run_tasks()
    assert services.send_due_reminders(timezone.now() + 5 * DAY + datetime.timedelta(minutes=1)) == 1
    reminder = share.notifications.get(kind=ShareNotification.Kind.REMINDER)
    # The provider is down: the reminder waits. The patient opens the share with the first link.
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    assert notifications.deliver(share.notifications.get(kind=ShareNotification.Kind.CODE).pk) == "sent"
    assert patient.code(last_code(MOBILE)).status_code == 303
    run_tasks()
    reminder.refresh_from_db()
    assert reminder.state == ShareNotification.State.CANCELLED
    assert not [m for m in sms_messages() if "Rappel" in m["text"]]


def test_the_reminder_does_not_say_the_first_link_stopped_working(db: None, smtp_server: Any) -> None:
    """Since the reminder adds a link instead of replacing the first one, its e-mail must
    not tell the patient the first one no longer works."""
    _share, first_token = make_share(mobile=None)
    run_tasks()
    assert services.send_due_reminders(timezone.now() + 5 * DAY + datetime.timedelta(minutes=1)) == 1
    run_tasks()
    reminder = smtp_server.wait_for(2)[-1]
    text = reminder.body
    html = reminder.message.get_body(preferencelist=("html",)).get_content()
    assert link_token(text) == link_token(html) != first_token
    for part in (text, html):
        assert "ne fonctionne plus" not in part
        assert "fonctionne toujours" in part
    assert Patient(first_token).get().status_code == 200


def test_no_reminder_right_after_the_practitioner_sends_a_new_link(db: None) -> None:
    """The reminder counted from the share's creation: a new link sent on day 5 (after an
    unlock, or because the first one went astray) was followed minutes later by a "Rappel"
    carrying yet another link. It counts from the link the patient has now."""
    start = timezone.now() - 6 * DAY
    share, _token = make_share(email=None, now=start)
    resent_at = start + 5 * DAY - datetime.timedelta(hours=1)
    services.resend(share.created_by, share.pk, now=resent_at)
    assert services.send_due_reminders(start + 5 * DAY + datetime.timedelta(minutes=5)) == 0
    assert not share.notifications.filter(kind=ShareNotification.Kind.REMINDER).exists()
    # Five days after the new link, still not opened: the one reminder.
    assert services.send_due_reminders(resent_at + 5 * DAY + datetime.timedelta(minutes=1)) == 1
    assert services.send_due_reminders(resent_at + 20 * DAY) == 0


def _paris(day: datetime.datetime, hour: int, minute: int = 0) -> datetime.datetime:
    """``day``'s date at ``hour``:``minute`` in Paris, as an aware datetime."""
    return datetime.datetime.combine(
        day.astimezone(PARIS).date(), datetime.time(hour, minute), tzinfo=PARIS
    ).astimezone(datetime.UTC)


def test_a_reminder_falling_due_at_night_waits_for_the_morning(db: None, settings: Any) -> None:
    """A reminder is sent by the worker, unattended: one that fell due at 23:30 went out at
    23:30, an SMS in the middle of someone's night. It waits for PLI_REMINDER_HOURS."""
    settings.PLI_REMINDER_HOURS = (9, 20)
    created = _paris(timezone.now() - 10 * DAY, 23, 30)
    share, _token = make_share(now=created)
    due = created + 5 * DAY
    assert services.send_due_reminders(due + datetime.timedelta(minutes=1)) == 0
    assert services.send_due_reminders(_paris(due + DAY, 8, 55)) == 0
    assert not share.notifications.filter(kind=ShareNotification.Kind.REMINDER).exists()
    assert services.send_due_reminders(_paris(due + DAY, 9, 0)) == 1
    assert share.notifications.filter(kind=ShareNotification.Kind.REMINDER).count() == 1
    # 20:00 is the end: a share due then waits too.
    evening, _token = make_share(now=_paris(timezone.now() - 10 * DAY, 20, 0))
    assert services.send_due_reminders(_paris(evening.link_sent_at + 5 * DAY, 20, 0)) == 0
    assert services.send_due_reminders(_paris(evening.link_sent_at + 5 * DAY, 19, 59) + DAY) == 1


def test_the_window_is_the_patient_s_own_day_overseas(db: None, settings: Any) -> None:
    """A patient in Guadeloupe is five or six hours behind Paris: at 9:00 in Paris it is
    3:00 or 4:00 there. The mobile number tells where the patient lives; without one, the
    instance's time zone decides."""
    settings.PLI_REMINDER_HOURS = (9, 20)
    sent = _paris(timezone.now() - 10 * DAY, 10, 0)
    guadeloupe, _t = make_share(mobile="+590690123456", now=sent)
    paris, _t = make_share(mobile=None, now=sent)
    morning = _paris(sent + 5 * DAY, 10, 0)
    assert services.send_due_reminders(morning) == 1
    assert paris.notifications.filter(kind=ShareNotification.Kind.REMINDER).exists()
    assert not guadeloupe.notifications.filter(kind=ShareNotification.Kind.REMINDER).exists()
    # 16:00 in Paris is 10:00 or 11:00 in Guadeloupe.
    assert services.send_due_reminders(_paris(sent + 5 * DAY, 16, 0)) == 1
    assert guadeloupe.notifications.filter(kind=ShareNotification.Kind.REMINDER).exists()


def test_shares_waiting_for_the_morning_do_not_hold_back_those_due(db: None, settings: Any) -> None:
    """A run takes at most ``limit`` reminders; shares skipped because their patient's night
    is not over must not take the places of those that may go (reminders go oldest first)."""
    settings.PLI_REMINDER_HOURS = (9, 20)
    sent = _paris(timezone.now() - 10 * DAY, 10, 0)
    for minutes in range(3):
        make_share(mobile="+590690123456", now=sent + datetime.timedelta(minutes=minutes))
    local, _t = make_share(mobile=None, now=sent + datetime.timedelta(minutes=5))
    assert services.send_due_reminders(_paris(sent + 5 * DAY, 10, 30), limit=2) == 1
    assert local.notifications.filter(kind=ShareNotification.Kind.REMINDER).exists()


@pytest.mark.parametrize("raw", ["20-9", "9", "9-25", "matin", "-1-20", "9-9"])
def test_reminder_hours_are_checked_at_start_up(raw: str, tmp_path: Any) -> None:
    import subprocess
    import sys

    env = {**os.environ, "PLI_REMINDER_HOURS": raw, "PLI_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "PLI_REMINDER_HOURS must be two hours of the day such as 9-20" in result.stderr


def test_reminder_hours_default_to_nine_to_eight(tmp_path: Any) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PLI_REMINDER_HOURS"}
    env["PLI_DATA_DIR"] = str(tmp_path)
    code = "import django; django.setup(); from django.conf import settings; print(settings.PLI_REMINDER_HOURS)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "(9, 20)"
