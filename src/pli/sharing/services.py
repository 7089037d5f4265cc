"""Patient shares: the only place that changes them.

Every function that writes is one transaction. Patient steps lock the share's row first
(``select_for_update``; SQLite's immediate transactions serialise writers the same way), so
the attempt limits hold under concurrent requests: two correct answers racing for the last
allowed code, or five wrong ones arriving together, never get past a limit.

Notifications are queued through :mod:`pli.sharing.notifications`, inside these same
transactions.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet, Sum
from django.http import HttpRequest
from django.utils import timezone

from pli.accounts import services as accounts_services
from pli.accounts.models import MIN_RETENTION_DAYS, Mailbox, Membership, Organisation, User
from pli.audit import services as audit
from pli.audit.models import AuditEvent
from pli.blobs import BlobNotFound, BlobStore, ReadAhead
from pli.core import instance
from pli.core.db import db_value, fetch, insert_rows, pipelined
from pli.core.encryption import ContentShredded
from pli.core.ins import contradicts_birth_date
from pli.core.models import DataKey
from pli.crypto import CryptoError, new_data_key
from pli.crypto.stream import SEGMENT_SIZE
from pli.messaging import search
from pli.messaging.services import orphan_blob_age, unreadable_reason
from pli.messaging.uploads import MAX_PENDING_AGE
from pli.notify import sms
from pli.sharing import notifications, tokens
from pli.sharing.models import (
    PROGRESS_ORDER,
    Channel,
    LockReason,
    OneTimeCode,
    PatientSession,
    PatientShare,
    ShareDocument,
    ShareNotification,
    ShareReply,
    Status,
)
from pli.sharing.uploads import PendingFile, share_blob_store

# Limits from the issue: 5 wrong birth dates, 3 wrong codes per code, 5 codes per hour.
MAX_BIRTH_DATE_FAILURES = 5
MAX_CODE_FAILURES = 3
MAX_CODES_PER_HOUR = 5
# Wrong codes in all, whatever the code: two guesses on each of five codes an hour would
# otherwise never lock, some 20,000 guesses over a 90-day link (a 2% chance at 6 digits).
MAX_TOTAL_CODE_FAILURES = 10
# "Send a new code" again within this delay, by the same channel, is refused rather than
# obeyed: the first code is probably on its way (an SMS can take a minute), and every code
# sent retires the one before and counts towards the hourly limit that locks the share. An
# impatient patient tapping twice would otherwise be told their first code is invalid.
RESEND_COOLDOWN = datetime.timedelta(seconds=30)
CODE_VALIDITY = datetime.timedelta(minutes=10)
PATIENT_IDLE = datetime.timedelta(minutes=15)
# The code that has just let a browser in, sent again by it (a double tap, or the form sent
# again after a slow answer), still leads to the documents within this time.
REPEAT_WINDOW = datetime.timedelta(seconds=30)
REMINDER_AFTER = datetime.timedelta(days=5)
DEFAULT_EXPIRY_DAYS = 30
MAX_EXPIRY_DAYS = 90
# Past this the practitioner no longer sees the documents' content: blobs are shredded.
PURGE_AFTER_END = datetime.timedelta(days=30)
# The audit actor of the patient's steps (who has no account).
PATIENT = ("patient", "")

logger = logging.getLogger(__name__)


class ContentUnavailable(Exception):
    """The document exists but its blob cannot be read (missing, or its file unreadable)."""


class AlreadyCreated(Exception):
    """The share's form was sent before (a double click): ``share`` is the one it made."""

    def __init__(self, share: PatientShare) -> None:
        super().__init__(str(share.pk))
        self.share = share


