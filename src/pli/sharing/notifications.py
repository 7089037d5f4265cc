"""Notifications to the patient: rendered, queued, delivered, retried.

A notification is a row written in the same transaction as the decision that needs it (a
new share, a code, a reminder), with its delivery job (a django-tasks database row)
enqueued in that same transaction: if the transaction commits, the notification will be
delivered; if it rolls back, nothing is sent. The rendered message is sealed in the row
(it holds the link or the code) and shredded once handed to the provider.

Delivery runs in the worker (:func:`deliver`), outside any transaction while it talks to
the provider. A failure that may pass (relay down, 429, 5xx) is recorded, on the
notification and in the share's audit events, and retried later by a new job
(``run_after``), doubling the delay up to an hour, until the link or code expires.
"""

from __future__ import annotations

import datetime
import logging
import re
import smtplib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone, translation

from pli.audit import services as audit
from pli.core.encryption import ContentShredded
from pli.core.models import DataKey
from pli.crypto import new_data_key
from pli.notify import sms
from pli.notify.email import message_id, writable
from pli.sharing.models import Channel, PatientShare, ShareNotification, Status

logger = logging.getLogger(__name__)

# Retries: 30 s, 1 min, 2 min… capped at one hour, until the link or code is no longer valid.
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
# A worker owns a delivery this long; past it (a crashed worker) another may take it over.
CLAIM = datetime.timedelta(minutes=5)
# Job priorities (higher first). The database backend otherwise takes overdue jobs first,
# and a job queued for "now" sorts after all of them: during an outage of a relay that
# hangs (20 s a try), retries falling due one after another kept new links, and the codes
# patients wait for at the screen (valid 10 minutes), queued behind them.
PRIORITY_CODE = 20
PRIORITY_FIRST_ATTEMPT = 10
PRIORITY_RETRY = 0
# A relay or provider that fails only at the timeout (it takes the connection and never
# answers) held the worker that long (20 s for SMTP, 15 s for SMS) on each message of its
# channel in turn, and everything queued behind them waited, the other channel included.
# After such a failure, this worker leaves the channel alone for a minute: its messages
# are not tried meanwhile but fail at once (reason "smtp:paused" or "sms:paused") and are
# retried with the usual back-off, which also keeps them from churning through the queue.
# One-time codes are the exception: they are always tried (see deliver).
SLOW_FAILURE_SECONDS = 5.0
PAUSE_AFTER_SLOW_FAILURE = 60.0
_paused_until: dict[str, float] = {}  # channel -> time.monotonic() deadline, in this process


def link_for(token: str) -> str:
    return f"{settings.PUBLIC_URL}/p/{token}"


def notification_context(share: PatientShare, **extra: Any) -> dict[str, Any]:
    return {
        "sender_name": share.sender_name,
        "organisation": share.sender_organisation,
        "public_url": settings.PUBLIC_URL,
        "host": urlsplit(settings.PUBLIC_URL).hostname or "",
        "expires_at": share.expires_at,
        "has_mobile": bool(share.patient_mobile),
        "message_only": share.message_only,
        **extra,
    }


def render(template: str, context: dict[str, Any], language: str | None = None) -> str:
    # Patients get French unless they chose (``language``): the practitioner's interface
    # language says nothing about theirs.
    with translation.override(language or settings.LANGUAGE_CODE):
        return render_to_string(template, context).strip()


@dataclass(frozen=True)
class Rendered:
    """A message ready to queue. Rendering happens before the transaction that queues it,
    so that the (write-locking) transaction stays short."""

    channel: str
    recipient: str = field(repr=False)
    text: str = field(repr=False)
    subject: str | None = field(default=None, repr=False)
    html: str | None = field(default=None, repr=False)


