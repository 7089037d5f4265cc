"""Notifications: queued with the share in one transaction, delivered by the worker through
a real SMTP server and the SMS file backend, retried with back-off while the provider is
down, and never carrying health data."""

from __future__ import annotations

import datetime
import logging
import socket
import stat
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from pli.audit.models import AuditEvent
from pli.sharing import notifications, services
from pli.sharing.models import Channel, PatientShare, ShareNotification
from pli.sharing.tasks import deliver_notification, periodic_jobs
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import (
    EMAIL,
    MOBILE,
    Patient,
    link_token,
    make_due,
    make_share,
    pdf_bytes,
    pending_document,
    run_tasks,
    share_input,
    sms_dir,
    sms_messages,
)

SECRET_NAME = "scintigraphie-thyroide-Durand.pdf"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def relay_down(settings: Any) -> None:
    """E-mail through SMTP to a loopback port where nothing listens."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()


def doctor() -> Any:
    organisation = make_organisation("Cabinet des Lilas")
    return make_user(organisation, first_name="Jeanne", last_name="Martin")


def test_notifications_are_queued_in_the_share_transaction(db: None) -> None:
    user = doctor()
    with transaction.atomic():
        share = services.create_share(user, share_input(), [pending_document()])
        # Before any commit: the notification rows and their jobs are already written.
        jobs = DBTaskResult.objects.filter(task_path=deliver_notification.module_path)
        notifications = set(share.notifications.values_list("pk", flat=True))
        # The link by e-mail only: the code will come by SMS, on the other channel.
        assert len(notifications) == 1 and share.notifications.get().channel == "email"
        assert {job.args_kwargs["args"][0] for job in jobs} == {str(pk) for pk in notifications}


def test_a_share_that_rolls_back_sends_nothing(db: None) -> None:
    user = doctor()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_share(user, share_input(), [pending_document()])
        raise RuntimeError("the transaction fails after the share was written")
    assert not PatientShare.objects.exists()
    assert not ShareNotification.objects.exists()
    assert not DBTaskResult.objects.filter(task_path=deliver_notification.module_path).exists()


def test_email_through_a_real_smtp_server_is_neutral(db: None, smtp_server: Any) -> None:
    user = doctor()
    share, token = make_share(
        user, documents=[pending_document(SECRET_NAME)], message="Hypothyroïdie confirmée", ins="284029912345678"
    )
    run_tasks()
    mails = smtp_server.wait_for(1)
    assert mails[0].recipients == [EMAIL]
    mail = mails[0]
    text = mail.body
    html = mail.message.get_body(preferencelist=("html",)).get_content()
    assert link_token(text) == token
    for part in (mail.subject, text, html):
        assert "Jeanne" in part and "Martin" in part
        for secret in (
            "Durand",
            "Élodie",
            "Elodie",
            "1984",
            "15/02",
            "scintigraphie",
            "thyro",
            "Hypothyro",
            "284029912345678",
        ):
            assert secret.lower() not in part.lower()
    assert "Cabinet des Lilas" in text
    assert "/p/" in text and "jamais" in text  # how to recognise a genuine message (French)
    assert mail.message["Message-ID"].endswith(f"@{settings.PLI_MAIL_DOMAIN}>")
    share.refresh_from_db()
    assert set(share.notifications.values_list("state", flat=True)) == {"sent"}
    assert AuditEvent.objects.filter(action="share.notification_sent", target_id=str(share.pk)).count() == 1


def test_sms_file_backend_writes_one_private_json_file_per_sms(db: None) -> None:
    _share, token = make_share(doctor(), documents=[pending_document(SECRET_NAME)], email=None)
    run_tasks()
    messages = sms_messages()
    assert len(messages) == 1
    assert messages[0]["to"] == MOBILE
    assert link_token(messages[0]["text"]) == token
    assert "Durand" not in messages[0]["text"] and "scintigraphie" not in messages[0]["text"]
    files = list(sms_dir().glob("*.json"))
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert not [p for p in sms_dir().iterdir() if p.name.startswith(".")]  # no temporary file left


def test_smtp_outage_is_retried_with_back_off_then_delivered(
    db: None, smtp_server: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    real_port = settings.EMAIL_PORT
    settings.EMAIL_PORT = free_port()  # nothing listens there: the relay is "down"
    share, token = make_share(doctor(), mobile=None)
    started = timezone.now()
    with caplog.at_level("WARNING", logger="pli.sharing.notifications"):
        run_tasks()
    notification = share.notifications.get()
    # Seen by an operator logging warnings only, at the first failure, not hours later.
    assert f"notification {notification.pk} failed (smtp:" in caplog.text
    assert notification.state == "pending" and notification.attempts == 1
    assert notification.last_error.startswith("smtp:")
    delay = notification.next_attempt_at - started
    assert datetime.timedelta(seconds=25) <= delay <= datetime.timedelta(seconds=40)
    waiting = DBTaskResult.objects.get(task_path=deliver_notification.module_path, status="READY")
    assert waiting.run_after > timezone.now()
    assert run_tasks() == 0  # not due yet

    make_due()
    run_tasks()
    notification.refresh_from_db()
    assert notification.attempts == 2
    assert notification.next_attempt_at - timezone.now() > datetime.timedelta(seconds=50)  # doubled
    failures = AuditEvent.objects.filter(action="share.notification_failed", target_id=str(share.pk))
    assert failures.count() == 2 and all(e.details["final"] is False for e in failures)

    settings.EMAIL_PORT = real_port  # the relay is back
    make_due()
    run_tasks()
    notification.refresh_from_db()
    assert notification.state == "sent" and notification.attempts == 3
    assert link_token(smtp_server.wait_for(1)[0].body) == token
    # Delivered: the rendered message (with the link) is shredded.
    assert notification.recipient is None and notification.text is None and notification.data_key_id is None


def web_client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("stage", "reply", "retried"),
    [
        ("mail", "530 5.7.0 Authentication required", True),  # the relay's set-up: fixed later
        ("mail", "553 5.7.1 Sender address rejected", True),
        ("rcpt", "450 4.2.1 Mailbox busy", True),
        ("rcpt", "550 5.1.1 No such user", False),  # this address will never take it
        ("rcpt", "552 5.2.2 Mailbox full", False),
        ("rcpt", "553 Mailbox name not allowed", False),
        ("rcpt", "554 5.7.1 <x@example.org>: Relay access denied", True),  # the relay's set-up
        ("rcpt", "550 5.7.1 Client does not have permissions to send as this sender", True),
    ],
)
def test_only_a_refusal_of_the_address_drops_an_email(
    db: None, smtp_server: Any, stage: str, reply: str, retried: bool
) -> None:
    setattr(smtp_server, f"refuse_{stage}", reply)
    share, token = make_share(doctor(), mobile=None)
    run_tasks()
    notification = share.notifications.get()
    assert notification.last_error == ("smtp:recipient_refused" if stage == "rcpt" else f"smtp:{reply[:3]}")
    assert notification.state == ("pending" if retried else "failed")
    # The practitioner sees whether the patient was told at all.
    page = web_client_for(share.created_by)
    listing = page.get("/shares/").content.decode()
    detail = page.get(f"/shares/{share.pk}").content.decode()
    assert ("share-undelivered" in listing) is (not retried) and ("share-undelivered" in detail) is (not retried)
    # Retried: told the patient has not been reached yet, as long as it lasts.
    assert ("share-delayed" in listing) is retried and ("share-delayed" in detail) is retried
    assert ("notification retardée" in listing) is retried and ("Pli réessaie" in detail) is retried
    if retried:
        setattr(smtp_server, f"refuse_{stage}", None)  # the operator fixed the relay
        make_due()
        run_tasks()
        notification.refresh_from_db()
        assert notification.state == "sent"
        assert link_token(smtp_server.wait_for(1)[0].body) == token
        assert "share-delayed" not in page.get("/shares/").content.decode()


@pytest.mark.parametrize("local", ['"x\x0bab:{marker}"', '"x\x1cRe:{marker}"'])
def test_an_address_no_email_can_carry_fails_for_good_without_repeating_it(
    db: None, smtp_server: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], local: str
) -> None:
    # An address Django's validator takes but the e-mail package cannot put in a header
    # (stored before the forms refused it): the error raised there repeats the address.
    # It used to crash the job, whose traceback the job row and the worker's log kept.
    caplog.set_level(logging.DEBUG)
    marker = f"Mkaddr{uuid.uuid4().hex[:10]}"
    share, _token = make_share(doctor(), email=local.format(marker=marker) + "@example.org", mobile=None)
    run_tasks()
    notification = share.notifications.get()
    assert (notification.state, notification.last_error) == ("failed", "smtp:bad_address")
    assert smtp_server.messages == []
    jobs = DBTaskResult.objects.filter(task_path=deliver_notification.module_path)
    assert [job.status for job in jobs] == ["SUCCESSFUL"]
    for job in jobs:
        assert marker not in f"{job.args_kwargs} {job.return_value} {job.exception_class_path} {job.traceback}"
    assert marker not in caplog.text + "".join(capfd.readouterr())


def test_a_delivery_that_crashes_keeps_no_value_from_the_error(
    db: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # A bug whose error repeats a value (as the e-mail package's errors repeat addresses,
    # or PostgreSQL's a row's key): the job row and the log get the error's type and where.
    caplog.set_level(logging.DEBUG)
    marker = f"Mkcrash{uuid.uuid4().hex[:10]}"
    share, _token = make_share(doctor(), email=None)

    def crash(notification_id: str, attempts: int | None = None) -> str:
        raise ValueError(f"cannot deliver to {marker}")

    monkeypatch.setattr(notifications, "deliver", crash)
    run_tasks()
    (job,) = DBTaskResult.objects.filter(task_path=deliver_notification.module_path)
    assert job.status == "FAILED" and job.exception_class_path == "pli.core.logging.JobCrashed"
    assert "builtins.ValueError at" in job.traceback and "test_notifications.py" in job.traceback
    assert marker not in f"{job.args_kwargs} {job.return_value} {job.traceback}"
    assert marker not in caplog.text + "".join(capfd.readouterr())
    assert share.notifications.get().state == "pending"  # queued again by the periodic job


def test_the_practitioner_is_never_blocked_by_a_provider_outage(db: None, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()
    settings.PLI_SMS_URL = (
        f"twilio://AC{'1' * 32}:secret@api.twilio.com?from=Pli&endpoint=http://127.0.0.1:{free_port()}"
    )
    user = doctor()
    client = Client()
    client.force_login(user)
    response = client.post(
        "/shares/new",
        {
            "patient_family_name": "Durand",
            "patient_given_name": "Élodie",
            "patient_birth_date": "15/02/1984",
            "patient_mobile": "06 12 34 56 78",
            "patient_email": EMAIL,
            "documents": SimpleUploadedFile("a.pdf", pdf_bytes(), "application/pdf"),
        },
    )
    assert response.status_code == 303
    run_tasks()
    assert set(ShareNotification.objects.values_list("state", flat=True)) == {"pending"}


def test_notification_of_a_revoked_share_is_cancelled(db: None) -> None:
    share, _token = make_share(doctor())
    services.revoke(share.created_by, share.pk)
    run_tasks()
    assert set(share.notifications.values_list("state", flat=True)) == {"cancelled"}
    assert sms_messages() == []


@pytest.mark.parametrize("retryable", [False, True], ids=["final", "retryable"])
def test_a_notification_cancelled_while_being_sent_stays_cancelled(
    db: None, monkeypatch: pytest.MonkeyPatch, retryable: bool
) -> None:
    """A newer code or a revocation lands while the provider is being tried, and the
    provider then refuses: no failure is shown for a message nobody wants any more."""
    share, _token = make_share(doctor(), email=None)
    link = share.notifications.get(kind="link")

    def refused_meanwhile(notification: ShareNotification) -> str:
        services.revoke(share.created_by, share.pk)
        raise notifications.DeliveryFailed("sms:refused", retryable=retryable)

    monkeypatch.setattr(notifications, "_send", refused_meanwhile)
    failures = AuditEvent.objects.filter(action="share.notification_failed").count()
    jobs = DBTaskResult.objects.count()
    assert notifications.deliver(link.pk) == "cancelled"
    link.refresh_from_db()
    assert (link.state, link.last_error, link.attempts) == ("cancelled", "cancelled", 0)
    assert AuditEvent.objects.filter(action="share.notification_failed").count() == failures
    assert DBTaskResult.objects.count() == jobs  # no further attempt queued


def test_a_code_not_delivered_in_time_is_abandoned(db: None, settings: Any) -> None:
    share, token = make_share(doctor(), email=None)
    run_tasks()
    settings.PLI_SMS_URL = (
        f"twilio://AC{'1' * 32}:secret@api.twilio.com?from=Pli&endpoint=http://127.0.0.1:{free_port()}"
    )
    Patient(token).birth_date()
    later = timezone.now() + datetime.timedelta(minutes=11)
    code_notification = share.notifications.get(kind="code")
    assert notifications.deliver(code_notification.pk, now=later) == "cancelled"


def test_retry_delays_grow_and_are_capped() -> None:
    delays = [notifications.retry_delay(n).total_seconds() for n in range(1, 12)]
    assert delays[:4] == [30, 60, 120, 240]
    assert max(delays) == 3600 and delays == sorted(delays)


def test_the_periodic_requeue_reads_no_job_when_nothing_is_stuck(db: None, django_assert_num_queries: Any) -> None:
    make_share(doctor(), email=None)  # its notification's job waits its turn: not stuck
    with django_assert_num_queries(1):
        assert notifications.requeue_stuck() == 0


def test_a_worker_that_died_leaves_nothing_behind(db: None) -> None:
    share, _token = make_share(doctor(), email=None)
    notification = share.notifications.get()
    # A worker claimed the job and died: its task row stays "running" forever.
    DBTaskResult.objects.filter(task_path=deliver_notification.module_path).update(status="RUNNING")
    ShareNotification.objects.filter(pk=notification.pk).update(
        claimed_until=timezone.now() - datetime.timedelta(minutes=1),
        next_attempt_at=timezone.now() - datetime.timedelta(minutes=10),
    )
    assert notifications.requeue_stuck() == 1
    run_tasks()
    notification.refresh_from_db()
    assert notification.state == "sent"
    assert len(sms_messages()) == 1


def test_the_worker_command_runs_jobs_and_starts_the_scheduler(transactional_db: None) -> None:
    from django.core.management import call_command

    from pli.sharing.tasks import periodic_jobs

    make_share(doctor(), email=None)
    call_command("worker", batch=True, verbosity=0)
    assert len(sms_messages()) == 1
    # The periodic job ran once and queued its next run.
    runs = DBTaskResult.objects.filter(task_path=periodic_jobs.module_path)
    assert runs.filter(status="SUCCESSFUL").count() == 1
    assert runs.get(status="READY").run_after > timezone.now()


def test_a_link_given_up_unsent_is_flagged_too(db: None) -> None:
    """A worker down past the notification's deadline: given up, never sent."""
    from pli.sharing import services

    share, _token = make_share(doctor(), mobile=None)
    share.notifications.update(state="cancelled", last_error="expired")
    assert services.undelivered([share.pk]) == {share.pk: "failed"}
    assert "share-undelivered" in web_client_for(share.created_by).get("/shares/").content.decode()
    share.notifications.update(state="sent")
    assert services.undelivered([share.pk]) == {}