class ShareError(Exception):
    """A request that cannot be honoured; ``code`` is stable, the message is for people."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code


# -- reading ---------------------------------------------------------------------------------


def _creator_is_member() -> Exists:
    return Exists(Membership.objects.filter(user=OuterRef("created_by"), organisation=OuterRef("organisation")))


def _in_charge(user: User) -> Q:
    """Who may see and act on a share: its creator, while a member of the share's
    organisation; for a share sent from a shared mailbox, every member of that mailbox (the
    team that receives the patient's replies), and only they: its creator too, while in the
    team (a secretary taken off the team's mailbox kept its patients' shares, and could send
    herself a new link to their documents); once the creator has left the organisation,
    its administrators, so that the organisation keeps control (a locked-out patient still
    has someone to unlock the share) and the creator, now elsewhere, loses it."""
    memberships = Membership.objects.filter(user=user)
    own = (
        Q(created_by=user)
        & Q(Q(organisation__isnull=True) | Q(organisation__in=memberships.values("organisation")))
        & ~Q(reply_mailbox__kind=Mailbox.Kind.ORGANISATIONAL)
    )
    # Both asked first, so that the condition of a user who administers nothing and works
    # in no shared mailbox (most) is the index range of their own shares: an "or" over the
    # organisations' shares made every list a scan of the whole instance's shares.
    admin_of = list(memberships.filter(role=Membership.Role.ADMIN).values_list("organisation", flat=True))
    team_of = list(accounts_services.shared_mailbox_memberships(user).values_list("mailbox", flat=True))
    if team_of:
        own |= Q(reply_mailbox__in=team_of)
    if not admin_of:
        return own
    return own | Q(Q(organisation__in=admin_of), ~_creator_is_member())


def shares_for(user: User) -> QuerySet[PatientShare]:
    """The shares a professional may see and act on (see _in_charge)."""
    return PatientShare.objects.filter(_in_charge(user)).select_related("organisation", "created_by", "data_key")


def replies_open(share: PatientShare) -> bool:
    """Whether the patient may answer: allowed, not closed, and the mailbox the replies go to
    still open in the share's organisation: a shared mailbox, whoever created the share; a
    personal one while its practitioner is still a member there (a reply must not follow
    them elsewhere)."""
    if not share.allow_reply or share.closed_at is not None or share.reply_mailbox_id is None:
        return False
    if share.organisation_id is None:
        return True
    return Mailbox.objects.filter(
        Q(kind=Mailbox.Kind.ORGANISATIONAL) | Q(owner__memberships__organisation_id=share.organisation_id),
        pk=share.reply_mailbox_id,
        is_active=True,
        organisation_id=share.organisation_id,
    ).exists()


def team_mailbox(share: PatientShare) -> Mailbox | None:
    """The shared mailbox the share was sent from (its members follow it), if it was."""
    if share.reply_mailbox_id is None:
        return None
    return Mailbox.objects.filter(pk=share.reply_mailbox_id, kind=Mailbox.Kind.ORGANISATIONAL).first()


def organisation_for(user: User) -> Organisation | None:
    membership = Membership.objects.filter(user=user).select_related("organisation").order_by("created_at").first()
    return membership.organisation if membership else None


def default_expiry_days(user: User, organisation: Organisation | None = None) -> int:
    """The organisation's policy (30 days unless changed), within 1 to 90 days."""
    organisation = organisation or organisation_for(user)
    days = organisation.share_expiry_days if organisation else DEFAULT_EXPIRY_DAYS
    return max(1, min(MAX_EXPIRY_DAYS, days))


# Audit actions on a share that the practitioner and the API see as its events ("share."
# removed), and the subset the patient sees in their history.
EVENT_ACTIONS = (
    "share.created",
    "share.notification_sent",
    "share.notification_delivered",
    "share.notification_failed",
    "share.birth_date_confirmed",
    "share.birth_date_failed",
    "share.code_sent",
    "share.code_failed",
    "share.opened",
    "share.viewed",
    "share.downloaded",
    "share.locked",
    "share.unlocked",
    "share.resent",
    "share.reminder_queued",
    "share.revoked",
    "share.expired",
    "share.replied",
    "share.closed",
)
PATIENT_HISTORY_ACTIONS = ("share.opened", "share.viewed", "share.downloaded")


@dataclass(frozen=True)
class ShareEvent:
    type: str
    at: datetime.datetime
    outcome: str
    details: dict[str, Any]
    # The professional who did it (revoked, unlocked, sent a new link...), by account id;
    # empty for the patient's steps and Pli's own.
    actor_id: str = ""

    @property
    def failure(self) -> str | None:
        """Why a notification failed (notifications.FAILURE_CATEGORIES); None for other events."""
        return notifications.recorded_category(self.details) if self.type == "notification_failed" else None


def events(share: PatientShare, actions: Sequence[str] = EVENT_ACTIONS) -> list[ShareEvent]:
    rows = audit.events_for(share).filter(action__in=actions).only(*_EVENT_FIELDS)
    return [_share_event(e) for e in rows]


_EVENT_FIELDS = ("action", "at", "outcome", "details", "actor_type", "actor_id")


def _share_event(event: AuditEvent) -> ShareEvent:
    return ShareEvent(
        type=event.action.removeprefix("share."),
        at=event.at,
        outcome=event.outcome,
        details=event.details,
        actor_id=event.actor_id if event.actor_type == "user" else "",
    )


def latest_events(
    share: PatientShare, limit: int, actions: Sequence[str] = EVENT_ACTIONS
) -> tuple[list[ShareEvent], int]:
    """The latest ``limit`` events of ``actions``, oldest first, and how many earlier ones
    are left out: a link used again and again (a script with a stolen session, thousands of
    downloads) must not make every page that lists them heavier; the latest events, where
    misuse shows, stay in view."""
    rows = audit.events_for(share).filter(action__in=actions)
    latest = list(rows.order_by("-seq").only(*_EVENT_FIELDS)[:limit])
    earlier = rows.count() - limit if len(latest) == limit else 0
    return [_share_event(e) for e in reversed(latest)], earlier


def patient_history(share: PatientShare, limit: int) -> tuple[list[ShareEvent], int]:
    """The latest ``limit`` openings, views and downloads the patient is shown (see
    :func:`latest_events`)."""
    return latest_events(share, limit, PATIENT_HISTORY_ACTIONS)


# -- creating --------------------------------------------------------------------------------


@dataclass
class ShareInput:
    given_name: str
    family_name: str
    birth_date: datetime.date
    email: str | None
    mobile: str | None  # E.164, already normalised
    ins: str | None = None
    message: str = ""
    expires_in_days: int | None = None
    allow_reply: bool = False
    # The web form's random value (see PatientShare.submission); "" for the API and the demo.
    submission: str = ""
    # The address of the mailbox the share is sent from, where the patient's replies arrive:
    # one the practitioner works in. "" for their personal mailbox.
    sender: str = ""

    def __repr__(self) -> str:
        return "<ShareInput>"


def _refuse_repeat(user: User, submission: str) -> None:
    if submission:
        earlier = PatientShare.objects.filter(created_by=user, submission=submission).first()
        if earlier is not None:
            raise AlreadyCreated(earlier)


def sending_mailbox(user: User, address: str) -> Mailbox | None:
    """The mailbox a share is sent from: the one at ``address`` if ``user`` works in it
    (ShareError ``sender`` otherwise), or by default the practitioner's own, provided they are
    a member of its organisation (the share would otherwise belong to an organisation they
    are not in, and be in the hands of its administrators); None when they have neither."""
    if address.strip():
        found = (
            accounts_services.mailboxes_for(user)
            .select_related("organisation")
            .filter(address__iexact=address.strip())
            .first()
        )
        if found is None:
            raise ShareError("sender", "not a mailbox you work in")
        mailbox: Mailbox | None = found
    else:
        mailbox = _own_mailbox(user)
    # A shared mailbox comes only with its organisation (mailboxes_for); a personal one may
    # outlive its owner's membership.
    if (
        mailbox is not None
        and mailbox.kind == Mailbox.Kind.PERSONAL
        and not Membership.objects.filter(user=user, organisation=mailbox.organisation_id).exists()
    ):
        return None
    return mailbox


def _own_mailbox(user: User) -> Mailbox | None:
    """The practitioner's active personal mailbox, with its organisation (every share
    creation looks it up: compiled once, pli.core.db.fetch)."""
    found = fetch(
        "sharing.own_mailbox",
        [db_value(Mailbox, "owner", user.pk)],
        lambda: Mailbox.objects.select_related("organisation").filter(owner=user, is_active=True).order_by()[:1],
    )
    return found[0] if found else None


def create_share(
    user: User,
    data: ShareInput,
    documents: Sequence[PendingFile],
    *,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
    source_message_id: uuid.UUID | None = None,
    on_created: Callable[[uuid.UUID], None] | None = None,
) -> PatientShare:
    """Save the share and its (already encrypted) documents; queue the link notifications.
    ``on_created`` runs in the same transaction with the share's id (the API records its
    Idempotency-Key there). Raises :class:`AlreadyCreated` when ``data.submission`` made a
    share already: the same form sent twice, which creates nothing and notifies nobody."""
    now = now or timezone.now()
    _refuse_repeat(user, data.submission)
    if not data.email and not data.mobile:
        raise ShareError("no_contact", "an e-mail address or a mobile number is required")
    if not documents and not data.message.strip():
        # A message alone is a share too: the practitioner's answer to a patient's
        # question needs no document.
        raise ShareError("no_documents", "at least one document or a message is required")
    # Replies go to the mailbox the share is sent from; its organisation is the share's.
    mailbox = sending_mailbox(user, data.sender)
    team = mailbox.pk if mailbox is not None and mailbox.kind == Mailbox.Kind.ORGANISATIONAL else None
    organisation = mailbox.organisation if mailbox is not None else organisation_for(user)
    days = data.expires_in_days or default_expiry_days(user, organisation)
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise ShareError("expires_in_days", f"expires_in_days must be between 1 and {MAX_EXPIRY_DAYS}")
    token = tokens.new_token()
    # Every row is built and sealed beforehand and inserted in a few statements: on SQLite
    # the write lock is held from BEGIN to COMMIT, so the transaction only writes.
    share = PatientShare(
        organisation=organisation,
        created_by=user,
        reply_mailbox=mailbox,
        source_message_id=source_message_id,
        token_hash=tokens.token_hash(token),
        allow_reply=bool(data.allow_reply and mailbox is not None),
        created_at=now,
        expires_at=now + datetime.timedelta(days=days),
        link_sent_at=now,
        counters_reset_at=now,
        document_count=len(documents),
        documents_size=sum(d.size for d in documents),
        submission=data.submission,
    )
    data_keys = [share.adopt_key(new_data_key())]
    share.patient_given_name = data.given_name.strip()
    share.patient_family_name = data.family_name.strip()
    share.patient_birth_date = data.birth_date
    share.patient_ins = data.ins or None
    share.patient_email = data.email or None
    share.patient_mobile = data.mobile or None
    share.message = data.message.strip() or None
    share.search_tokens = _patient_tokens(data)
    rows = []
    for position, pending in enumerate(documents):
        document = ShareDocument(id=pending.id, share=share, position=position, size=pending.size, created_at=now)
        # The key the blob was encrypted with during the upload.
        data_keys.append(document.adopt_key(pending.key))
        document.name = pending.name
        document.content_type = pending.content_type
        rows.append(document)
    messages = notifications.render_link(share, token, ShareNotification.Kind.LINK)
    queued = notifications.prepare(share, ShareNotification.Kind.LINK, messages, now)
    data_keys += [n.data_key for n in queued if n.data_key is not None]
    try:
        with transaction.atomic(), pipelined():
            _check_uploads(documents)
            insert_rows(data_keys)
            insert_rows([share])
            insert_rows(rows)
            insert_rows(queued)
            for notification in queued:
                notifications.enqueue_delivery(notification)
            if on_created is not None:
                # Before the audit event, whose head row stays locked until COMMIT: what
                # on_created locks (the API token's row, the answered message's copies),
                # others lock before their own event; the reverse order would deadlock.
                on_created(share.pk)
            audit.record(
                "share.created",
                actor=user,
                target=share,
                request=request,
                details={
                    "documents": len(documents),
                    "channels": ",".join(m.channel for m in messages),
                    "expires_in_days": days,
                    "allow_reply": share.allow_reply,
                    "from_message": source_message_id is not None,
                    # Which team's share it is, when sent from a shared mailbox (an id, no name).
                    "shared_mailbox": str(team) if team else None,
                },
            )
    except IntegrityError:
        # The same form sent twice at once: the other request's share went in first.
        _refuse_repeat(user, data.submission)
        raise
    return share


def _patient_tokens(data: ShareInput) -> str:
    """PatientShare.search_tokens: each token between spaces, so that one is matched whole."""
    patient = {"family_name": data.family_name, "given_names": data.given_name, "ins": data.ins or ""}
    return token_list(search.message_tokens("", patient, search.SHARES_PURPOSE))


def token_list(tokens: Sequence[str]) -> str:
    return f" {' '.join(tokens)} " if tokens else ""


def filter_shares(
    shares: QuerySet[PatientShare],
    text: str = "",
    status: str = "",
    now: datetime.datetime | None = None,
    mailbox: Mailbox | None = None,
) -> QuerySet[PatientShare]:
    """``shares`` whose patient's names (whole, or their first letters) or INS match every
    word of ``text``, whose status as shown is ``status``, and sent from ``mailbox``. Text
    with nothing to look for (see pli.messaging.search.searchable) matches nothing. The
    status is matched as PatientShare.effective_status computes it, in the query rather
    than share by share."""
    if mailbox is not None:
        shares = shares.filter(reply_mailbox=mailbox)
    if text.strip():
        groups = search.query_tokens(text, (search.PATIENT_NAME, search.INS), search.SHARES_PURPOSE)
        if not groups:
            return shares.none()
        for group in groups:
            # Within the shares one may see (one's own, an organisation's for its
            # administrators), not an index of the instance's.
            alternatives = Q()
            for token in group:
                alternatives |= Q(search_tokens__contains=f" {token} ")
            shares = shares.filter(alternatives)
    if status:
        now = now or timezone.now()
        running = Q(status__in=[*PROGRESS_ORDER, Status.LOCKED])
        if status == Status.EXPIRED:
            shares = shares.filter(Q(status=Status.EXPIRED) | (running & Q(expires_at__lte=now)))
        elif status == Status.REVOKED:
            shares = shares.filter(status=Status.REVOKED)
        else:
            shares = shares.filter(status=status, expires_at__gt=now)
    return shares


def _check_uploads(documents: Sequence[PendingFile]) -> None:
    """Refuse documents whose blob may be gone: the orphan clean-up (of any process) takes
    unreferenced blobs older than :func:`orphan_age` (at least twice MAX_PENDING_AGE), so a
    document finished longer ago than MAX_PENDING_AGE, in an upload that went on for a long
    time, is never committed. Checked in the transaction, as messaging checks its uploads."""
    store = share_blob_store()
    now = time.monotonic()
    for document in documents:
        if now - document.completed_at > MAX_PENDING_AGE or not store.exists(document.blob_id):
            raise ShareError("upload_expired", "the upload took too long; send the documents again")


# -- the patient's steps ---------------------------------------------------------------------


def find_share(token: str) -> PatientShare | None:
    """The share a link's token opens, or None. Never raises on a malformed token."""
    if not tokens.plausible_token(token):
        return None
    # Every patient page starts here: the SQL is compiled once (pli.core.db.fetch).
    token_hash = tokens.token_hash(token)
    found = fetch(
        "sharing.find_share",
        [token_hash, token_hash],
        lambda: (
            PatientShare.objects.select_related(*_SHARE_RELATED)
            .filter(Q(token_hash=token_hash) | Q(earlier_token_hash=token_hash))
            .order_by()[:1]
        ),
    )
    return found[0] if found else None


_SHARE_RELATED = ("created_by", "organisation", "data_key")


def live_session_key(share: PatientShare, keys: Sequence[str], now: datetime.datetime | None = None) -> str | None:
    """Of the session keys a browser holds (one per share it has been let into), the one of
    a live session on ``share``, if any."""
    now = now or timezone.now()
    hashes = {tokens.session_key_hash(key): key for key in keys if key and len(key) <= 100}
    found = (
        PatientSession.objects.filter(
            share=share, key_hash__in=list(hashes), ended_at__isnull=True, last_seen_at__gt=now - PATIENT_IDLE
        )
        .order_by("-last_seen_at")
        .values_list("key_hash", flat=True)
        .first()
    )
    return hashes[found] if found else None


def find_session(share: PatientShare, key: str | None, now: datetime.datetime | None = None) -> PatientSession | None:
    """The patient's live session on this share, if the cookie holds one."""
    if not key or len(key) > 100:
        return None
    now = now or timezone.now()
    key_hash, idle_since = tokens.session_key_hash(key), now - PATIENT_IDLE
    found = fetch(
        "sharing.find_session",
        # In the order Django writes keyword filters: sorted by name.
        [key_hash, db_value(PatientSession, "last_seen_at", idle_since), db_value(PatientSession, "share", share.pk)],
        lambda: PatientSession.objects.filter(
            key_hash=key_hash, share=share, ended_at__isnull=True, last_seen_at__gt=idle_since
        ).order_by()[:1],
    )
    return found[0] if found else None


def touch_session(session: PatientSession, now: datetime.datetime | None = None) -> None:
    """Keep an active session alive (idle timeout); at most one write a minute."""
    now = now or timezone.now()
    if now - session.last_seen_at > datetime.timedelta(seconds=60):
        PatientSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(last_seen_at=now)
        session.last_seen_at = now


def _lock_share(share_id: uuid.UUID) -> PatientShare:
    """The share, locked until the transaction ends: every patient step serialises on it."""
    found = fetch(
        "sharing.lock_share",
        [db_value(PatientShare, "id", share_id)],
        lambda: (
            PatientShare.objects.select_for_update(of=("self",), no_key=True)
            .select_related(*_SHARE_RELATED)
            .filter(pk=share_id)
            .order_by()
        ),
    )
    if not found:
        raise PatientShare.DoesNotExist(f"share {share_id}")
    return found[0]


def _refusal(share: PatientShare, now: datetime.datetime) -> str:
    """Why the patient cannot proceed, or empty."""
    status = share.effective_status(now)
    if status in (Status.EXPIRED, Status.REVOKED, Status.LOCKED):
        return status
    return ""


class _Trail:
    """The audit events of one patient step, written when the step's transaction ends.

    Recording an event locks the audit chain's head row until commit, so it must come after
    every other lock the transaction takes: a step that audited first and then waited for,
    say, a notification row that the worker holds while it waits for the head would
    deadlock on PostgreSQL.
    """

    def __init__(self, request: HttpRequest | None) -> None:
        self.request = request
        self.events: list[tuple[str, PatientShare, str, dict[str, Any]]] = []

    def add(self, action: str, share: PatientShare, *, outcome: str = audit.SUCCESS, **details: Any) -> None:
        self.events.append((action, share, outcome, details))

    def write(self) -> None:
        for action, share, outcome, details in self.events:
            audit.record(action, actor=PATIENT, target=share, request=self.request, outcome=outcome, details=details)


@contextlib.contextmanager
def _step(request: HttpRequest | None) -> Iterator[_Trail]:
    trail = _Trail(request)
    with transaction.atomic():
        yield trail
        trail.write()


def _lock(share: PatientShare, reason: str, now: datetime.datetime, trail: _Trail) -> None:
    share.status = Status.LOCKED
    share.lock_reason = reason
    share.locked_at = now
    share.save(update_fields=["status", "lock_reason", "locked_at"])
    share.codes.filter(retired=False).update(retired=True)
    notifications.cancel_pending(share, kinds=[ShareNotification.Kind.CODE])
    trail.add("share.locked", share, reason=reason)


@dataclass(frozen=True)
class StepResult:
    outcome: str  # "ok" or a refusal code
    session_key: str | None = None
    channel: str = ""
    attempts_left: int = 0
    wait_seconds: int = 0  # "too_soon": before another code may be asked for
    replaces: str | None = None  # "again": the browser's key that session_key replaces


def check_birth_date(
    share_id: uuid.UUID,
    value: datetime.date,
    *,
    session_key: str | None = None,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
) -> StepResult:
    """First factor. A match starts a patient session and sends a one-time code."""
    now = now or timezone.now()
    # The birth date and the contacts seldom change: compare and prepare the code before
    # taking the lock; the counters and the status are decided under it.
    unlocked = _read_share(share_id)
    matches = value == unlocked.patient_birth_date
    new_code = _prepare_code(unlocked, None) if matches else None
    with _step(request) as trail:
        share = _lock_share(share_id)
        refusal = _refusal(share, now)
        if refusal:
            trail.add("share.access_denied", share, outcome=audit.DENIED, reason=refusal, step="birth_date")
            return StepResult(refusal)
        if share.patient_birth_date != unlocked.patient_birth_date:
            # Corrected by the practitioner meanwhile (resend): the corrected one decides.
            new_code = _prepare_code(share, None) if value == share.patient_birth_date else None
        elif new_code is not None and _contacts(share) != _contacts(unlocked):
            # Corrected by the practitioner meanwhile (resend): not to the former ones.
            new_code = _prepare_code(share, None)
        if new_code is None:
            share.birth_date_failures = F("birth_date_failures") + 1
            share.save(update_fields=["birth_date_failures"])
            share.refresh_from_db(fields=["birth_date_failures"])
            trail.add("share.birth_date_failed", share, outcome=audit.FAILURE, failures=share.birth_date_failures)
            if share.birth_date_failures >= MAX_BIRTH_DATE_FAILURES:
                _lock(share, LockReason.BIRTH_DATE, now, trail)
                return StepResult(Status.LOCKED)
            return StepResult("wrong", attempts_left=MAX_BIRTH_DATE_FAILURES - share.birth_date_failures)
        session = find_session(share, session_key, now)
        key = session_key if session is not None else None
        if session is None:
            key = tokens.new_session_key()
            session = PatientSession.objects.create(
                key_hash=tokens.session_key_hash(key),
                share=share,
                stage=PatientSession.Stage.BIRTH_DATE_CONFIRMED,
                created_at=now,
                last_seen_at=now,
            )
        else:
            PatientSession.objects.filter(pk=session.pk).update(last_seen_at=now)
        trail.add("share.birth_date_confirmed", share)
        if session.stage == PatientSession.Stage.OPEN:
            # In already (a landing page left open in another tab): no code to send.
            return StepResult("open", session_key=key)
        # A code on its way (sent less than RESEND_COOLDOWN ago, unused) is not replaced: the
        # same browser again (the back button), or a double tap on a first visit, whose two
        # requests come without a cookie and so open two sessions. A code opens the share for
        # any session past the birth date, so the one on its way serves this session too;
        # replacing it made the first SMS useless and spent the hour's allowance twice.
        recent = _recent_code(share, new_code.message.channel, now)
        if recent is not None:
            return StepResult("ok", session_key=key, channel=recent.channel)
        result = _issue_code(share, new_code, now, trail)
        if result.outcome != "ok":
            return result
        return StepResult("ok", session_key=key, channel=result.channel)


def code_channels(share: PatientShare) -> list[str]:
    """The channels a code may go by, SMS first: not an address the patient's mail server
    refused for good when a mobile is known (a code sent there would never arrive; the link
    went by SMS), whatever the patient asks; the code page offers only these."""
    available = [
        str(c) for c, present in ((Channel.SMS, share.patient_mobile), (Channel.EMAIL, share.patient_email)) if present
    ]
    if len(available) > 1 and _address_refused(share):
        available.remove(str(Channel.EMAIL))
    return available


def _code_channel(share: PatientShare, wanted: str | None) -> str:
    available = code_channels(share)
    if wanted in available:
        return str(wanted)
    if len(available) > 1 and _sms_failed_for_good(share):
        # An SMS to this number failed for good (the provider refused it): a code sent
        # there would never arrive, and the patient came by the e-mail.
        return str(Channel.EMAIL)
    return str(available[0])


def _sms_failed_for_good(share: PatientShare) -> bool:
    """Whether an SMS to the share's current number failed for good: failures before the
    practitioner corrected the number (resend's ``changed``) were about another one, and a
    failure followed by an SMS the provider reported delivered (a phone switched off for a
    while, then on again) no longer says anything about the number."""
    failed = share.notifications.filter(channel=Channel.SMS, state=ShareNotification.State.FAILED)
    last_failed = failed.aggregate(last=Max("created_at"))["last"]
    if (
        last_failed is not None
        and share.notifications.filter(
            channel=Channel.SMS, created_at__gt=last_failed, delivered_at__isnull=False
        ).exists()
    ):
        return False
    return _failed_since_correction(share, failed, "mobile")


def _address_refused(share: PatientShare) -> bool:
    """Whether the patient's mail server refused the share's current address for good (not
    an outage): a link sent there again would never arrive either."""
    failed = share.notifications.filter(
        channel=Channel.EMAIL,
        state=ShareNotification.State.FAILED,
        last_error__in=notifications.ADDRESS_REFUSED_REASONS,
    )
    return _failed_since_correction(share, failed, "email")


def _failed_since_correction(share: PatientShare, failed: QuerySet[ShareNotification], contact: str) -> bool:
    """Whether one of the ``failed`` notifications went to the share's current ``contact``
    (``email`` or ``mobile``): those before the practitioner corrected it went elsewhere."""
    if not failed.exists():
        return False
    corrections = audit.events_for(share).filter(action="share.resent").only("at", "details")
    changed_at = [e.at for e in corrections if contact in str(e.details.get("changed", "")).split(",")]
    if not changed_at:
        return True
    # The correction's own link is the last notification queued before its event (same
    # transaction, the share locked; whatever its channel): the notifications queued with
    # it or after it went to the current contact.
    first = share.notifications.filter(created_at__lte=changed_at[-1]).aggregate(first=Max("created_at"))["first"]
    return first is None or failed.filter(created_at__gte=first).exists()


@dataclass(frozen=True)
class _NewCode:
    """A code and its message, prepared before the step's transaction (rendering need not
    hold the write lock); used only if the step decides to send a code."""

    code: str = field(repr=False)
    message: notifications.Rendered


def current_code_channel(share: PatientShare) -> str | None:
    """The channel of the share's code still in use (not retired), if any."""
    return share.codes.filter(retired=False).order_by("-created_at").values_list("channel", flat=True).first()


def _prepare_code(share: PatientShare, channel: str | None) -> _NewCode:
    code = tokens.new_code()
    chosen = _code_channel(share, channel)
    minutes = int(CODE_VALIDITY.total_seconds() // 60)
    return _NewCode(code, notifications.render_code(share, code, chosen, minutes))


def _issue_code(share: PatientShare, new: _NewCode, now: datetime.datetime, trail: _Trail) -> StepResult:
    """Inside the caller's transaction, with the share locked."""
    since = max(now - datetime.timedelta(hours=1), share.counters_reset_at)
    if share.codes.filter(created_at__gt=since).count() >= MAX_CODES_PER_HOUR:
        _lock(share, LockReason.CODES_SENT, now, trail)
        return StepResult(Status.LOCKED)
    share.codes.filter(retired=False).update(retired=True)
    notifications.cancel_pending(share, kinds=[ShareNotification.Kind.CODE])
    channel = new.message.channel
    one_time = OneTimeCode.objects.create(
        share=share,
        code_hash=tokens.code_hash(share.pk, new.code),
        channel=channel,
        created_at=now,
        expires_at=now + CODE_VALIDITY,
    )
    notifications.queue(share, ShareNotification.Kind.CODE, new.message, now, one_time.expires_at)
    trail.add("share.code_sent", share, channel=channel)
    return StepResult("ok", channel=channel)


def _read_share(share_id: uuid.UUID) -> PatientShare:
    """The share without a lock, for what seldom changes (identity, contacts): a caller that
    relies on it checks again under the lock."""
    return PatientShare.objects.select_related("created_by", "organisation", "data_key").get(pk=share_id)


def request_new_code(
    share_id: uuid.UUID,
    *,
    session_key: str | None,
    channel: str | None = None,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
) -> StepResult:
    """ "Send me another code" (optionally by the other channel), within the hourly limit."""
    now = now or timezone.now()
    new_code = _prepare_code(_read_share(share_id), channel)
    with _step(request) as trail:
        share = _lock_share(share_id)
        refusal = _refusal(share, now)
        if refusal:
            return StepResult(refusal)
        session = find_session(share, session_key, now)
        if session is None or session.stage != PatientSession.Stage.BIRTH_DATE_CONFIRMED:
            trail.add("share.access_denied", share, outcome=audit.DENIED, reason="no_session", step="new_code")
            return StepResult("no_session")
        PatientSession.objects.filter(pk=session.pk).update(last_seen_at=now)
        # The wait counts from the last code, whatever its channel, except for a first code by
        # the other channel (the first went where the patient cannot read it): switching back
        # and forth would otherwise spend the hourly allowance in seconds and lock the share.
        channel = new_code.message.channel
        recent = share.codes.filter(created_at__gt=now - RESEND_COOLDOWN).order_by("-created_at", "-pk").first()
        if recent is not None and recent.channel != channel and not share.codes.filter(channel=channel).exists():
            recent = None
        if recent is not None:
            wait = math.ceil((RESEND_COOLDOWN - (now - recent.created_at)).total_seconds())
            return StepResult("too_soon", channel=recent.channel, wait_seconds=wait)
        return _issue_code(share, new_code, now, trail)


def _recent_code(share: PatientShare, channel: str, now: datetime.datetime) -> OneTimeCode | None:
    """The code sent by ``channel`` less than RESEND_COOLDOWN ago and still usable, if any."""
    latest = share.codes.order_by("-created_at", "-pk").first()
    if (
        latest is None
        or latest.channel != channel
        or latest.retired
        or latest.used_at is not None
        or now - latest.created_at >= RESEND_COOLDOWN
    ):
        return None
    return latest


def check_code(
    share_id: uuid.UUID,
    code: str,
    *,
    session_key: str | None,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
    browser_keys: Sequence[str] = (),
) -> StepResult:
    """Second factor: the latest code sent for this share, once, within its validity.

    ``browser_keys`` are the session keys the browser holds: the same code sent again by
    the browser it has just let in (outcome "again") gets that session a new key."""
    now = now or timezone.now()
    with _step(request) as trail:
        share = _lock_share(share_id)
        refusal = _refusal(share, now)
        if refusal:
            trail.add("share.access_denied", share, outcome=audit.DENIED, reason=refusal, step="code")
            return StepResult(refusal)
        latest = share.codes.order_by("-created_at", "-pk").first()
        typed_hash = tokens.code_hash(share.pk, code)
        matches = latest is not None and tokens.same(latest.code_hash, typed_hash)
        session = find_session(share, session_key, now)
        if session is None:
            if latest is not None and matches:
                again = _repeat(share, latest, browser_keys, now, trail)
                if again is not None:
                    return again
            if latest is None or matches or not _opened_by(latest, browser_keys):
                trail.add("share.access_denied", share, outcome=audit.DENIED, reason="no_session", step="code")
                return StepResult("no_session")
            # Another code with the former key of a session this code has just opened (what
            # _repeat accepts for a while): a guess like any other, counted, or that key
            # would give whoever holds it attempts that never lock.
        if session is not None and latest is not None and matches:
            used = OneTimeCode.objects.filter(
                pk=latest.pk, used_at__isnull=True, retired=False, attempts__lt=MAX_CODE_FAILURES, expires_at__gt=now
            ).update(used_at=now)
            if used:
                return _open(share, session, latest, now, trail)
        if latest is None:
            reason = "no_code"
        elif latest.used_at is not None:
            reason = "used"
        elif latest.retired:
            reason = "retired"
        elif latest.expires_at <= now:
            reason = "code_expired"
        elif share.codes.filter(code_hash=typed_hash).exclude(pk=latest.pk).exists():
            # A code this share was sent before the latest (an SMS that arrived late, after
            # "send a new code"): not a guess to retype, the patient needs the newest one.
            # Still counted, like any code that opens nothing.
            reason = "retired"
        else:
            reason = "wrong"
        share.code_failures = F("code_failures") + 1
        share.save(update_fields=["code_failures"])
        share.refresh_from_db(fields=["code_failures"])
        attempts = 0
        if latest is not None:
            OneTimeCode.objects.filter(pk=latest.pk).update(attempts=F("attempts") + 1)
            latest.refresh_from_db(fields=["attempts"])
            attempts = latest.attempts
        trail.add("share.code_failed", share, outcome=audit.FAILURE, reason=reason, attempts=attempts)
        if (latest is not None and attempts >= MAX_CODE_FAILURES) or share.code_failures >= MAX_TOTAL_CODE_FAILURES:
            _lock(share, LockReason.CODE, now, trail)
            return StepResult(Status.LOCKED)
        # Whichever limit comes first locks: the patient is told what is really left, not
        # the current code's own allowance when the count in all is nearer its end.
        left = min(MAX_CODE_FAILURES - attempts, MAX_TOTAL_CODE_FAILURES - share.code_failures)
        return StepResult(reason if session is not None else "no_session", attempts_left=max(0, left))


def _advance(share: PatientShare, progress: str) -> list[str]:
    """Move the patient's progress forward (never back); the status follows unless it is
    locked, revoked or expired. Returns the fields changed, for the caller's save."""
    if PROGRESS_ORDER.index(Status(progress)) <= PROGRESS_ORDER.index(Status(share.progress)):
        return []
    share.progress = progress
    fields = ["progress"]
    if share.status in PROGRESS_ORDER:
        share.status = progress
        fields.append("status")
    return fields


def _save_progress(share: PatientShare, fields: list[str]) -> None:
    """Write the patient's progress (counters, times, status: nothing sealed) in the step's
    transaction, without the savepoint and signals of a model save."""
    PatientShare.objects.filter(pk=share.pk).update(**{name: getattr(share, name) for name in fields})


def _repeat_entry(key_hash: str) -> str:
    return f"pli:patient-opened:{key_hash}"


def _open(
    share: PatientShare, session: PatientSession, code: OneTimeCode, now: datetime.datetime, trail: _Trail
) -> StepResult:
    # A new key once both factors have passed: a key planted in the patient's browser before
    # (session fixation) opens nothing.
    key = tokens.new_session_key()
    PatientSession.objects.filter(pk=session.pk).update(
        key_hash=tokens.session_key_hash(key), stage=PatientSession.Stage.OPEN, opened_at=now, last_seen_at=now
    )
    # The browser may send the same code again with its former key, before it has taken
    # the new one (see _repeat). Kept in the shared cache, with the transaction.
    timeout = int(REPEAT_WINDOW.total_seconds())
    cache.set(_repeat_entry(session.key_hash), f"{session.pk} {code.pk}", timeout)
    share.open_count = F("open_count") + 1
    # The patient is in: the wrong codes before (typos, an old SMS) stop counting.
    share.code_failures = 0
    fields = ["open_count", "code_failures"]
    if share.opened_at is None:
        share.opened_at = now
        fields.append("opened_at")
    _save_progress(share, fields + _advance(share, Status.OPENED))
    trail.add("share.opened", share)
    return StepResult("ok", session_key=key)


def recently_opened(keys: Sequence[str]) -> bool:
    """Whether one of these keys was, until a few seconds ago, that of a session the code
    step has just opened (see _repeat): only then is a code without a session checked."""
    return any(cache.get(_repeat_entry(tokens.session_key_hash(key))) for key in keys)


def _opened_by(code: OneTimeCode, keys: Sequence[str]) -> list[tuple[str, str]]:
    """Those of the browser's keys that ``code`` has just replaced (see _open), each with
    the id of the session it opened."""
    found = []
    for key in keys:
        session_id, _space, code_id = str(cache.get(_repeat_entry(tokens.session_key_hash(key)), "")).partition(" ")
        if session_id.isdigit() and code_id == str(code.pk):
            found.append((key, session_id))
    return found


def _repeat(
    share: PatientShare, latest: OneTimeCode, keys: Sequence[str], now: datetime.datetime, trail: _Trail
) -> StepResult | None:
    """The latest code, which matched but was used, sent again within REPEAT_WINDOW by the
    browser it let in, with the key that browser held before (« Valider » tapped twice, or
    the form sent again after a slow answer: the browser never took the first answer's new
    key). That session gets a new key, no failure is counted and nothing is opened again.
    Anyone else (another browser, the same one later, or without that code) gets None."""
    since = now - REPEAT_WINDOW
    if latest.used_at is None or latest.used_at <= since:
        return None
    for key, session_id in _opened_by(latest, keys):
        renewed = tokens.new_session_key()
        if PatientSession.objects.filter(
            pk=session_id, share=share, stage=PatientSession.Stage.OPEN, ended_at__isnull=True, opened_at__gt=since
        ).update(key_hash=tokens.session_key_hash(renewed), last_seen_at=now):
            trail.add("share.code_repeated", share)
            return StepResult("again", session_key=renewed, replaces=key)
    return None


def open_session(
    share: PatientShare, session_key: str | None, now: datetime.datetime | None = None
) -> PatientSession | None:
    """The patient's session if it has passed both factors and the share is still available."""
    now = now or timezone.now()
    if _refusal(share, now):
        return None
    session = find_session(share, session_key, now)
    if session is None or session.stage != PatientSession.Stage.OPEN:
        return None
    return session


def record_documents_page(share: PatientShare, session: PatientSession, request: HttpRequest | None = None) -> None:
    """The patient read the message and the list of documents: keep the session alive and
    audit the reading (it shows health data)."""
    now = timezone.now()
    with transaction.atomic():
        touch_session(session, now)
        audit.record("share.documents_listed", actor=PATIENT, target=share, request=request)


def record_document_access(
    share_id: uuid.UUID,
    document_id: uuid.UUID,
    *,
    session_key: str | None,
    download: bool,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
    on_found: Callable[[ShareDocument], object] | None = None,
    on_recorded: Callable[[], object] | None = None,
) -> ShareDocument | None:
    """Audit a view or download by the patient (before any byte is sent); None if refused.
    ``on_found`` is called with the document once the access is allowed, before it is
    recorded; ``on_recorded`` once it is, before the record commits (raising undoes it)."""
    now = now or timezone.now()
    with transaction.atomic():
        share = _lock_share(share_id)
        session = open_session(share, session_key, now)
        document = _document(share, document_id) if session is not None else None
        if session is None or document is None:
            audit.record(
                "share.access_denied", actor=PATIENT, target=share, request=request, outcome=audit.DENIED,
                details={"reason": "no_session" if session is None else "no_document", "step": "document"},
            )  # fmt: skip
            return None
        if on_found is not None:
            on_found(document)
        touch_session(session, now)
        share.download_count = F("download_count") + 1
        fields = ["download_count"]
        if share.downloaded_at is None:
            share.downloaded_at = now
            fields.append("downloaded_at")
        # Viewing in the browser hands over the document just as a download does.
        _save_progress(share, fields + _advance(share, Status.DOWNLOADED))
        audit.record(
            "share.downloaded" if download else "share.viewed",
            actor=PATIENT,
            target=share,
            request=request,
            details={"document": str(document.pk)},
        )
        if on_recorded is not None:
            on_recorded()
    return document


def undelivered(share_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The shares whose link has reached the patient by no channel yet, each with why:

    * ``"failed"``: every link notification failed for good or was given up (a worker down
      past its deadline): the patient does not know about the link;
    * ``"delayed"``: none sent yet and the provider refused or did not answer at least once;
      Pli keeps retrying (for as long as the link lasts), but the practitioner may want to
      reach the patient another way meanwhile.

    Their status still says "sent" (the link exists). A revoked or expired share's
    notifications are given up too: callers show this only for a share still "sent"."""
    seen: dict[uuid.UUID, set[str]] = {}
    tried: set[uuid.UUID] = set()
    rows = ShareNotification.objects.filter(
        share_id__in=list(share_ids), kind__in=[ShareNotification.Kind.LINK, ShareNotification.Kind.REMINDER]
    ).values_list("share_id", "state", "attempts")
    for share_id, state, attempts in rows:
        seen.setdefault(share_id, set()).add(state)
        if state == ShareNotification.State.PENDING and attempts:
            tried.add(share_id)
    result: dict[uuid.UUID, str] = {}
    for share_id, states in seen.items():
        if ShareNotification.State.SENT in states:
            continue
        if ShareNotification.State.PENDING not in states:
            result[share_id] = "failed"
        elif share_id in tried:
            result[share_id] = "delayed"
    return result


def _document(share: PatientShare, document_id: uuid.UUID) -> ShareDocument | None:
    """One of the share's documents, with its data key (compiled once: pli.core.db.fetch)."""
    params = [db_value(ShareDocument, "id", document_id), db_value(ShareDocument, "share", share.pk)]
    found = fetch(
        "sharing.document",
        params,
        lambda: (
            ShareDocument.objects.select_related("data_key").filter(share_id=share.pk, pk=document_id).order_by()[:1]
        ),
    )
    return found[0] if found else None


def end_sessions(session_keys: Sequence[str], now: datetime.datetime | None = None) -> None:
    """End the sessions of these keys, whatever their share (a browser leaving)."""
    if session_keys:
        hashes = [tokens.session_key_hash(key) for key in session_keys]
        PatientSession.objects.filter(key_hash__in=hashes, ended_at__isnull=True).update(ended_at=now or timezone.now())


def reply(
    share_id: uuid.UUID,
    text: str,
    files: Sequence[PendingFile],
    *,
    session_key: str | None,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
    submission: str = "",
) -> tuple[ShareReply, bool]:
    """The patient's answer, delivered to the practitioner's mailbox as a message; with
    whether it is new. A ``submission`` (the form's random value) already answered is the
    same reply sent again (a double tap): the earlier one is returned and nothing is sent."""
    now = now or timezone.now()
    text = text.strip()
    if not text and not files:
        raise ShareError("empty", "write a message or add a file")
    with transaction.atomic():
        share = _lock_share(share_id)
        session = open_session(share, session_key, now)
        if session is None:
            raise ShareError("no_session")
        if submission:
            earlier = share.replies.filter(submission=submission).first()
            if earlier is not None:
                return earlier, False
        if not replies_open(share):
            raise ShareError("closed")
        _check_reply_allowance(share, files, now)
        message_id = _deliver_reply(share, text, files, now, request)
        answer = ShareReply.objects.create(
            share=share, message_id=message_id, created_at=now, file_count=len(files), submission=submission
        )
        audit.record("share.replied", actor=PATIENT, target=share, request=request, details={"files": len(files)})
    return answer, True


def _check_reply_allowance(share: PatientShare, files: Sequence[PendingFile], now: datetime.datetime) -> None:
    from pli.messaging.models import Attachment
    from pli.sharing.mailbox import REPLIES_PER_DAY, REPLY_BYTES_PER_DAY

    since = now - datetime.timedelta(days=1)
    recent = list(share.replies.filter(created_at__gt=since).values_list("message_id", flat=True))
    if len(recent) >= REPLIES_PER_DAY:
        raise ShareError("too_many_replies")
    sent = Attachment.objects.filter(message_id__in=recent).aggregate(total=Sum("size"))["total"] or 0
    if sent + sum(f.size for f in files) > REPLY_BYTES_PER_DAY:
        raise ShareError("too_many_replies")


def _deliver_reply(
    share: PatientShare,
    text: str,
    files: Sequence[PendingFile],
    now: datetime.datetime,
    request: HttpRequest | None,
) -> uuid.UUID:
    """Hand the reply to the practitioner's mailbox; the message is linked to the share by id."""
    from pli.messaging.services import UploadExpired
    from pli.sharing import mailbox

    try:
        return mailbox.deliver_patient_reply(share, text, files, now, request=request)
    except UploadExpired:
        # The upload outlived what messaging accepts of a pending blob (the orphan cleanup
        # may already have taken it): the patient sends again.
        raise ShareError("upload_expired") from None


# -- the practitioner's actions --------------------------------------------------------------


def _own_share(user: User, share_id: uuid.UUID) -> PatientShare:
    share = (
        PatientShare.objects.select_for_update(of=("self",), no_key=True)
        .select_related("created_by", "organisation")
        .filter(_in_charge(user), pk=share_id)
        .first()
    )
    if share is None:
        raise ShareError("not_found")
    return share


def revoke(
    user: User, share_id: uuid.UUID, *, request: HttpRequest | None = None, now: datetime.datetime | None = None
) -> PatientShare:
    now = now or timezone.now()
    with transaction.atomic():
        share = _own_share(user, share_id)
        if share.status == Status.REVOKED:
            return share
        # An expired link already opens nothing; revoking it would rewrite how it ended and
        # restart the clock of its documents' deletion (PURGE_AFTER_END from revoked_at).
        if share.effective_status(now) == Status.EXPIRED:
            raise ShareError(Status.EXPIRED)
        share.status = Status.REVOKED
        share.revoked_at = now
        share.save(update_fields=["status", "revoked_at"])
        share.codes.filter(retired=False).update(retired=True)
        share.patient_sessions.filter(ended_at__isnull=True).update(ended_at=now)
        notifications.cancel_pending(share)
        audit.record("share.revoked", actor=user, target=share, request=request)
    return share


def _ensure_active(share: PatientShare, now: datetime.datetime) -> None:
    status = share.effective_status(now)
    if status in (Status.REVOKED, Status.EXPIRED):
        raise ShareError(status)


def unlock(
    user: User,
    share_id: uuid.UUID,
    *,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
    resend: bool = False,
    corrections: Mapping[str, Any] | None = None,
) -> PatientShare:
    """Lift a lock: the attempt counters start again from zero. With ``resend``, a new link
    is sent too (see :func:`resend`), in the same transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        share = _own_share(user, share_id)
        _ensure_active(share, now)
        if share.status != Status.LOCKED:
            raise ShareError("not_locked")
        share.status = share.progress
        share.lock_reason = ""
        share.locked_at = None
        share.birth_date_failures = 0
        share.code_failures = 0
        share.counters_reset_at = now
        share.save(
            update_fields=[
                "status",
                "lock_reason",
                "locked_at",
                "birth_date_failures",
                "code_failures",
                "counters_reset_at",
            ]
        )
        share.codes.filter(retired=False).update(retired=True)
        share.patient_sessions.filter(ended_at__isnull=True).update(ended_at=now)
        # The new link's changes before either event: an audit event holds the trail's head
        # until COMMIT, and the worker locks a notification before its own event.
        resent = _send_new_link(share, now, corrections or {}) if resend else None
        audit.record("share.unlocked", actor=user, target=share, request=request)
        if resent is not None:
            audit.record("share.resent", actor=user, target=share, request=request, details=resent)
    return share


def _new_link(
    share: PatientShare,
    kind: str,
    now: datetime.datetime,
    *,
    keep_current: bool = False,
    corrected: Sequence[str] = (),
) -> list[str]:
    """Queue a new link. Only its hash is stored, so the patient gets a new token: with
    ``keep_current`` (a reminder) the current link keeps working beside it; otherwise every
    earlier link stops working. By e-mail when the patient has an address, except one their
    mail server refused for good, when a mobile is known: sent there again, the link would
    never arrive. ``corrected``: the contacts corrected in this transaction (tried again,
    whatever the former ones' fate)."""
    token = tokens.new_token()
    share.earlier_token_hash = share.token_hash if keep_current else None
    share.token_hash = tokens.token_hash(token)
    share.link_sent_at = now
    share.save(update_fields=["token_hash", "earlier_token_hash", "link_sent_at"])
    notifications.cancel_pending(share, kinds=[ShareNotification.Kind.LINK, ShareNotification.Kind.REMINDER])
    both = bool(share.patient_email and share.patient_mobile)
    by_sms = both and "email" not in corrected and _address_refused(share)
    # The e-mail says where the code will go: by e-mail once the number was refused for good.
    code_by_email = both and not by_sms and "mobile" not in corrected and _sms_failed_for_good(share)
    rendered = notifications.render_link(share, token, kind, by_sms=by_sms, code_by_email=code_by_email)
    return notifications.queue_link(share, token, kind, now, rendered)


def claim_action(user: User, share_id: uuid.UUID, action: str, submission: str) -> bool:
    """Whether the page's ``action`` button, whose form carried ``submission``, is to be done:
    False when that same form was sent before (a double click), which must not send the
    patient a second link. To be called in the action's transaction: the share stays locked
    until it commits, so two requests sent at once are one after the other."""
    share = _own_share(user, share_id)
    if not submission:
        return True
    claim = f"{action}:{submission}"
    if share.action_submission == claim:
        return False
    share.action_submission = claim
    share.save(update_fields=["action_submission"])
    return True


def resend(
    user: User,
    share_id: uuid.UUID,
    *,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
    corrections: Mapping[str, Any] | None = None,
) -> PatientShare:
    """Send the patient a fresh link (the earlier one stops working). ``corrections`` first
    corrects the patient's ``birth_date`` (a date), ``email`` and/or ``mobile`` (already
    validated, the mobile in E.164; None removes a contact): a mistyped birth date, address
    or number no longer means a new share."""
    now = now or timezone.now()
    with transaction.atomic():
        share = _own_share(user, share_id)
        _ensure_active(share, now)
        if share.status == Status.LOCKED:
            raise ShareError("locked")
        details = _send_new_link(share, now, corrections or {})
        audit.record("share.resent", actor=user, target=share, request=request, details=details)
    return share


def _send_new_link(share: PatientShare, now: datetime.datetime, corrections: Mapping[str, Any]) -> dict[str, str]:
    """Inside the caller's transaction, the share locked: correct the patient's birth date
    and contacts, queue the new link, end the sessions; returns the ``share.resent`` event's
    details."""
    changed = _correct_patient(share, corrections)
    channels = _new_link(share, ShareNotification.Kind.LINK, now, corrected=changed)
    # A new link is often sent because the first one went astray: whoever opened it is
    # let out with it.
    share.patient_sessions.filter(ended_at__isnull=True).update(ended_at=now)
    details = {"channels": ",".join(channels)}
    if changed:
        details["changed"] = ",".join(changed)  # which ones, never their values
    return details


CORRECTABLE = ("birth_date", "email", "mobile")


def _correct_patient(share: PatientShare, corrections: Mapping[str, Any]) -> list[str]:
    """Inside resend's transaction, the share locked: set the corrected birth date and
    contacts (sealed under the share's key, as at creation); return which changed. What was
    on its way to the former contacts (a code, a link) is cancelled and the codes retired.
    Wrong birth dates counted against a wrong one are forgotten: the patient typed theirs."""
    changed = [name for name in CORRECTABLE if name in corrections and corrections[name] != _current(share, name)]
    if not changed:
        return []
    if not any(corrections.get(name, _current(share, name)) for name in ("email", "mobile")):
        raise ShareError("no_contact", "an e-mail address or a mobile number is required")
    birth = corrections.get("birth_date", share.patient_birth_date)
    if share.patient_ins and contradicts_birth_date(share.patient_ins, birth):
        raise ShareError("birth_date_mismatch", "the birth date contradicts the patient's INS")
    fields = [f"patient_{name}" for name in changed]
    for name in changed:
        setattr(share, f"patient_{name}", corrections[name] or None)
    if "birth_date" in changed:
        share.birth_date_failures = 0
        fields.append("birth_date_failures")
    share.save(update_fields=fields)
    share.codes.filter(retired=False).update(retired=True)
    notifications.cancel_pending(share)
    return changed


def _contacts(share: PatientShare) -> tuple[str | None, str | None]:
    return share.patient_email, share.patient_mobile


def _current(share: PatientShare, name: str) -> Any:
    return getattr(share, f"patient_{name}")


def close_conversation(
    user: User, share_id: uuid.UUID, *, request: HttpRequest | None = None, now: datetime.datetime | None = None
) -> PatientShare:
    """The patient may no longer reply (what they sent stays). Closing twice changes
    nothing; a share that never took replies has no conversation to close (ShareError
    ``no_replies``)."""
    now = now or timezone.now()
    with transaction.atomic():
        share = _own_share(user, share_id)
        if not share.allow_reply:
            raise ShareError("no_replies")
        if share.closed_at is None:
            share.closed_at = now
            share.save(update_fields=["closed_at"])
            audit.record("share.closed", actor=user, target=share, request=request)
    return share


def open_document_blob(document: ShareDocument) -> Any:
    """The document's plaintext, streamed (a :class:`pli.blobs.BlobReader`)."""
    return share_blob_store().open(document.blob_id, document.data_encryption_key(), document.blob_aad("content"))


def open_document(
    share_id: uuid.UUID,
    document_id: uuid.UUID,
    *,
    session_key: str | None,
    download: bool,
    request: HttpRequest | None = None,
) -> tuple[ShareDocument, ReadAhead] | None:
    """The document and its plaintext for the patient, the access recorded (see
    :func:`record_document_access`); None if refused. The first segments are decrypted
    while the access is recorded; nothing can be sent before the record commits."""
    opened: list[ReadAhead] = []

    def start(document: ShareDocument) -> None:
        try:
            blob = open_document_blob(document)
        except (BlobNotFound, OSError) as exc:
            # Raised inside the access's transaction: nothing is recorded as handed over.
            logger.error("share document %s: its content cannot be read (%s)", document.pk, unreadable_reason(exc))
            raise ContentUnavailable from exc
        opened.append(ReadAhead(blob, eager=document.size > SEGMENT_SIZE))

    def check() -> None:
        # Decrypted meanwhile: a document altered or unreadable from its start is refused
        # with the page that says so, its access not recorded, instead of a response that
        # breaks off at its first byte.
        try:
            opened[0].check_start()
        except (CryptoError, OSError) as exc:
            logger.error("share document %s: its content cannot be read (%s)", document_id, unreadable_reason(exc))
            raise ContentUnavailable from exc

    try:
        document = record_document_access(
            share_id,
            document_id,
            session_key=session_key,
            download=download,
            request=request,
            on_found=start,
            on_recorded=check,
        )
    except BaseException:
        for content in opened:
            content.close()
        raise
    if document is None:
        return None
    return document, opened[0]


# -- periodic jobs ---------------------------------------------------------------------------


def patient_time_zone(share: PatientShare) -> zoneinfo.ZoneInfo:
    """Where the patient probably is: the zone of their mobile number (Guadeloupe is five
    or six hours behind Paris, La Réunion two or three ahead), else the instance's."""
    name = sms.time_zone_name(share.patient_mobile) if share.patient_mobile else None
    if name is not None:
        with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo(name)
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def reminder_hours_open(share: PatientShare, now: datetime.datetime) -> bool:
    """Whether ``now`` falls within PLI_REMINDER_HOURS for the patient of ``share``."""
    start, end = settings.PLI_REMINDER_HOURS
    return start <= now.astimezone(patient_time_zone(share)).hour < end


def send_due_reminders(now: datetime.datetime | None = None, limit: int = 500) -> int:
    """One reminder for a share not opened after 5 days (with a fresh link; the first one
    keeps working), sent within PLI_REMINDER_HOURS of the patient's day: a reminder that
    falls due at night waits for the morning. At most ``limit`` reminders a run."""
    now = now or timezone.now()
    # Counted from the link the patient has now, not from the share's creation: a new link
    # the practitioner sent on day 5 was otherwise followed minutes later by a reminder.
    sent_before = now - REMINDER_AFTER
    due = (
        PatientShare.objects.filter(
            status=Status.SENT, reminder_sent_at__isnull=True, link_sent_at__lte=sent_before, expires_at__gt=now
        )
        .order_by("link_sent_at", "pk")
        .values_list("link_sent_at", "pk")
    )
    count = 0
    last: tuple[datetime.datetime, uuid.UUID] | None = None
    # Oldest first, in batches past the shares left waiting for their patient's morning,
    # which would otherwise fill every run's batch and hold back those due now.
    while count < limit:
        after = (
            due if last is None else due.filter(Q(link_sent_at__gt=last[0]) | Q(link_sent_at=last[0], pk__gt=last[1]))
        )
        batch = list(after[:limit])
        if not batch:
            break
        last = batch[-1]
        for _sent_at, share_id in batch:
            if count < limit and _send_reminder(share_id, now, sent_before):
                count += 1
    return count


def _send_reminder(share_id: uuid.UUID, now: datetime.datetime, sent_before: datetime.datetime) -> bool:
    with transaction.atomic():
        share = (
            PatientShare.objects.select_for_update(of=("self",), no_key=True)
            .select_related("created_by", "organisation", "data_key")
            .get(pk=share_id)
        )
        if (
            share.status != Status.SENT
            or share.reminder_sent_at is not None
            or share.link_sent_at > sent_before
            or share.expires_at <= now
            or not reminder_hours_open(share, now)
        ):
            return False
        share.reminder_sent_at = now
        share.save(update_fields=["reminder_sent_at"])
        channels = _new_link(share, ShareNotification.Kind.REMINDER, now, keep_current=True)
        audit.record("share.reminder_queued", target=share, details={"channels": ",".join(channels)})
        return True


def expire_shares(now: datetime.datetime | None = None, limit: int = 500) -> int:
    now = now or timezone.now()
    due = PatientShare.objects.filter(status__in=[*PROGRESS_ORDER, Status.LOCKED], expires_at__lte=now).values_list(
        "pk", flat=True
    )[:limit]
    count = 0
    for share_id in list(due):
        with transaction.atomic():
            share = PatientShare.objects.select_for_update(no_key=True).get(pk=share_id)
            if share.effective_status(now) != Status.EXPIRED or share.status == Status.EXPIRED:
                continue
            share.status = Status.EXPIRED
            share.save(update_fields=["status"])
            share.codes.filter(retired=False).update(retired=True)
            share.patient_sessions.filter(ended_at__isnull=True).update(ended_at=now)
            notifications.cancel_pending(share)
            audit.record("share.expired", target=share)
            count += 1
    return count


def cleanup(now: datetime.datetime | None = None) -> dict[str, int]:
    """Forget what is no longer needed: old codes and sessions, documents of shares ended a
    while ago (shredded), the shares themselves past their organisation's retention, orphan
    blobs of uploads that never committed."""
    now = now or timezone.now()
    codes, _ = OneTimeCode.objects.filter(expires_at__lt=now - datetime.timedelta(days=1)).delete()
    sessions, _ = PatientSession.objects.filter(
        Q(ended_at__lt=now - datetime.timedelta(days=1)) | Q(last_seen_at__lt=now - datetime.timedelta(days=1))
    ).delete()
    purged = _purge_ended_documents(now)
    ended = purge_ended_shares(now)
    orphans = _remove_orphan_blobs(now)
    return {"codes": codes, "sessions": sessions, "documents": purged, "shares": ended, "orphans": orphans}


def _purge_ended_documents(now: datetime.datetime) -> int:
    limit = now - PURGE_AFTER_END
    ended = PatientShare.objects.filter(
        Q(status=Status.REVOKED, revoked_at__lt=limit) | Q(status=Status.EXPIRED, expires_at__lt=limit),
        document_count__gt=0,
    ).values_list("pk", flat=True)[:200]
    store = share_blob_store()
    count = 0
    for share_id in list(ended):
        with transaction.atomic():
            documents = list(ShareDocument.objects.filter(share_id=share_id))
            ShareDocument.objects.filter(share_id=share_id).delete()
            # Deleting the data keys shreds whatever copy of the blobs may survive elsewhere.
            DataKey.objects.filter(pk__in=[d.data_key_id for d in documents if d.data_key_id]).delete()
            PatientShare.objects.filter(pk=share_id).update(document_count=0)
            audit.record(
                "share.documents_purged",
                target=("sharing.patientshare", str(share_id)),
                details={"documents": len(documents)},
            )
            transaction.on_commit(_blob_deleter(store, [d.blob_id for d in documents]))
        count += len(documents)
    return count


def purge_ended_shares(now: datetime.datetime | None = None, limit: int = 200) -> int:
    """Delete the patient shares that ended (expired or revoked) longer ago than their
    organisation's retention period (``Organisation.retention_days``; None keeps them):
    the patient's names, birth date, INS, contacts and the message go with the row, and its
    keys are deleted. Only once its documents are gone (PURGE_AFTER_END). Recorded as
    ``share.deleted`` (no actor, reason ``retention``, the organisation's id, which the
    access journal finds its history by); the trail keeps the share's history, which holds
    no health data. At most ``limit`` shares a run; returns how many went."""
    now = now or timezone.now()
    deleted = 0
    policies = Organisation.objects.filter(retention_days__gte=MIN_RETENTION_DAYS).values_list("pk", "retention_days")
    for organisation_id, days in policies:
        before = now - datetime.timedelta(days=days or MIN_RETENTION_DAYS)
        ended = PatientShare.objects.filter(
            Q(revoked_at__lt=before) | Q(expires_at__lt=before, revoked_at__isnull=True),
            organisation_id=organisation_id,
            document_count=0,
        ).values_list("pk", flat=True)[:limit]
        for share_id in list(ended):
            with transaction.atomic():
                found = list(PatientShare.objects.select_for_update().filter(pk=share_id, document_count=0))
                if not found:
                    continue
                share = found[0]
                keys = [share.data_key_id, *share.notifications.values_list("data_key_id", flat=True)]
                share.delete()
                DataKey.objects.filter(pk__in=[k for k in keys if k is not None]).delete()
                audit.record(
                    "share.deleted",
                    target=("sharing.patientshare", str(share_id)),
                    details={"reason": "retention", "organisation": organisation_id},
                )
                deleted += 1
    return deleted


def _blob_deleter(store: BlobStore, blob_ids: list[str]) -> Callable[[], None]:
    def delete() -> None:
        for blob_id in blob_ids:
            store.delete(blob_id)

    return delete


def orphan_age() -> float:
    """How old an unreferenced blob must be to be removed: PLI_ORPHAN_BLOB_AGE, as for
    messaging's attachments, and never less than twice the age at which a finished upload
    stops being accepted (:func:`_check_uploads`)."""
    return orphan_blob_age()


def _remove_orphan_blobs(now: datetime.datetime) -> int:
    """Blobs written by an upload whose transaction never committed. Only blobs older than
    :func:`orphan_age` are considered, beyond any request that could still commit one."""
    try:
        # Against another database, every blob would look orphaned.
        instance.check_blob_dir()
    except instance.DataDirMismatch as exc:
        logger.error("blob cleanup refused: %s", exc)
        return 0

    def referenced(batch: list[str]) -> set[str]:
        ids = ShareDocument.objects.filter(pk__in=[uuid.UUID(b) for b in batch]).values_list("pk", flat=True)
        return {pk.hex for pk in ids}

    return share_blob_store().sweep(orphan_age(), referenced).removed


def run_periodic(now: datetime.datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    result = {
        "expired": expire_shares(now),
        "reminders": send_due_reminders(now),
        "requeued": notifications.requeue_stuck(now),
    }
    result.update(cleanup(now))
    return result


def reindex_shares(batch_size: int = 500) -> tuple[int, int]:
    """Compute every share's search tokens again (see pli.messaging.services.reindex_messages,
    which `pli messaging reindex` runs with it): (shares reindexed, shares that could not be
    decrypted and kept their tokens)."""
    done = unreadable = 0
    last: uuid.UUID | None = None
    while True:
        with transaction.atomic():
            batch = PatientShare.objects.select_related("data_key").select_for_update(of=("self",)).order_by("pk")
            if last is not None:
                batch = batch.filter(pk__gt=last)
            shares = list(batch[:batch_size])
            if not shares:
                break
            last = shares[-1].pk
            for share in shares:
                if share.data_key_id is None:
                    continue  # shredded: nothing to find it by
                try:
                    patient = ShareInput(
                        given_name=share.patient_given_name,
                        family_name=share.patient_family_name,
                        birth_date=datetime.date.min,
                        email=None,
                        mobile=None,
                        ins=share.patient_ins,
                    )
                except (CryptoError, ContentShredded) as exc:
                    logger.error("share %s: not reindexed, content unreadable (%s)", share.pk, type(exc).__name__)
                    unreadable += 1
                    continue
                tokens = _patient_tokens(patient)
                if tokens != share.search_tokens:
                    PatientShare.objects.filter(pk=share.pk).update(search_tokens=tokens)
                done += 1
    audit.record("share.reindex", details={"shares": done, "unreadable": unreadable})
    return done, unreadable