def render_link(
    share: PatientShare, token: str, kind: str, *, by_sms: bool = False, code_by_email: bool = False
) -> list[Rendered]:
    """The link's e-mail, or its SMS when the patient has no address (``share`` may be
    unsaved: only its fields are read). Never both: the one-time code goes by SMS when there
    is a mobile, and the link and the code must come on two channels, so that whoever holds
    the patient's phone (often shared in a family) does not get both. ``by_sms``: by SMS
    all the same when there is a mobile (the address was refused for good).
    ``code_by_email``: the e-mail says the code comes by e-mail though there is a mobile
    (an SMS to it failed for good)."""
    context = notification_context(share, link=link_for(token), reminder=kind == ShareNotification.Kind.REMINDER)
    if code_by_email:
        context["has_mobile"] = False
    messages: list[Rendered] = []
    if share.patient_email and not (by_sms and share.patient_mobile):
        messages.append(
            Rendered(
                channel=Channel.EMAIL,
                recipient=share.patient_email,
                subject=" ".join(render("sharing/notify/link_subject.txt", context).split()),
                text=render("sharing/notify/link_email.txt", context),
                html=render("sharing/notify/link_email.html", context),
            )
        )
    elif share.patient_mobile:
        # The names in the GSM alphabet where they can be (only they: the link must stay
        # exactly as it is): one "ô" or curly apostrophe made the whole SMS UCS-2, twice the segments.
        names = {"sender_name": sms.to_gsm(share.sender_name), "organisation": sms.to_gsm(share.sender_organisation)}
        messages.append(
            Rendered(
                channel=Channel.SMS,
                recipient=share.patient_mobile,
                text=sms.plain_spaces(render("sharing/notify/link_sms.txt", {**context, **names})),
            )
        )
    return messages


def render_code(share: PatientShare, code: str, channel: str, minutes: int) -> Rendered:
    """A code is asked for from the patient pages: it goes out in the language they are
    shown in (the active one), the language switch included."""
    context = notification_context(share, code=code, minutes=minutes)
    language = translation.get_language()
    if channel == Channel.SMS:
        text = sms.plain_spaces(render("sharing/notify/code_sms.txt", context, language))
        return Rendered(channel, share.patient_mobile or "", text)
    return Rendered(
        channel,
        share.patient_email or "",
        render("sharing/notify/code_email.txt", context, language),
        subject=" ".join(render("sharing/notify/code_subject.txt", context, language).split()),
    )


def queue(
    share: PatientShare, kind: str, message: Rendered, now: datetime.datetime, give_up_at: datetime.datetime
) -> ShareNotification:
    """Inside the caller's transaction: the notification row, sealed, and its delivery job."""
    notification = _notification(share, kind, message, now, give_up_at)
    notification.save(force_insert=True)
    enqueue_delivery(notification)
    return notification


def _notification(
    share: PatientShare, kind: str, message: Rendered, now: datetime.datetime, give_up_at: datetime.datetime
) -> ShareNotification:
    notification = ShareNotification(
        share=share, kind=kind, channel=message.channel, created_at=now, next_attempt_at=now, give_up_at=give_up_at
    )
    notification.recipient = message.recipient
    notification.subject = message.subject
    notification.text = message.text
    notification.html = message.html
    return notification


def prepare(
    share: PatientShare, kind: str, messages: Sequence[Rendered], now: datetime.datetime
) -> list[ShareNotification]:
    """Unsaved, sealed notification rows for ``messages``, each with an unsaved data key
    (``data_key``), for a caller inserting them in bulk; then :func:`enqueue_delivery`."""
    prepared = []
    for message in messages:
        notification = _notification(share, kind, message, now, share.expires_at)
        notification.adopt_key(new_data_key())  # sealed at insert time, with this key
        prepared.append(notification)
    return prepared