def test_a_link_not_yet_delivered_is_flagged_only_once_an_attempt_failed(db: None) -> None:
    from pli.sharing import services

    share, _token = make_share(doctor())
    assert services.undelivered([share.pk]) == {}  # queued, not tried yet
    share.notifications.update(attempts=1, last_error="smtp:421")
    assert services.undelivered([share.pk]) == {share.pk: "delayed"}
    share.notifications.update(state="sent")
    assert services.undelivered([share.pk]) == {}  # the e-mail reached the patient


def test_new_notifications_and_codes_go_before_retries(db: None, settings: Any) -> None:
    """The database backend sorts a job due now after every overdue one: during an outage
    of a hung relay (20 s a try), retries due one after another kept new links and the
    patient's one-time codes waiting behind them."""
    relay_down(settings)
    stalled, _token = make_share(doctor(), mobile=None, email="other@example.org")
    run_tasks()
    make_due()  # its retry is overdue
    share, token = make_share(doctor(), email=None)
    assert run_tasks(limit=1) == 1
    assert [m["to"] for m in sms_messages()] == [MOBILE]  # the new link went first
    # A patient waiting at the screen for a code goes before a new link and a retry.
    make_share(doctor(), email=None, mobile="+33698765432")
    Patient(token).birth_date()
    make_due()
    assert run_tasks(limit=1) == 1
    assert share.notifications.get(kind="code").state == "sent"
    assert stalled.notifications.get().attempts == 1