def enqueue_delivery(notification: ShareNotification, *, run_after: datetime.datetime | None = None) -> None:
    """Queue the job that makes the notification's next attempt. The job carries the
    number of attempts made so far: a job left over from an earlier attempt finds another
    number and does nothing, so a notification never has two attempts in flight."""
    from pli.sharing.tasks import deliver_notification

    if notification.kind == ShareNotification.Kind.CODE:
        priority = PRIORITY_CODE
    elif notification.attempts == 0:
        priority = PRIORITY_FIRST_ATTEMPT
    else:
        priority = PRIORITY_RETRY
    deliver_notification.using(priority=priority, run_after=run_after).enqueue(
        str(notification.pk), notification.attempts
    )


def queue_link(
    share: PatientShare,
    token: str,
    kind: str,
    now: datetime.datetime,
    rendered: Sequence[Rendered] | None = None,
) -> list[str]:
    """Queue the link to every contact of the share; return the channels used."""
    messages = render_link(share, token, kind) if rendered is None else rendered
    for message in messages:
        queue(share, kind, message, now, share.expires_at)
    return [message.channel for message in messages]


# Why a notification failed, in words a practitioner can act on (the share page, the API's
# events): a category of the reason, never the address, number or text.
ADDRESS_REFUSED = "address_refused"  # the patient's mail server refused the address
NUMBER_REFUSED = "number_refused"  # the number is not one Pli or the SMS provider can text
MESSAGE_REFUSED = "message_refused"  # refused for good, but not for the patient's details
PROVIDER_UNAVAILABLE = "provider_unavailable"  # no answer, an outage, a refusal for now
FAILURE_CATEGORIES = (ADDRESS_REFUSED, NUMBER_REFUSED, MESSAGE_REFUSED, PROVIDER_UNAVAILABLE)
# The reasons (DeliveryFailed.reason) of an e-mail refused for its address.
ADDRESS_REFUSED_REASONS = ("smtp:bad_address", "smtp:recipient_refused")


def failure_category(reason: str, retryable: bool) -> str:
    """The category of a failure's ``reason`` (DeliveryFailed.reason); ``retryable`` is
    whether the provider's answer allowed trying again (a notification given up after
    retrying until its deadline failed for want of a provider, not because of its address)."""
    if retryable:
        return PROVIDER_UNAVAILABLE
    prefix, _sep, rest = reason.partition(":")
    if prefix == "number" or (prefix == "sms" and sms.refuses_number(rest)):
        return NUMBER_REFUSED
    if reason in ADDRESS_REFUSED_REASONS:
        return ADDRESS_REFUSED
    return MESSAGE_REFUSED


def recorded_category(details: dict[str, Any]) -> str:
    """The category of a ``share.notification_failed`` event's details; events recorded
    before categories were kept get theirs from their reason."""
    category = details.get("category")
    if category in FAILURE_CATEGORIES:
        return str(category)
    return failure_category(str(details.get("reason") or ""), not details.get("final"))


class DeliveryFailed(Exception):
    def __init__(self, reason: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:64]
        self.retryable = retryable
        self.retry_after = retry_after


def _send(notification: ShareNotification) -> str:
    if notification.channel == Channel.SMS:
        try:
            return sms.send_sms(notification.recipient or "", notification.text or "", str(notification.pk))
        except sms.InvalidPhoneNumber as exc:
            raise DeliveryFailed(f"number:{exc.code}", retryable=False) from None
        except sms.SmsError as exc:
            raise DeliveryFailed(f"sms:{exc.reason}", retryable=exc.retryable, retry_after=exc.retry_after) from None
        except OSError as exc:  # the file backend's folder (development)
            raise DeliveryFailed(f"sms:{type(exc).__name__}", retryable=True) from None
    message = EmailMultiAlternatives(
        subject=notification.subject or "",
        body=notification.text or "",
        to=[notification.recipient or ""],
        headers={"Auto-Submitted": "auto-generated", "Message-ID": message_id()},
    )
    if notification.html:
        message.attach_alternative(notification.html, "text/html")
    # Written out before any connection: an address the e-mail package cannot put in a
    # header (one stored before such addresses were refused) fails for good here, rather
    # than as a crash whose error repeats the address.
    if not writable(message):
        raise DeliveryFailed("smtp:bad_address", retryable=False)
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        final = all(_address_refused_for_good(code, text) for code, text in exc.recipients.values())
        raise DeliveryFailed("smtp:recipient_refused", retryable=not final) from None
    except smtplib.SMTPDataError as exc:
        # The message itself refused (5xx): sending it again would be refused again.
        raise DeliveryFailed(f"smtp:{exc.smtp_code}", retryable=exc.smtp_code < 500) from None
    except smtplib.SMTPResponseException as exc:
        # Refused before the message was even offered (authentication 530/535, the sender
        # address, the greeting): the relay's set-up or Pli's, which an operator fixes. Kept
        # and retried until the notification expires, rather than dropped for good.
        raise DeliveryFailed(f"smtp:{exc.smtp_code}", retryable=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"smtp:{type(exc).__name__}", retryable=True) from None
    return ""


_ENHANCED_CODE = re.compile(rb"\s*([245])\.(\d{1,3})\.\d{1,3}\b")


def _address_refused_for_good(code: int, text: bytes | str) -> bool:
    """Whether a refusal at RCPT TO is about the address itself (RFC 3463: 5.1.x, a bad or
    unknown address; 5.2.x, the mailbox), rather than about Pli (5.7.x: "relay access
    denied", "not allowed to send as", which an operator fixes) or a 4xx (try later)."""
    if code < 500:
        return False
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    enhanced = _ENHANCED_CODE.match(raw)
    if enhanced:
        return enhanced.group(1) == b"5" and enhanced.group(2) in (b"1", b"2")
    # No enhanced code: 550 "mailbox unavailable", 551, 553 "name not allowed" are about the
    # address; 554 "transaction failed" (often a relay refusal) and others are retried.
    return code in (550, 551, 552, 553)


def retry_delay(attempts: int, asked: float | None = None) -> datetime.timedelta:
    """The wait before the next attempt; at least what the provider ``asked`` for
    (Retry-After, in seconds), never more than the cap."""
    seconds = min(MAX_RETRY_SECONDS, max(FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1), asked or 0))
    return datetime.timedelta(seconds=seconds)


def _still_wanted(notification: ShareNotification, now: datetime.datetime) -> str:
    """Empty if the notification should still go out, else the reason to drop it."""
    share = notification.share
    if now >= notification.give_up_at:
        return "expired"
    if share.status in (Status.REVOKED, Status.EXPIRED) or share.expires_at <= now:
        return "share_ended"
    if notification.kind == ShareNotification.Kind.REMINDER and share.opened_at is not None:
        # The reminder is for a share not opened; held up by an outage, it may find the
        # patient has opened the share since.
        return "share_opened"
    return ""