def test_a_backlog_does_not_double_the_deliveries(db: None, settings: Any) -> None:
    """The periodic job re-queues a notification whose job a dead worker left behind; one
    whose job is merely waiting (a worker busy for longer than the claim) must not get a
    second job: both would try, and every retry after them, ignoring the back-off."""
    relay_down(settings)
    share, _token = make_share(doctor(), mobile=None)
    run_tasks()
    notification = share.notifications.get()
    assert notification.attempts == 1
    notifications.requeue_stuck(timezone.now() + datetime.timedelta(minutes=10))
    make_due()
    run_tasks()
    notification.refresh_from_db()
    assert notification.attempts == 2
    waiting = DBTaskResult.objects.filter(task_path=deliver_notification.module_path, status="READY")
    assert waiting.count() == 1
    # A job left over from an earlier attempt (queued twice by an older version) does nothing.
    deliver_notification.enqueue(str(notification.pk), 1)
    make_due()
    run_tasks()
    notification.refresh_from_db()
    assert notification.attempts == 3
    assert waiting.count() == 1


def test_a_hung_relay_holds_the_worker_for_one_try_not_one_per_email(
    db: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay that accepts connections and never answers held the worker for the whole
    timeout (20 s in production) on every e-mail in turn, and every SMS queued behind them
    waited. After one slow failure, e-mail is left alone for a minute: the next e-mails are
    not tried (a failed attempt, retried with the back-off) and the SMS goes out at once."""
    import time

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # connections complete in the kernel; nobody ever answers
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", hung.getsockname()[1]
        settings.EMAIL_TIMEOUT = 1
        monkeypatch.setattr(notifications, "SLOW_FAILURE_SECONDS", 0.5)
        first, _t = make_share(doctor(), mobile=None, email="a@example.org")
        second, _t = make_share(doctor(), mobile=None, email="b@example.org")
        texted, _t = make_share(doctor(), email=None)
        started = time.monotonic()
        run_tasks()
        elapsed = time.monotonic() - started
    assert elapsed < 1.9, elapsed  # one timeout, not two
    assert first.notifications.get().attempts == 1
    postponed = second.notifications.get()
    assert postponed.state == "pending" and postponed.attempts == 1 and postponed.last_error == "smtp:paused"
    assert texted.notifications.get().state == "sent"
    # Both e-mails have their next try waiting.
    waiting = DBTaskResult.objects.filter(task_path=deliver_notification.module_path, status="READY")
    assert {job.args_kwargs["args"][0] for job in waiting} == {
        str(first.notifications.get().pk),
        str(postponed.pk),
    }


def test_a_paused_channel_still_carries_one_time_codes(db: None) -> None:
    """A patient waits at the screen for the code: after a slow failure of the SMS
    provider, links and reminders wait a minute, the code is tried at once."""
    import time

    from sharing.helpers import Patient, last_code

    share, token = make_share(doctor(), email=None)
    run_tasks()
    notifications._paused_until[Channel.SMS] = time.monotonic() + 60
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    run_tasks()
    code = share.notifications.get(kind="code")
    assert code.state == "sent" and code.last_error == ""
    assert patient.code(last_code()).status_code == 303


def test_job_rows_are_pruned_once_old_whatever_the_job_and_when_left_running(db: None) -> None:
    """Only finished notification and periodic rows were pruned: the hourly clean-up's
    rows, and those a killed worker left "running", stayed for ever."""
    from pli.messaging.tasks import cleanup_orphan_blobs
    from pli.sharing.tasks import KEEP_FINISHED, periodic_jobs, prune_finished_jobs

    now = timezone.now()
    old, recent = now - KEEP_FINISHED - datetime.timedelta(hours=1), now - datetime.timedelta(hours=1)

    def job(task: Any, status: str, at: datetime.datetime, *args: Any) -> str:
        row = DBTaskResult.objects.get(pk=task.enqueue(*args).id)
        row.status, row.started_at = status, at
        row.finished_at = at if status in ("SUCCESSFUL", "FAILED") else None
        row.save()
        return str(row.pk)

    DBTaskResult.objects.all().delete()
    gone = [
        job(cleanup_orphan_blobs, "SUCCESSFUL", old),
        job(periodic_jobs, "FAILED", old),
        job(deliver_notification, "RUNNING", old, "00000000-0000-0000-0000-000000000000", 0),  # worker killed
    ]
    kept = [
        job(cleanup_orphan_blobs, "SUCCESSFUL", recent),
        job(periodic_jobs, "RUNNING", recent),
        job(periodic_jobs, "READY", old),  # waiting: never pruned
    ]
    assert prune_finished_jobs(now) == len(gone)
    assert sorted(str(pk) for pk in DBTaskResult.objects.values_list("pk", flat=True)) == sorted(kept)


def test_the_code_email_does_not_say_the_birth_date_still_protects_the_documents(db: None) -> None:
    """A code is sent only once the birth date has been given: to someone who did not ask
    for it, what still stands between another person and the documents is the code."""
    share, _token = make_share(mobile=None)
    text = notifications.render_code(share, "123456", Channel.EMAIL, 10).text
    assert "sans votre date de naissance" not in text
    assert "Sans ce code, personne ne peut ouvrir vos documents." in text
    # Not « ignore this message »: someone who has the link has just given the birth date.
    assert "ignorez" not in text
    assert "prévenez la personne qui vous a envoyé le lien" in text


def test_the_worker_waits_for_a_database_that_went_away(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL restart made django-tasks' loop raise and `pli worker` exit: nothing was
    delivered until someone started it again. It now waits and carries on."""
    from django.core.management import call_command
    from django.db import OperationalError
    from django_tasks_db.management.commands import db_worker

    from pli.sharing.management.commands import worker

    runs: list[bool] = []

    def run(self: Any) -> None:
        runs.append(self.startup_delay)
        if len(runs) < 3:
            raise OperationalError('connection failed: connection to server at "db" failed: Connection refused')

    slept: list[float] = []
    monkeypatch.setattr(db_worker.Worker, "run", run)
    monkeypatch.setattr(worker.time, "sleep", slept.append)
    with caplog.at_level(logging.WARNING, logger="pli.sharing.worker"):
        call_command("worker", verbosity=0)
    assert runs == [True, False, False]
    assert slept == [2.0, 5.0]
    assert [r.getMessage() for r in caplog.records if r.name == "pli.sharing.worker"] == [
        'worker: database unreachable (connection failed: connection to server at "db" failed: '
        f"Connection refused): trying again in {delay:g} s"
        for delay in (2.0, 5.0)
    ]

    # A batch run (cron, tests) still fails at once.
    runs.clear()
    with pytest.raises(OperationalError):
        call_command("worker", batch=True, verbosity=0)
    assert runs == [False]


def test_a_patient_reading_in_english_gets_the_code_in_english(db: None, smtp_server: Any) -> None:
    """The link goes out in French (nothing says which language the patient reads), but
    the code is asked for from the patient pages: a patient who switched them to English
    got the code, with its warning never to give it to anyone, in French."""
    _share, token = make_share()
    patient = Patient(token)
    patient.client.cookies["django_language"] = "en"
    assert patient.birth_date().status_code == 303
    run_tasks()
    code_sms = [m["text"] for m in sms_messages() if "/p/" not in m["text"]]
    assert len(code_sms) == 1 and "Never give it to anyone" in code_sms[0]
    assert patient.new_code("email").status_code == 303
    run_tasks()
    codes = [mail for mail in smtp_server.wait_for(2) if "/p/" not in mail.body]
    assert codes[0].subject == "Your Pli code" and "Never give it to anyone" in codes[0].body
    # Someone reading in French still gets French.
    _share, token = make_share(email="autre@example.org", mobile=None)
    Patient(token).birth_date()
    run_tasks()
    assert any("Votre code Pli" in mail.body for mail in smtp_server.wait_for(4)[2:])


def test_the_code_goes_by_email_when_the_mobile_number_was_refused_for_good(
    db: None, smtp_server: Any, settings: Any
) -> None:
    """The code SMS failed for good (the provider refused the number): the patient, asking
    again, was told the next code was on its way by SMS, to the number that cannot receive
    one. The code now goes by e-mail, unless the patient asks for SMS."""
    share, token = make_share()
    run_tasks()  # the link, by e-mail
    patient = Patient(token)
    assert patient.birth_date()["Location"].endswith("?sent=sms")
    settings.PLI_SMS_ALLOWED_REGIONS = ("BE",)  # the number is now refused for good
    run_tasks()
    assert share.notifications.get(channel=Channel.SMS).state == ShareNotification.State.FAILED
    response = patient.birth_date()
    assert response.status_code == 303 and response["Location"].endswith("?sent=email")
    run_tasks()
    assert any("Votre code Pli" in mail.body for mail in smtp_server.wait_for(2))
    # A share whose SMS went out still sends its code by SMS.
    settings.PLI_SMS_ALLOWED_REGIONS = ("FR",)
    _share, token = make_share()
    run_tasks()
    assert Patient(token).birth_date()["Location"].endswith("?sent=sms")


def test_the_worker_plans_the_periodic_jobs_again_once_the_database_is_back(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database lost while a periodic run or an hourly clean-up was starting (planning
    its successor failed with everything else) left no run waiting: the worker reconnected
    and delivered notifications, but reminders, expiry, the re-queueing of stuck deliveries
    and the orphan blob clean-up stopped until it was restarted."""
    from django.core.management import call_command
    from django.db import OperationalError
    from django_tasks_db.management.commands import db_worker

    from pli.messaging.tasks import cleanup_orphan_blobs
    from pli.sharing.management.commands import worker

    chains = DBTaskResult.objects.filter(
        task_path__in=[periodic_jobs.module_path, cleanup_orphan_blobs.module_path], status="READY"
    )
    waiting: list[set[str]] = []

    def run(self: Any) -> None:
        waiting.append(set(chains.values_list("task_path", flat=True)))
        if len(waiting) == 1:
            chains.delete()  # the runs that would have planned them died with the connection
            raise OperationalError("consuming input failed: server closed the connection unexpectedly")

    monkeypatch.setattr(db_worker.Worker, "run", run)
    monkeypatch.setattr(worker.time, "sleep", lambda seconds: None)
    call_command("worker", verbosity=0)
    both = {periodic_jobs.module_path, cleanup_orphan_blobs.module_path}
    assert waiting == [both, both]


@pytest.mark.parametrize(
    ("reply", "category", "advice"),
    [
        ("550 5.1.1 No such user", "address_refused", "a refusé l\u2019adresse"),
        ("450 4.2.1 Mailbox busy", "provider_unavailable", "est resté indisponible"),
    ],
)
def test_a_failed_email_says_why_and_what_to_do(
    db: None, smtp_server: Any, settings: Any, reply: str, category: str, advice: str
) -> None:
    """The page said "notification failed" and nothing more: the GP could not tell a
    mistyped address from an outage, nor what to do about it."""
    smtp_server.refuse_rcpt = reply
    settings.LANGUAGE_CODE = "fr"
    share, _token = make_share(doctor(), mobile=None, email="durand.elodie@exemple.fr")
    if category == "provider_unavailable":
        # Retried until the link expires, then given up.
        share.notifications.update(give_up_at=timezone.now() + datetime.timedelta(seconds=10))
    run_tasks()
    assert share.notifications.get().state == "failed"
    page = web_client_for(share.created_by).get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr")
    text = page.content.decode()
    assert f'data-failure="{category}"' in text and advice in text
    # The history names the reason of each failure.
    assert ("adresse refusée" in text) is (category == "address_refused")
    # Recorded as a category, never with the address.
    failed = AuditEvent.objects.filter(action="share.notification_failed")
    assert {e.details["category"] for e in failed} == {category}
    assert "durand.elodie" not in str([e.details for e in failed])
    # The API says it too, beside the existing fields.
    from pli.api.services import create_token

    _api_token, raw = create_token(share.created_by, "test")
    events = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get(f"/api/v1/shares/{share.pk}").json()["events"]
    failures = [e for e in events if e["type"] == "notification_failed"]
    assert failures[-1]["reason"] == category and failures[-1]["final"] is True
    assert all(e["reason"] is None for e in events if e["type"] != "notification_failed")


def test_failure_categories_of_recorded_reasons() -> None:
    category = notifications.failure_category
    assert category("number:region", False) == "number_refused"
    assert category("sms:http_400:21211", False) == "number_refused"
    assert category("sms:http_400:21606", False) == "message_refused"  # Pli's sender, not the number
    assert category("sms:http_400", False) == "message_refused"
    assert category("smtp:bad_address", False) == "address_refused"
    assert category("smtp:recipient_refused", False) == "address_refused"
    assert category("smtp:recipient_refused", True) == "provider_unavailable"  # relay access denied, 4xx
    assert category("smtp:554", False) == "message_refused"
    assert category("sms:unreachable:URLError", True) == "provider_unavailable"
    # Events recorded before categories were kept are read from their reason.
    assert notifications.recorded_category({"reason": "smtp:recipient_refused", "final": True}) == "address_refused"
    assert notifications.recorded_category({"reason": "smtp:recipient_refused", "final": False}) == (
        "provider_unavailable"
    )


def test_a_notification_cancelled_as_the_worker_loads_it_is_not_a_crash(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The share is revoked (the notification cancelled, its data key deleted) between the
    worker's loading of the notification and its reading of the payload: the job ends as
    cancelled, it does not crash on the shredded content, and nothing is sent."""
    share, _token = make_share(doctor(), email=None)
    link = share.notifications.get(kind="link")
    real = notifications._still_wanted

    def revoked_meanwhile(notification: ShareNotification, now: datetime.datetime) -> str:
        services.revoke(share.created_by, share.pk)
        return real(notification, now)

    monkeypatch.setattr(notifications, "_still_wanted", revoked_meanwhile)
    assert notifications.deliver(link.pk) == "cancelled"
    link.refresh_from_db()
    assert (link.state, link.attempts, link.data_key_id) == ("cancelled", 0, None)
    assert sms_messages() == []
    assert not AuditEvent.objects.filter(action__in=["share.notification_sent", "share.notification_failed"]).exists()