def deliver(
    notification_id: uuid.UUID | str, *, now: datetime.datetime | None = None, attempts: int | None = None
) -> str:
    """Try to send one notification now; return its state afterwards.

    Runs in the worker. The provider is called outside any transaction (a slow SMTP server
    must not hold a database lock); a short claim keeps a second worker away meanwhile.
    ``attempts`` is the count the job was queued for (see :func:`enqueue_delivery`); a job
    of an earlier attempt is skipped (jobs queued before it existed carry none).
    """
    now = now or timezone.now()
    candidates = ShareNotification.objects.filter(pk=notification_id, state=ShareNotification.State.PENDING)
    if attempts is not None:
        candidates = candidates.filter(attempts=attempts)
    claimed = candidates.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)).update(
        claimed_until=now + CLAIM
    )
    if not claimed:
        return "skipped"
    notification = ShareNotification.objects.select_related("share").get(pk=notification_id)
    reason = _still_wanted(notification, now)
    if reason:
        return _finish(
            notification, ShareNotification.State.CANCELLED, now, attempts=notification.attempts, reason=reason
        )
    try:
        # The payload's key read now, before anything is tried: a cancellation (a
        # revocation, a newer code) committed since the claim has closed the notification
        # and deleted its key; it is no longer wanted.
        if notification.state != ShareNotification.State.PENDING or notification.data_key_id is None:
            raise ContentShredded(f"notification {notification.pk} closed")
        notification.data_encryption_key()
    except ContentShredded:
        return ShareNotification.State.CANCELLED
    attempts = notification.attempts + 1
    started = time.monotonic()
    try:
        # A one-time code is tried all the same: the patient waits for it at the screen,
        # and it is the only job of the channel worth a timeout.
        paused = _paused_until.get(notification.channel, 0.0) > started
        if paused and notification.kind != ShareNotification.Kind.CODE:
            prefix = "sms" if notification.channel == Channel.SMS else "smtp"
            raise DeliveryFailed(f"{prefix}:paused", retryable=True)
        provider_id = _send(notification)
    except DeliveryFailed as exc:
        if exc.retryable and time.monotonic() - started >= SLOW_FAILURE_SECONDS:
            _paused_until[notification.channel] = time.monotonic() + PAUSE_AFTER_SLOW_FAILURE
        next_at = now + retry_delay(attempts, exc.retry_after)
        if not exc.retryable or next_at >= notification.give_up_at:
            logger.error("notification %s failed for good: %s", notification.pk, exc.reason)
            return _finish(
                notification,
                ShareNotification.State.FAILED,
                now,
                attempts=attempts,
                reason=exc.reason,
                category=failure_category(exc.reason, exc.retryable),
            )
        # A warning: with PLI_LOG_LEVEL=WARNING, a relay or provider down showed nothing
        # until the notifications failed for good, hours later.
        logger.warning(
            "notification %s failed (%s); attempt %d, next at %s", notification.pk, exc.reason, attempts, next_at
        )
        return _retry_later(notification, attempts, next_at, exc.reason)
    _paused_until.pop(notification.channel, None)
    return _finish(notification, ShareNotification.State.SENT, now, attempts=attempts, provider_id=provider_id)


def _finish(
    notification: ShareNotification,
    state: str,
    now: datetime.datetime,
    *,
    attempts: int,
    reason: str = "",
    category: str = "",
    provider_id: str = "",
) -> str:
    sent = state == ShareNotification.State.SENT
    rows = ShareNotification.objects.filter(pk=notification.pk)
    if not sent:
        # Cancelled while the provider was being tried (a newer code, a revocation): it stays
        # cancelled. A failure would show the practitioner a problem with a message nobody
        # wants any more. One that went out is recorded as sent all the same: it did.
        rows = rows.filter(state=ShareNotification.State.PENDING)
    with transaction.atomic():
        # Locked until COMMIT: a cancellation (a revocation, a newer code) committing between
        # this check and the update would otherwise be followed by a failure recorded for a
        # notification that is no longer wanted. Taken before the audit event, as every lock.
        locked = list(rows.select_for_update(of=("self",), no_key=True).values_list("provider_id", "last_error"))
        if not locked:
            return ShareNotification.State.CANCELLED
        # An undelivered report that came before this (see record_delivery_report).
        reported = sent and locked[0][0] == provider_id[:64] != "" and locked[0][1].startswith(UNDELIVERED)
        # The payload (link, code) is no longer needed: shred it with its data key.
        close(
            rows,
            state=state,
            attempts=attempts,
            sent_at=now if sent else None,
            last_error=reason,
            provider_id=provider_id[:64],
        )
        if state != ShareNotification.State.CANCELLED:
            details: dict[str, Any] = {
                "channel": notification.channel,
                "kind": notification.kind,
                "attempt": attempts,
                "notification": str(notification.pk),
            }
            if not sent:
                details.update(reason=reason, category=category or failure_category(reason, False), final=True)
            audit.record(
                "share.notification_sent" if sent else "share.notification_failed",
                target=("sharing.patientshare", str(notification.share_id)),
                outcome=audit.SUCCESS if sent else audit.FAILURE,
                details=details,
            )
        if reported:
            _undelivered(notification, locked[0][1], attempts)
            return ShareNotification.State.FAILED
    return state


def _retry_later(notification: ShareNotification, attempts: int, next_at: datetime.datetime, reason: str) -> str:
    with transaction.atomic():
        updated = ShareNotification.objects.filter(pk=notification.pk, state=ShareNotification.State.PENDING).update(
            attempts=attempts, next_attempt_at=next_at, claimed_until=None, last_error=reason
        )
        if not updated:  # cancelled meanwhile: nothing more to try
            return ShareNotification.State.CANCELLED
        notification.attempts = attempts
        enqueue_delivery(notification, run_after=next_at)
        audit.record(
            "share.notification_failed",
            target=("sharing.patientshare", str(notification.share_id)),
            outcome=audit.FAILURE,
            details={
                "channel": notification.channel,
                "kind": notification.kind,
                "attempt": attempts,
                "notification": str(notification.pk),
                "reason": reason,
                "category": PROVIDER_UNAVAILABLE,
                "final": False,
            },
        )
    return ShareNotification.State.PENDING


# What a delivery report's status means (Twilio's MessageStatus); the others (queued,
# sending, sent, accepted…) are steps on the way and change nothing here.
REPORT_DELIVERED = frozenset({"delivered", "read"})
REPORT_UNDELIVERED = frozenset({"undelivered", "failed"})


def report_category(reason: str) -> str:
    """The failure category of an SMS the provider could not deliver after accepting it
    (``reason`` like ``sms:undelivered:30005``)."""
    rest = reason.removeprefix("sms:")
    if sms.refuses_number(rest):
        return NUMBER_REFUSED
    if sms.blocks_message(rest):
        return MESSAGE_REFUSED
    return PROVIDER_UNAVAILABLE


UNDELIVERED = "sms:undelivered"


def record_delivery_report(
    provider_id: str,
    status: str,
    error_code: str = "",
    now: datetime.datetime | None = None,
    notification_id: uuid.UUID | None = None,
) -> str:
    """Record what the SMS provider reports about a message it accepted: ``delivered``
    (the patient's phone has it) or ``undelivered`` (it never will: the notification then
    fails for good, as if refused at once, so that the practitioner is told and the next
    code goes by e-mail). Returns what was done: ``delivered``, ``failed``, ``ignored``
    (a step on the way, a report already recorded, or one that comes too late) or
    ``unknown`` (no such message: another instance's, or a share since deleted).

    Reports may come more than once and out of order: a delivery is recorded once, and a
    failure reported after a delivery is ignored (the phone had it).

    ``notification_id`` (named by the report's URL, see sms.TwilioBackend.callback_url)
    finds a report that comes before the worker has recorded the message's id, between
    the provider's answer and its own commit: the notification is still pending. A delivery
    is then recorded at once; a failure is kept on it (``last_error``) for the worker to
    record once the notification is sent (_finish)."""
    now = now or timezone.now()
    if status not in REPORT_DELIVERED | REPORT_UNDELIVERED:
        return "ignored"
    if not provider_id:
        return "unknown"
    rows = ShareNotification.objects.filter(channel=Channel.SMS, provider_id=provider_id)
    if notification_id is not None:
        rows = ShareNotification.objects.filter(
            Q(provider_id=provider_id) | Q(pk=notification_id, provider_id="", state=ShareNotification.State.PENDING),
            channel=Channel.SMS,
        )
    with transaction.atomic():
        # Locked before the audit event, as every lock (see _finish).
        found = list(
            rows.select_for_update(of=("self",), no_key=True).only(
                "pk", "share_id", "kind", "state", "delivered_at", "attempts", "last_error"
            )
        )
        if not found:
            return "unknown"
        notification = found[0]
        pending = notification.state == ShareNotification.State.PENDING
        if not (pending or notification.state == ShareNotification.State.SENT) or notification.delivered_at:
            return "ignored"
        details: dict[str, Any] = {
            "channel": Channel.SMS,
            "kind": notification.kind,
            "notification": str(notification.pk),
        }
        target = ("sharing.patientshare", str(notification.share_id))
        if status in REPORT_DELIVERED:
            ShareNotification.objects.filter(pk=notification.pk).update(delivered_at=now)
            audit.record("share.notification_delivered", target=target, details=details)
            return "delivered"
        code = error_code if error_code.isdigit() and len(error_code) <= 8 else ""
        reason = f"{UNDELIVERED}:{code}" if code else UNDELIVERED
        if pending:
            # The worker's answer from the provider is not recorded yet: kept for it, with
            # the message's id (Twilio's, signed), so that it applies to this message only.
            ShareNotification.objects.filter(pk=notification.pk).update(provider_id=provider_id, last_error=reason)
            return "failed"
        _undelivered(notification, reason, notification.attempts)
    return "failed"


def _undelivered(notification: ShareNotification, reason: str, attempts: int) -> None:
    """Record a sent SMS the provider reports undelivered, in the caller's transaction (the
    row locked): it fails for good, as if refused at once."""
    ShareNotification.objects.filter(pk=notification.pk).update(state=ShareNotification.State.FAILED, last_error=reason)
    details: dict[str, Any] = {
        "channel": Channel.SMS,
        "kind": notification.kind,
        "notification": str(notification.pk),
        "attempt": attempts,
        "reason": reason,
        "category": report_category(reason),
        "final": True,
        "reported": True,
    }
    target = ("sharing.patientshare", str(notification.share_id))
    audit.record("share.notification_failed", target=target, outcome=audit.FAILURE, details=details)


def close(notifications: QuerySet[ShareNotification], **fields: Any) -> None:
    """Set the final state of ``notifications`` and shred their payload (the rendered
    message and its data key) in one UPDATE: the link or code no longer exists anywhere."""
    key_ids = [k for k in notifications.values_list("data_key_id", flat=True) if k is not None]
    notifications.update(
        data_key=None, recipient=None, subject=None, text=None, html=None, claimed_until=None, **fields
    )
    DataKey.forget(key_ids)


def cancel_pending(share: PatientShare, kinds: Sequence[str] | None = None) -> None:
    pending = share.notifications.filter(state=ShareNotification.State.PENDING)
    if kinds is not None:
        pending = pending.filter(kind__in=kinds)
    close(pending, state=ShareNotification.State.CANCELLED, last_error="cancelled")


def requeue_stuck(now: datetime.datetime | None = None) -> int:
    """A worker that died mid-delivery leaves its job "running" forever: queue it again.

    Overdue is not enough: a job may be waiting its turn behind others (a worker busy
    through an outage); a second job for it would only find itself stale."""
    now = now or timezone.now()
    stuck = ShareNotification.objects.filter(
        state=ShareNotification.State.PENDING, next_attempt_at__lte=now - CLAIM
    ).filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    candidates = list(stuck.only("pk", "kind", "attempts").order_by("next_attempt_at")[:1000])
    if not candidates:
        # The usual case: no need to read the waiting jobs (thousands during an outage).
        return 0
    from django_tasks_db.models import DBTaskResult

    from pli.sharing.tasks import deliver_notification

    waiting: set[tuple[str, int | None]] = set()
    for args_kwargs in DBTaskResult.objects.filter(
        task_path=deliver_notification.module_path, status="READY"
    ).values_list("args_kwargs", flat=True):
        args = args_kwargs.get("args") if isinstance(args_kwargs, dict) else None
        if args:
            waiting.add((str(args[0]), args[1] if len(args) > 1 else None))
    count = 0
    for notification in candidates:
        if waiting & {(str(notification.pk), None), (str(notification.pk), notification.attempts)}:
            continue
        with transaction.atomic():
            ShareNotification.objects.filter(pk=notification.pk).update(next_attempt_at=now)
            enqueue_delivery(notification)
        count += 1
        if count >= 500:
            break
    return count
