"""Messaging services: the only code that writes messages, copies and attachments.

Every function that changes data runs in one transaction and records its audit event in
it. Callers (views, API) pass the acting user; visibility is always checked here: a user
sees a message only through a mailbox they belong to that holds a copy of it.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import datetime
import errno
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, Exists, F, Max, OuterRef, Q, QuerySet, Value, When, prefetch_related_objects
from django.db.models.functions import Coalesce, Greatest, Lower
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone, translation

from pli.accounts import services as accounts_services
from pli.accounts.models import MIN_RETENTION_DAYS, Mailbox, MailboxMember, Organisation, User
from pli.audit import services as audit
from pli.blobs import BlobNotFound, BlobReader, BlobStore, ReadAhead
from pli.core import instance
from pli.core.db import db_value, fetch, insert_rows, pipelined
from pli.core.encryption import ContentShredded
from pli.core.models import DataKey
from pli.crypto import CryptoError, DecryptionError, new_data_key
from pli.crypto.stream import SEGMENT_SIZE
from pli.messaging import search, tasks
from pli.messaging.models import (
    Answer,
    Attachment,
    DeletedCopy,
    Delivery,
    ExternalSender,
    Folder,
    Message,
    Reading,
    Role,
    SearchToken,
)
from pli.messaging.uploads import MAX_PENDING_AGE, PendingAttachment, UploadSession, attachment_aad, blob_store

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
INCOMING = (Role.TO, Role.CC)


class NotVisible(Exception):
    """The message (or attachment) does not exist or the user may not see it: callers answer
    exactly as for a missing one."""


def record_denied(
    user: Any, request: HttpRequest | None, target: tuple[str, object], step: str, **details: object
) -> None:
    """An access refused as "not found" (the object is missing, or not the caller's): kept
    in the audit trail, so that someone trying ids (or a colleague who should not read a
    mailbox) shows up there. ``target`` is (type, id) as given by the caller, who may have
    guessed it; ``step`` names what was attempted."""
    try:
        target_id = str(uuid.UUID(str(target[1])))
    except ValueError:
        target_id = "(not an id)"  # what was typed is not kept: it could be anything
    audit.record(
        f"{target[0].split('.')[-1]}.access_denied",
        actor=user,
        target=(target[0], target_id),
        request=request,
        outcome=audit.DENIED,
        details={"step": step, **{k: str(v)[:64] for k, v in details.items() if v is not None}},
    )


class NotInTrash(Exception):
    """Only a copy in the trash can be deleted for good."""


class SourceGone(Exception):
    """The message answered or forwarded was deleted for good after the form accepted it."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class UploadExpired(Exception):
    """A pending attachment blob is missing or too old to be committed safely."""


class BadCursor(Exception):
    pass


class ContentUnavailable(Exception):
    """The attachment exists but its blob cannot be read (missing, or its file unreadable):
    a fault of the server's storage, logged where it is raised."""


def unreadable_reason(exc: BaseException) -> str:
    """How a blob failed to open, for the log: ``missing`` or the errno's name (no path)."""
    if isinstance(exc, BlobNotFound):
        return "missing"
    number = exc.errno if isinstance(exc, OSError) else None
    return errno.errorcode.get(number or 0, type(exc).__name__)


def unavailable(attachment: Attachment, exc: BaseException) -> ContentUnavailable:
    """The attachment's content cannot be read: said to the operator in one line (its id and
    why, never a path or a name), and to the user as ContentUnavailable."""
    logger.error("attachment %s: its content cannot be read (%s)", attachment.pk, unreadable_reason(exc))
    return ContentUnavailable()


@contextlib.contextmanager
def reading_source(attachment: Attachment) -> Iterator[BlobReader]:
    """The attachment's content, to copy elsewhere (a forward, a share). A blob deleted for
    good stays BlobNotFound (the caller says the message is gone); one whose file cannot be
    opened (permissions after a restore) or that fails authentication (altered) is
    ContentUnavailable, not a bare 500. Errors writing the copy pass through unchanged (a
    full disk is answered 507)."""
    try:
        reader = blob_store().open(attachment.blob_id, attachment.data_encryption_key(), attachment.blob_aad("content"))
    except OSError as exc:
        raise unavailable(attachment, exc) from exc
    with reader:
        try:
            yield reader
        except DecryptionError as exc:
            raise unavailable(attachment, exc) from exc


# --- mailboxes ------------------------------------------------------------------------------


def mailboxes_for(user: Any) -> QuerySet[Mailbox]:
    """The active mailboxes ``user`` works in (their own and their organisations' shared ones)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return Mailbox.objects.none()
    return accounts_services.mailboxes_for(user)


def mailbox_list(user: Any) -> list[Mailbox]:
    """:func:`mailboxes_for` as a list (pli.accounts.services.mailbox_list)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return []
    return accounts_services.mailbox_list(user)


def mailbox_for(user: Any, mailbox_id: uuid.UUID | str) -> Mailbox:
    """One of ``user``'s mailboxes, or :class:`NotVisible`."""
    try:
        mailbox = Mailbox.objects.get(pk=mailbox_id)
    except (Mailbox.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise NotVisible from exc
    if not can_send_from(user, mailbox):
        raise NotVisible
    return mailbox


def can_send_from(user: Any, mailbox: Mailbox) -> bool:
    """Whether ``user`` works in ``mailbox`` (reads it, sends from it): the rule of
    :func:`mailboxes_for`, asked about one mailbox."""
    if not mailbox.is_active or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if mailbox.kind == Mailbox.Kind.PERSONAL:
        # A personal mailbox is its owner's: no query needed for the common case.
        return bool(mailbox.owner_id == user.pk)
    return accounts_services.user_can_use_mailbox(user, mailbox)


def unread_counts(mailbox_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many copies wait unread in each mailbox's inbox. A plain statement: every page's
    navigation and every poll of the API's mailbox list asks, and the ORM took longer to
    build the query than the database to answer it."""
    ids = list(mailbox_ids)
    counts = {mailbox_id: 0 for mailbox_id in ids}
    if not ids:
        return counts
    # The mailbox ids as the database holds them (hex text on SQLite), back to the caller's.
    stored = {db_value(Delivery, "mailbox", mailbox_id): mailbox_id for mailbox_id in ids}
    with connection.cursor() as cursor:
        cursor.execute(_UNREAD.format(places=", ".join(["%s"] * len(stored))), [Folder.INBOX.value, *stored])
        for mailbox_id, count in cursor.fetchall():
            counts[stored[mailbox_id]] = count
    return counts


_UNREAD = (
    f"SELECT mailbox_id, COUNT(*) FROM {Delivery._meta.db_table} "  # noqa: S608 - a model's table; values bound
    "WHERE folder = %s AND read_at IS NULL AND mailbox_id IN ({places}) GROUP BY mailbox_id"
)


def resolve_addresses(addresses: Iterable[str]) -> tuple[list[Mailbox], list[str]]:
    """Active mailboxes for ``addresses`` (case-insensitive), and the addresses not found."""
    # NUL can't be sent to PostgreSQL; no address holds one anyway.
    wanted = list(dict.fromkeys(a.strip().lower() for a in addresses if a.strip() and "\x00" not in a))
    found = {m.address.lower(): m for m in _active_mailboxes(wanted)}
    missing = [a for a in wanted if a not in found]
    if missing:
        # Addresses are stored as typed; a second, case-insensitive pass catches "Dr.X@…".
        for address in list(missing):
            match = Mailbox.objects.filter(address__iexact=address, is_active=True).first()
            if match is not None:
                found[address] = match
                missing.remove(address)
    return [found[a] for a in wanted if a in found], missing


def closed_addresses(addresses: Iterable[str]) -> set[str]:
    """Those of ``addresses`` (lower case) that belonged to a mailbox closed since: its holder
    left their last organisation. Asked only when a send names an address not found."""
    wanted = [a for a in addresses if "\x00" not in a]
    if not wanted:
        return set()
    closed = Mailbox.objects.annotate(lowered=Lower("address")).filter(lowered__in=wanted, is_active=False)
    return set(closed.values_list("lowered", flat=True))


def _active_mailboxes(addresses: list[str]) -> list[Mailbox]:
    if not addresses:
        return []
    # Every send runs this lookup: its SQL is compiled once (pli.core.db.fetch).
    # ``is_active=True`` compiles to a bare column test, without a parameter.
    params = list(addresses)
    return fetch(
        "messaging.active_mailboxes",
        params,
        lambda: Mailbox.objects.filter(address__in=addresses, is_active=True).order_by(),
    )


# --- sending --------------------------------------------------------------------------------


@dataclass
class Draft:
    """A validated message, ready to send (built by :class:`pli.messaging.forms.ComposeForm`)."""

    sender: Mailbox
    to: list[Mailbox]
    cc: list[Mailbox] = field(default_factory=list)
    subject: str = ""
    body: str = ""
    patient: dict[str, str] | None = None
    in_reply_to: Message | None = None
    forward_of: Message | None = None
    forward_attachments: list[Attachment] = field(default_factory=list)
    uploads: list[PendingAttachment] = field(default_factory=list)
    # The web form's random value (see Message.submission); "" for the API and the demo.
    submission: str = ""

    def __repr__(self) -> str:
        # Subject, body and patient are health data: never in a traceback or a log line.
        return "<Draft>"


def copy_attachment(attachment: Attachment, session: UploadSession) -> PendingAttachment:
    """Re-encrypt ``attachment``'s content under a new key, for a forwarded message: each
    attachment keeps its own key, so shredding one never touches the other."""
    store = session.store
    new_id = uuid.uuid4()
    key = new_data_key()
    with reading_source(attachment) as reader:
        info = store.put(new_id.hex, reader, key, attachment_aad(new_id))
    pending = PendingAttachment(
        id=new_id,
        key=key,
        name=attachment.name,
        content_type=attachment.content_type,
        size=info.size,
        sha256=info.sha256,
        completed_at=time.monotonic(),
        format=attachment.format or "",
    )
    session.add(pending)
    return pending


class DurableUpload(Protocol):
    """A file already encrypted into the attachment store (:func:`blob_store`) under its own
    key with :func:`attachment_aad`, and made durable: :class:`PendingAttachment`, or what
    another app's upload handler leaves (a patient's reply)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def key(self) -> bytes: ...
    @property
    def name(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def completed_at(self) -> float: ...
    @property
    def blob_id(self) -> str: ...


def _check_pending(store: BlobStore, uploads: Sequence[DurableUpload]) -> None:
    now = time.monotonic()
    for item in uploads:
        if now - item.completed_at > MAX_PENDING_AGE or not store.exists(item.blob_id):
            raise UploadExpired(item.blob_id)


def _seal_message(
    message: Message, subject: str, body: str, patient: dict[str, str] | None, pending: Sequence[DurableUpload]
) -> tuple[list[DataKey], list[Attachment]]:
    """Give the new ``message`` its content and an attachment per upload, each object under
    its own data key (an upload keeps the key its blob was encrypted with). Returns the
    unsaved key rows and attachments, to insert with the message."""
    message.attachment_count = len(pending)
    message.attachments_size = sum(p.size for p in pending)
    data_keys = [message.adopt_key(new_data_key())]
    message.subject = subject
    message.body = body
    message.patient = patient
    attachments: list[Attachment] = []
    for position, item in enumerate(pending):
        attachment = Attachment(id=item.id, message=message, position=position, size=item.size)
        data_keys.append(attachment.adopt_key(item.key))
        attachment.name = item.name
        attachment.content_type = item.content_type
        attachment.sha256 = item.sha256
        # A patient's reply files (another app's uploads) are not looked at for formats.
        attachment.format = getattr(item, "format", "") or None
        attachments.append(attachment)
    return data_keys, attachments


def send_message(
    author: User,
    draft: Draft,
    *,
    session: UploadSession,
    request: HttpRequest | None = None,
    on_created: Callable[[uuid.UUID], None] | None = None,
) -> Message:
    """Send ``draft``: the message, its attachments, a copy per recipient mailbox and the
    sender's copy in "sent" commit together, or nothing does. ``on_created`` runs in that
    transaction with the message's id (the API records its Idempotency-Key there).

    The attachment blobs are already durable (written and fsynced by the upload handler or
    by :func:`copy_attachment`) when the transaction starts. On success the session is told
    to keep them; on failure the caller's session discards them.

    A draft whose ``submission`` its author already sent is the same form sent twice: the
    message sent the first time is returned, nothing is sent and the session keeps nothing.
    """
    earlier = _submitted(author, draft.submission)
    if earlier is not None:
        return earlier
    try:
        forwarded = [copy_attachment(original, session) for original in draft.forward_attachments]
    except BlobNotFound:
        # Only a deletion for good removes a stored attachment's blob.
        raise SourceGone("forward_of") from None
    pending = [*draft.uploads, *forwarded]
    parent = draft.in_reply_to or draft.forward_of
    now = timezone.now()

    # Everything is built (keys wrapped, rows prepared, tokens computed) before the
    # transaction opens: on SQLite the write lock is held from BEGIN to COMMIT, so the
    # transaction only runs the inserts.
    message = Message(
        thread_id=parent.thread_id if parent is not None else uuid.uuid4(),
        sender=draft.sender,
        author=author,
        # A forward answers nothing (the API's in_reply_to would say it did); it stays in
        # the thread of what it forwards.
        in_reply_to=draft.in_reply_to,
        sent_at=now,
        submission=draft.submission,
    )
    data_keys, attachments = _seal_message(message, draft.subject, draft.body, draft.patient, pending)

    copies = [
        Delivery(
            message=message,
            mailbox=draft.sender,
            role=Role.SENDER,
            folder=Folder.SENT,
            sent_at=now,
            delivered_at=now,
            read_at=now,
            read_by=author,
            first_read_at=now,
        )
    ]
    seen: set[uuid.UUID] = set()
    for role, mailboxes in ((Role.TO, draft.to), (Role.CC, draft.cc)):
        for mailbox in mailboxes:
            if mailbox.pk not in seen:
                seen.add(mailbox.pk)
                copies.append(
                    Delivery(
                        message=message, mailbox=mailbox, role=role, folder=Folder.INBOX, sent_at=now, delivered_at=now
                    )
                )
    tokens = [SearchToken(message=message, token=t) for t in search.message_tokens(draft.subject, draft.patient)]

    try:
        with transaction.atomic(), pipelined():
            _check_pending(session.store, pending)
            insert_rows(data_keys)
            insert_rows([message])
            insert_rows(attachments)
            insert_rows(tokens)
            if draft.in_reply_to is not None:
                _mark_answered(author, draft.in_reply_to, now)
            # As late as the lock order allows: the mailboxes' rows stay locked until COMMIT.
            insert_copies(copies)
            touch_mailbox(draft.sender, now)
            if on_created is not None:
                # Before the audit event, whose head row stays locked until COMMIT: what
                # on_created locks (the API token's row, which a revocation locks before its
                # own event) would otherwise be waited for in the reverse order, a deadlock.
                on_created(message.pk)
            audit.record(
                "message.send",
                actor=author,
                target=message,
                request=request,
                details={
                    "sender": str(draft.sender.pk),
                    "recipients": len(copies) - 1,
                    "attachments": len(pending),
                    "bytes": message.attachments_size,
                    "reply": draft.in_reply_to is not None,
                    "forward": draft.forward_of is not None,
                },
            )
            # The parent was visible when the form checked it, but its last copy may have been
            # deleted for good since: the foreign key would then fail at COMMIT (a 500). Checked
            # after audit.record, which holds the audit chain's head lock that delete_message
            # also takes before purging: a purge committed before this point is seen here, and
            # a later one waits for this commit, then finds this message and unlinks it.
            if parent is not None and not Message.objects.filter(pk=parent.pk).exists():
                raise SourceGone("in_reply_to" if draft.in_reply_to is not None else "forward_of")
    except IntegrityError:
        # The same form sent twice at once: the other request's message went in first.
        earlier = _submitted(author, draft.submission)
        if earlier is None:
            raise
        return earlier
    session.keep()
    message.__dict__["attachment_list"] = attachments
    transaction.on_commit(tasks.ensure_cleanup_scheduled)
    return message


def _submitted(author: User, submission: str) -> Message | None:
    """The message ``author`` already sent from the form of this ``submission``, if any."""
    if not submission:
        return None
    return Message.objects.filter(author=author, submission=submission).first()


def mark_answered(author: User, message_id: uuid.UUID, now: datetime.datetime) -> None:
    """``author`` answered the message another way than by a reply (a patient's answer,
    by a new secure share): their copies of it are answered, for the team to see. To be
    called in the transaction that makes the answer."""
    parent = Message.objects.filter(pk=message_id).first()
    if parent is not None:
        _mark_answered(author, parent, now)


def _mark_answered(author: User, parent: Message, now: datetime.datetime) -> None:
    # Read in the transaction, the copies locked: one deleted for good meanwhile (by a
    # colleague, from the shared mailbox's trash) must not be recorded as answered.
    answered = _answered_copies(author, parent)
    if answered:
        # The receipt keeps the first answer; every member who answers is listed.
        Delivery.objects.filter(pk__in=answered, answered_at__isnull=True).update(answered_at=now, answered_by=author)
        Answer.objects.bulk_create(
            [Answer(delivery_id=pk, user=author, answered_at=now) for pk in answered], ignore_conflicts=True
        )


def _answered_copies(author: User, parent: Message) -> list[int]:
    """The copies of ``parent`` that this reply answers: every one the author received, in
    their own mailbox and in the shared ones they work in, whichever they answered from. A
    GP who answers from her own mailbox a letter sent to her and to the team has answered it
    for the team too, and the team must see it (or answer a second time).

    Called in the send's transaction: the copies stay locked (PostgreSQL; SQLite's write
    lock covers it) until the answer commits, as :func:`delete_message` locks those it
    deletes. In primary-key order, as reading and deleting lock copies: in any other order
    a reply and a reading of the same copies could each hold one the other waits for."""
    return list(
        Delivery.objects.filter(message=parent, role__in=INCOMING, mailbox__in=mailboxes_for(author))
        .select_for_update(of=("self",), no_key=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- receiving from outside Pli's mailboxes ------------------------------------------------


def receive_external_message(
    mailbox: Mailbox,
    *,
    sender_kind: ExternalSender,
    sender_name: str,
    subject: str,
    body: str,
    patient: dict[str, str] | None = None,
    attachments: Sequence[DurableUpload] = (),
    thread_id: uuid.UUID | None = None,
    in_reply_to: Message | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
    now: datetime.datetime | None = None,
) -> Message:
    """Deliver to ``mailbox``'s inbox a message that no Pli mailbox sent (a patient answering
    a secure share): the message, its attachments, the copy, its search tokens and the audit
    event commit together, or nothing does.

    Inside the caller's transaction it joins it, so the caller's own rows (the share's link
    to the reply) commit or roll back with the message. ``sender_name`` is who readers see
    as the sender; it is encrypted with the message, like the subject. The attachments'
    blobs belong to the caller's upload batch until the commit: the caller keeps them on
    success and discards them otherwise (:class:`UploadExpired` if one is too old).
    """
    now = now or timezone.now()
    pending = list(attachments)
    if thread_id is None:
        thread_id = in_reply_to.thread_id if in_reply_to is not None else uuid.uuid4()
    # As in send_message: everything is sealed and prepared before the transaction opens.
    message = Message(thread_id=thread_id, sender=None, author=None, in_reply_to=in_reply_to, sent_at=now)
    message.external_sender = {"kind": str(sender_kind), "name": sender_name}
    data_keys, rows = _seal_message(message, subject, body, patient, pending)
    copy = Delivery(message=message, mailbox=mailbox, role=Role.TO, folder=Folder.INBOX, sent_at=now, delivered_at=now)
    tokens = [SearchToken(message=message, token=t) for t in search.message_tokens(subject, patient)]

    with transaction.atomic():
        _check_pending(blob_store(), pending)
        insert_rows(data_keys)
        insert_rows([message])
        insert_rows(rows)
        insert_rows(tokens)
        insert_copies([copy])
        audit.record(
            "message.receive",
            actor=actor,
            target=message,
            request=request,
            details={
                "mailbox": str(mailbox.pk),
                "origin": str(sender_kind),
                "attachments": len(pending),
                "bytes": message.attachments_size,
            },
        )
    message.__dict__["attachment_list"] = rows
    transaction.on_commit(tasks.ensure_cleanup_scheduled)
    return message


# --- reading --------------------------------------------------------------------------------


@dataclass
class Page:
    items: list[Delivery]
    next_cursor: str | None


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def encode_cursor(delivery: Delivery) -> str:
    """The position after ``delivery`` in a newest-first list: its time (exact, in integer
    microseconds: a float would round and skip or repeat messages sent the same instant)
    and its id."""
    micros = (delivery.sent_at - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"{micros}.{delivery.pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros, pk = raw.split(".")
        if not (micros.lstrip("-").isdigit() and pk.isdigit()) or int(pk) >= 2**63:
            raise ValueError(raw)
        return _EPOCH + int(micros) * _MICROSECOND, int(pk)
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError) as exc:
        raise BadCursor(cursor) from exc


@dataclass
class SearchQuery:
    text: str = ""
    sender: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None

    def __repr__(self) -> str:
        # The words are patient names or an INS.
        return "<SearchQuery>"

    def __bool__(self) -> bool:
        return bool(self.text.strip() or self.sender.strip() or self.date_from or self.date_to)


def _day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


# Below this many messages in the instance, a word of a search is looked up from its messages.
RARE_WORD_MESSAGES = 1000


def _apply_search(qs: QuerySet[Delivery], query: SearchQuery) -> QuerySet[Delivery]:
    groups = search.query_tokens(query.text)
    if query.text.strip() and not groups:
        return qs.none()  # "a" or "-": no word to match, not a search for everything
    for group in groups:
        tokens = SearchToken.objects.filter(token__in=group)
        # Two ways to match a word, each fast where the other is slow. A rare word (an INS,
        # a patient's name) is found from its few messages in the instance. A common one
        # ("bilan") is in thousands of messages of every mailbox: the copies are walked
        # newest first, each checked by the token index, up to the page's end; listing
        # every message of the instance with the word instead grew with the instance.
        # Counting stops at the threshold: it costs at most that many index entries.
        if tokens[:RARE_WORD_MESSAGES].count() < RARE_WORD_MESSAGES:
            qs = qs.filter(message_id__in=tokens.values("message_id"))
        else:
            qs = qs.filter(Exists(tokens.filter(message_id=OuterRef("message_id"))))
    if query.sender.strip():
        qs = qs.filter(Q(message__sender_id__in=_senders_like(qs, query.sender)) | _from_patient(query.sender))
    if query.date_from:
        qs = qs.filter(sent_at__gte=_day_start(query.date_from))
    if query.date_to:
        qs = qs.filter(sent_at__lt=_day_start(query.date_to + datetime.timedelta(days=1)))
    return qs


def sent_by_someone_like(mailbox: Mailbox, text: str) -> bool:
    """Whether ``mailbox`` holds messages from a sender whose name or address has every
    word of ``text`` (see :func:`_senders_like`): a search for « Durand » in the words finds
    no message when Durand is who wrote them, and the page then offers the search by sender."""
    return bool(_senders_like(Delivery.objects.filter(mailbox=mailbox), text))


def _senders_like(copies: QuerySet[Delivery], text: str) -> list[uuid.UUID]:
    """The senders of ``copies`` whose name or address holds every word of ``text``, without
    regard to accents, case or dashes ("HÔPITAL", "edouard herriot" for "Hôpital
    Édouard-Herriot"), a name of several parts also written as one ("ndiaye" for "N'Diaye",
    as patients' names are found). Compared here: SQLite's LIKE folds the case of ASCII
    letters only, and neither database folds accents. Names and addresses are directory
    data, not health data."""
    wanted = search.name_parts(text)
    if not wanted:
        return []
    senders = Mailbox.objects.filter(pk__in=copies.values("message__sender_id")).values_list("pk", "name", "address")
    found = []
    for pk, name, address in senders:
        known = " ".join([*search.name_parts(f"{name} {address}"), *search.joined_names(name)])
        if all(word in known for word in wanted):
            found.append(pk)
    return found


# The words of the label of a patient's answer (« Patient — name (lien sécurisé) », or
# "(secure link)"): they say it is a patient's, not which one.
_PATIENT_LABEL = frozenset({"patient", "patiente", "lien", "securise", "secure", "link"})


def _from_patient(text: str) -> Q:
    """The messages a patient sent (no sender mailbox; lists name them « Patient — name »)
    whose patient has every word of ``text`` among their names, whole or by their first
    letters: that name is sealed, but it is the message's patient, indexed by keyed tokens.
    The words of the label itself find every patient's answer."""
    names = [part for part in text.split() if not set(search.words(part)) <= _PATIENT_LABEL]
    labelled = any(search.words(part) for part in text.split() if part not in names)
    groups = search.query_tokens(" ".join(names), kinds=(search.PATIENT_NAME,))
    if not groups and (names or not labelled):
        return Q(pk__in=[])
    condition = Q(message__sender__isnull=True, message__external_sender__isnull=False)
    for group in groups:
        condition &= Q(message_id__in=SearchToken.objects.filter(token__in=group).values("message_id"))
    return condition


LIST_FIELDS = (
    "id",
    "message_id",
    "mailbox_id",
    "role",
    "folder",
    "sent_at",
    "read_at",
    "answered_at",
    # The first to answer: named on the list to the others (views._name_answerers).
    "answered_by",
    "uid",
    "message__id",
    "message__thread_id",
    "message__sent_at",
    "message__subject",
    "message__attachment_count",
    # Null but for messages from outside Pli's mailboxes, whose sender it names.
    "message__external_sender",
    "message__data_key__id",
    "message__data_key__key_version",
    "message__data_key__wrapped",
    "message__sender__id",
    "message__sender__address",
    "message__sender__name",
)


def folder_page(
    mailbox: Mailbox,
    folder: str | None,
    *,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    query: SearchQuery | None = None,
    unread: bool | None = None,
) -> Page:
    """One page of a folder (or, with ``folder=None``, of the whole mailbox but the trash),
    newest first, by keyset: a deep page costs what the first one does. ``unread``: True, the
    unread copies alone; False, the read ones alone (one's own sent copy is read from the
    start); None, both."""
    qs = Delivery.objects.filter(mailbox=mailbox)
    qs = qs.filter(folder=folder) if folder else qs.exclude(folder=Folder.TRASH)
    if unread is not None:
        qs = qs.filter(read_at__isnull=unread)
    if query:
        qs = _apply_search(qs, query)
    if cursor:
        moment, pk = decode_cursor(cursor)
        # The first condition alone is the position; the range bound lets the index seek to
        # it instead of scanning every newer row (a deep page would cost its depth).
        qs = qs.filter(sent_at__lte=moment).filter(Q(sent_at__lt=moment) | Q(sent_at=moment, pk__lt=pk))
    rows = list(
        qs.select_related("message", "message__data_key", "message__sender")
        # Not the bodies, nor the patient context: a list shows subjects only.
        .only(*LIST_FIELDS)
        .order_by("-sent_at", "-id")[: limit + 1]
    )
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page(items=rows[:limit], next_cursor=next_cursor)


def arrivals_page(mailbox: Mailbox, after_uid: int, *, limit: int = PAGE_SIZE) -> Page:
    """The copies filed in ``mailbox`` after number ``after_uid``, in the order they arrived:
    whatever folder they are in now (the trash, the sent copies too) and read or not, for
    software that must see each letter once, even one a person opened or filed before it
    came by. One range of the index of the numbers; the next page starts after the last."""
    rows = list(
        Delivery.objects.filter(mailbox=mailbox, uid__gt=after_uid)
        .select_related("message", "message__data_key", "message__sender")
        .only(*LIST_FIELDS)
        .order_by("uid")[: limit + 1]
    )
    return Page(items=rows[:limit], next_cursor=str(rows[limit - 1].uid) if len(rows) > limit else None)


def arrived_count(mailbox: Mailbox, after_uid: int) -> int:
    """How many letters filed in ``mailbox`` after number ``after_uid`` are in its inbox now:
    what a page shown at that number has not listed. Counts only (no subject): not a read."""
    return Delivery.objects.filter(mailbox=mailbox, uid__gt=after_uid, folder=Folder.INBOX).count()


def record_listing(user: Any, mailbox: Mailbox, folder: str | None, count: int, request: HttpRequest | None) -> None:
    """Listing shows subjects (health data): it is a read, and recorded as one. It is also a
    use of the mailbox (CNIL: a mailbox unused for a year is emptied)."""
    with transaction.atomic():
        # Before the event: its head row stays locked until COMMIT (lock order).
        touch_mailbox(mailbox)
        audit.record(
            "mailbox.list",
            actor=user,
            target=mailbox,
            request=request,
            details={"folder": folder or "all", "count": count},
        )


# A mailbox's use is recorded to the half-day: a write per listing would be a write per page.
USE_PRECISION = datetime.timedelta(hours=12)


def insert_copies(copies: Sequence[Delivery]) -> None:
    """Insert ``copies``, each numbered in its mailbox (Delivery.uid) by the database, in
    the caller's transaction: each mailbox's counter is raised, then each copy takes its
    number from it.

    The counter row stays locked until COMMIT, so a mailbox's numbers become visible in
    increasing order: software that has seen number n has seen every copy numbered below
    it, and will never see one appear there later (a newest-first page can: a letter sent
    first may commit last). The rows are locked in key order, as every send takes them,
    after the copies a send locks (the original's, marked answered) and before the audit
    trail's head: copies, mailboxes, head, the order of every transaction here. Nothing is
    read back (PostgreSQL's pipeline sends the statements without waiting): the lock is
    held from the counter's update to the COMMIT and not a round trip longer. The copies
    don't learn their numbers.
    """
    counts = collections.Counter(copy.mailbox_id for copy in copies)
    left = dict(counts)
    below_last: dict[int, int] = {}  # each copy's number is its mailbox's last minus this
    for copy in copies:
        left[copy.mailbox_id] -= 1
        below_last[id(copy)] = left[copy.mailbox_id]
    with connection.cursor() as cursor:
        for mailbox_id in sorted(counts):
            cursor.execute(
                "UPDATE pli_mailbox SET last_uid = last_uid + %s WHERE id = %s",
                [counts[mailbox_id], db_value(Mailbox, "id", mailbox_id)],
            )
    insert_rows(
        copies,
        computed=(
            "uid",
            "SELECT last_uid - %s FROM pli_mailbox WHERE id = %s",
            lambda copy: [below_last[id(copy)], db_value(Mailbox, "id", copy.mailbox_id)],
        ),
    )


def touch_mailbox(mailbox: Mailbox, now: datetime.datetime | None = None) -> None:
    """Record a use of ``mailbox`` (a listing, a message read, a send): its inactivity counts from now, and
    a warning that it would be emptied no longer holds."""
    now = now or timezone.now()
    if mailbox.last_used_at is not None and now - mailbox.last_used_at < USE_PRECISION:
        return
    Mailbox.objects.filter(pk=mailbox.pk).update(last_used_at=now, inactivity_warned_at=None)
    mailbox.last_used_at, mailbox.inactivity_warned_at = now, None


def answered_by_others(user: Any, message_id: uuid.UUID | str) -> list[tuple[str, datetime.datetime]]:
    """Who else answered this message in a mailbox ``user`` works in, and when (first answer
    each): said on the reply form, before two members of a team answer the same letter."""
    copies = [copy.pk for copy in visible_copies(user, message_id)]
    if not copies:
        return []
    answers = Answer.objects.filter(delivery_id__in=copies).exclude(user=user).select_related("user")
    first: dict[Any, tuple[str, datetime.datetime]] = {}
    for answer in answers.order_by("answered_at", "id"):
        first.setdefault(answer.user_id, (answer.user.display_name, answer.answered_at))
    return list(first.values())


def visible_copies(user: Any, message_id: uuid.UUID | str) -> list[Delivery]:
    """``user``'s copies of a message (through any of their mailboxes); empty if none.

    From SQL compiled once (pli.core.db.fetch): every reading of a message, on the web and
    through the API, starts here, and the ORM took longer to write the query than the
    database to answer it."""
    try:
        message_uuid = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(str(message_id))
    except ValueError:
        return []
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    user_id = db_value(User, "id", user.pk)

    def build() -> QuerySet[Delivery]:
        return (
            Delivery.objects.filter(message_id=message_uuid, mailbox__in=mailboxes_for(user))
            .select_related("message", "message__data_key", "message__sender", "mailbox")
            .order_by("role", "mailbox__name")
        )

    # mailboxes_for's parameters, then the message (the ORM orders the filter's terms).
    params = [user_id, Mailbox.Kind.ORGANISATIONAL.value, user_id, user_id, db_value(Delivery, "message", message_uuid)]
    return fetch("messaging.visible_copies", params, build)


def visible_message_ids(user: Any, message_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``message_ids`` that ``user`` holds a copy of (see :func:`visible_copies`)."""
    return set(
        Delivery.objects.filter(message_id__in=list(message_ids), mailbox__in=mailboxes_for(user)).values_list(
            "message_id", flat=True
        )
    )


def _visible_attachment(user: Any, message_id: uuid.UUID | str, attachment_id: uuid.UUID | str) -> Attachment | None:
    """The attachment (with its data key) if ``user`` has a copy of its message, else None.

    One query, compiled once (pli.core.db.fetch): it is all a download does before its
    first byte, and the ORM would take longer to write it than the database to answer.
    """
    try:
        message_uuid = uuid.UUID(str(message_id))
        attachment_uuid = uuid.UUID(str(attachment_id))
    except ValueError:
        return None
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    pk = db_value(Attachment, "id", attachment_uuid)
    message = db_value(Attachment, "message", message_uuid)
    user_id = db_value(User, "id", user.pk)

    def build() -> QuerySet[Attachment]:
        copies = Delivery.objects.filter(message_id=OuterRef("message_id"), mailbox__in=mailboxes_for(user))
        return (
            Attachment.objects.select_related("data_key")
            .filter(Exists(copies), pk=attachment_uuid, message_id=message_uuid)
            .order_by()[:1]
        )

    # The 1 is the EXISTS subquery's "SELECT 1"; then mailboxes_for's, then ours.
    params = [1, user_id, Mailbox.Kind.ORGANISATIONAL.value, user_id, user_id, message, pk]
    found = fetch("messaging.visible_attachment", params, build)
    return found[0] if found else None


def visible_message(user: Any, message_id: uuid.UUID | str) -> Message:
    copies = visible_copies(user, message_id)
    if not copies:
        raise NotVisible
    return copies[0].message


@dataclass
class Opened:
    message: Message
    copies: list[Delivery]


def open_message(
    user: User,
    message_id: uuid.UUID | str,
    *,
    mailbox_id: uuid.UUID | None = None,
    request: HttpRequest | None = None,
) -> Opened:
    """Read a message: its incoming copies in ``user``'s mailboxes (or only the one in
    ``mailbox_id``) become read, and the reading is recorded (for shared mailboxes, every
    member who opens it)."""
    visible = visible_copies(user, message_id)
    copies = visible if mailbox_id is None else [c for c in visible if c.mailbox_id == mailbox_id]
    if not copies:
        raise NotVisible
    message = copies[0].message
    _mark_read(user, [message], copies, request, held=visible)
    return Opened(message=message, copies=copies)


def _own_unread_copies(
    user: User, messages: Sequence[Message], copies: Sequence[Delivery], held: Sequence[Delivery] | None
) -> list[Delivery]:
    """``user``'s copies of ``messages`` in their personal mailbox, unread, that ``copies``
    leave out: read through a shared mailbox, a message is read by the person too, and
    their own mailbox is theirs alone (the shared copy is not read by one's own, see
    :func:`open_thread`). ``held``, when given, is every copy of ``messages`` in the user's
    mailboxes, already loaded: no query then."""
    if all(copy.mailbox.owner_id == user.pk for copy in copies):
        return []
    if held is not None:
        return [c for c in held if c.mailbox.owner_id == user.pk and c.is_incoming and _unopened(c) and c not in copies]
    return list(
        Delivery.objects.filter(
            Q(read_at__isnull=True) | Q(first_read_at__isnull=True),
            message_id__in=[m.pk for m in messages],
            mailbox__owner=user,
            role__in=INCOMING,
        ).exclude(pk__in=[c.pk for c in copies])
    )


def _unopened(copy: Delivery) -> bool:
    """Unread, or marked read from a list without being opened (no receipt yet)."""
    return copy.read_at is None or copy.first_read_at is None


def _mark_read(
    user: User,
    messages: Sequence[Message],
    copies: Sequence[Delivery],
    request: HttpRequest | None,
    *,
    held: Sequence[Delivery] | None = None,
) -> None:
    now = timezone.now()
    incoming = [c for c in [*copies, *_own_unread_copies(user, messages, copies, held)] if c.is_incoming]
    with transaction.atomic():
        if incoming:
            # Read again, locked, in the transaction: a colleague may have deleted a copy
            # for good since it was read (from the shared mailbox's trash), and a reading
            # recorded on it would fail at COMMIT. delete_message locks the copies it
            # deletes, so one still here stays until this commits.
            # As they are now: a colleague may have marked one unread since it was read.
            present = {
                pk: (read_at, first_read_at)
                for pk, read_at, first_read_at in Delivery.objects.filter(pk__in=[c.pk for c in incoming])
                .select_for_update(of=("self",), no_key=True)
                .order_by("pk")
                .values_list("pk", "read_at", "first_read_at")
            }
            opened = [c.pk for c in copies if c.is_incoming]
            if opened and not present.keys() & opened:
                raise NotVisible
            incoming = [c for c in incoming if c.pk in present]
            for copy in incoming:
                copy.read_at, copy.first_read_at = present[copy.pk]
        unread = [c.pk for c in incoming if _unopened(c)]
        if unread:
            # Each SET sees the row as it was: read_by changes only with read_at.
            Delivery.objects.filter(pk__in=unread).update(
                read_at=Coalesce("read_at", Value(now)),
                read_by=Case(
                    When(read_at__isnull=True, then=Value(user.pk)),
                    default=F("read_by"),
                    output_field=Delivery._meta.get_field("read_by").target_field,
                ),
                first_read_at=Coalesce("first_read_at", Value(now)),
            )
            for copy in incoming:
                if copy.read_at is None:
                    copy.read_at, copy.read_by = now, user
                copy.first_read_at = copy.first_read_at or now
        if incoming:
            Reading.objects.bulk_create(
                [Reading(delivery=c, user=user, read_at=now) for c in incoming], ignore_conflicts=True
            )
        # Reading is a use of the mailbox read in (CNIL: an unused one is emptied): a team
        # may only ever open its messages from their notifications. Before the event, in key
        # order, as a send locks the rows of the mailboxes it files copies in (lock order).
        touched = {copy.mailbox_id: copy.mailbox for copy in copies}
        for mailbox_id in sorted(touched):
            touch_mailbox(touched[mailbox_id], now)
        # One event per message, appended together: a long thread costs what one message does.
        audit.record_each("message.read", actor=user, targets=messages, request=request)


@dataclass
class ThreadEntry:
    message: Message
    copies: list[Delivery]  # the viewer's own copies
    recipients: list[Delivery]  # to/cc copies (for names, and receipts when the viewer sent it)

    @property
    def sent_by_viewer(self) -> bool:
        return any(c.role == Role.SENDER for c in self.copies)

    @property
    def to(self) -> list[Delivery]:
        return [r for r in self.recipients if r.role == Role.TO]

    @property
    def cc(self) -> list[Delivery]:
        return [r for r in self.recipients if r.role == Role.CC]

    @property
    def team_copies(self) -> list[Delivery]:
        return [c for c in self.copies if c.is_incoming]

    @property
    def team_author(self) -> User | None:
        """Who wrote a letter sent from a shared mailbox, for its members (who hold its sent
        copy) to see, as they see who read and who answered: the mailbox alone names nobody."""
        if any(c.role == Role.SENDER and c.mailbox.kind == Mailbox.Kind.ORGANISATIONAL for c in self.copies):
            return self.message.author
        return None


def open_thread(
    user: User,
    message_id: uuid.UUID | str,
    *,
    mailbox_id: uuid.UUID | None = None,
    request: HttpRequest | None = None,
) -> list[ThreadEntry]:
    """The thread as one of ``user``'s mailboxes holds it, oldest first, marked read there.

    The mailbox is ``mailbox_id`` (NotVisible if the message is not in it), or else the
    user's personal one if the message is there, or else the first that has it. Only that
    mailbox's copies are read and offered to file: a practitioner reading his own copy
    must not mark the shared mailbox's one read for the whole team, nor bin it.
    """
    anchor = visible_copies(user, message_id)
    if mailbox_id is not None:
        anchor = [copy for copy in anchor if copy.mailbox_id == mailbox_id]
    if not anchor:
        raise NotVisible
    own = [copy for copy in anchor if copy.mailbox.owner_id == user.pk]
    chosen = (own or anchor)[0].mailbox_id
    copies = list(
        Delivery.objects.filter(message__thread_id=anchor[0].message.thread_id, mailbox_id=chosen)
        .select_related(
            "message", "message__data_key", "message__sender", "message__author", "mailbox", "read_by", "answered_by"
        )
        .order_by("sent_at", "message_id", "role")
    )
    if not copies:
        raise NotVisible  # deleted for good by a colleague since the anchor was read
    by_message: dict[uuid.UUID, list[Delivery]] = {}
    for copy in copies:
        by_message.setdefault(copy.message_id, []).append(copy)
    messages = [group[0].message for group in by_message.values()]
    recipients: dict[uuid.UUID, list[Delivery]] = {}
    for row in message_recipients_for(by_message.keys()):
        recipients.setdefault(row.message_id, []).append(row)
    attachments: dict[uuid.UUID, list[Attachment]] = {}
    for attachment in Attachment.objects.filter(message_id__in=by_message.keys()).select_related("data_key"):
        attachments.setdefault(attachment.message_id, []).append(attachment)
    for message in messages:
        message.__dict__["attachment_list"] = attachments.get(message.pk, [])
    _mark_read(user, messages, copies, request)
    # Who read and who answered, shown for the shared mailboxes' copies only.
    shared = [c for c in copies if c.is_incoming and c.mailbox.kind == Mailbox.Kind.ORGANISATIONAL]
    prefetch_related_objects(shared, "readings__user", "answers__user")
    return [ThreadEntry(m, by_message[m.pk], recipients.get(m.pk, [])) for m in messages]


def team_activity(copy: Delivery) -> dict[str, list[dict[str, Any]]]:
    """For a shared mailbox's copy, who of the team opened it and who answered it (each one's
    first time, in order), as its page shows them; nothing for another copy."""
    if not copy.is_incoming or copy.mailbox.kind != Mailbox.Kind.ORGANISATIONAL:
        return {"read_by": [], "answered_by": []}
    readings = sorted(copy.readings.select_related("user"), key=lambda r: (r.read_at, r.pk))
    answers = list(copy.answers.select_related("user"))
    return {
        "read_by": [{"name": r.user.display_name, "at": r.read_at.isoformat()} for r in readings],
        "answered_by": [{"name": a.user.display_name, "at": a.answered_at.isoformat()} for a in answers],
    }


def message_recipients(message: Message) -> list[Delivery]:
    return message_recipients_for([message.pk])


def message_recipients_for(message_ids: Iterable[uuid.UUID | str]) -> list[Delivery]:
    """The to/cc copies of these messages, "to" first, by name: those still held and, as
    they stood, those their mailbox deleted for good (:class:`DeletedCopy`), so that a
    recipient who deletes a message still appears where it went, with their receipt."""
    ids = list(message_ids)
    if not ids:
        return []
    # From SQL compiled once per number of messages (pli.core.db.fetch): a message's page
    # and the API's reading of it list its recipients every time.
    keys = [db_value(Delivery, "message", i) for i in ids]
    roles = [role.value for role in INCOMING]
    rows = fetch(
        "messaging.recipients",
        [*keys, *roles],
        lambda: Delivery.objects.filter(message_id__in=ids, role__in=INCOMING).select_related("mailbox"),
    )
    gone = fetch(
        "messaging.deleted_recipients",
        keys,
        lambda: DeletedCopy.objects.filter(message_id__in=ids).select_related("mailbox"),
    )
    rows += [copy.as_recipient() for copy in gone]
    rows.sort(key=lambda row: (row.role != Role.TO, row.mailbox.name, row.mailbox.address))
    return rows


def message_attachments(message: Message) -> list[Attachment]:
    return fetch(
        "messaging.attachments",
        [db_value(Attachment, "message", message.pk)],
        lambda: Attachment.objects.filter(message=message).select_related("data_key").order_by("position"),
    )


def open_attachment(
    user: User, message_id: uuid.UUID | str, attachment_id: uuid.UUID | str, *, request: HttpRequest | None = None
) -> tuple[Attachment, ReadAhead]:
    """The attachment and a stream of its plaintext; the download is recorded."""
    attachment = _visible_attachment(user, message_id, attachment_id)
    if attachment is None:
        raise NotVisible
    if attachment.data_key_id is None:
        raise NotVisible  # crypto-shredded: the content is gone for good
    try:
        blob = blob_store().open(attachment.blob_id, attachment.data_encryption_key(), attachment.blob_aad("content"))
    except (BlobNotFound, OSError) as exc:
        if isinstance(exc, BlobNotFound) and _visible_attachment(user, message_id, attachment_id) is None:
            # Deleted for good since the check above (its last copy, by a colleague or in
            # another tab): gone, as it would be a moment later, not a fault of the storage.
            raise NotVisible from None
        # Not the user's doing: said plainly to them, and to the operator in one line.
        raise unavailable(attachment, exc) from exc
    # The first segments are decrypted while the download is recorded; nothing is sent
    # before the record commits (see pli.blobs.read_ahead).
    reader = ReadAhead(blob, eager=attachment.size > SEGMENT_SIZE)
    try:
        with transaction.atomic():
            audit.record(
                "attachment.download",
                actor=user,
                target=attachment,
                request=request,
                details={"message": str(attachment.message_id)},
            )
            # Decrypted meanwhile: an attachment altered or unreadable from its start is
            # refused, its download not recorded, instead of a response that breaks off.
            try:
                reader.check_start()
            except (CryptoError, OSError) as exc:
                raise unavailable(attachment, exc) from exc
    except BaseException:
        reader.close()
        raise
    return attachment, reader


# --- filing ---------------------------------------------------------------------------------

MOVE_TARGETS = (Folder.INBOX, Folder.SENT, Folder.ARCHIVE, Folder.TRASH)


def _held_copies(user: User, message_id: uuid.UUID | str, mailbox_id: uuid.UUID | None) -> list[Delivery]:
    """``user``'s copies of a message, or only the one in ``mailbox_id``; NotVisible if none."""
    copies = visible_copies(user, message_id)
    if mailbox_id is not None:
        copies = [c for c in copies if c.mailbox_id == mailbox_id]
    if not copies:
        raise NotVisible
    return copies


def _relocked(copies: Sequence[Delivery], field: str) -> dict[Any, Any]:
    """``field`` of each of ``copies`` as it is now, the rows locked until COMMIT: read before
    the transaction, a copy may have been changed by a colleague since, or deleted for good
    (then left out; NotVisible if none is left)."""
    current = dict(
        Delivery.objects.filter(pk__in=[c.pk for c in copies])
        .select_for_update(of=("self",), no_key=True)
        .order_by("pk")
        .values_list("pk", field)
    )
    if not current:
        raise NotVisible
    return current


def _organisation_of(copies: Sequence[Delivery]) -> int | None:
    """The organisation of the mailboxes ``copies`` are in, when there is one: recorded with
    a move or a deletion, for its access journal to find the event once the message is
    erased everywhere (it finds the others through the message's copies)."""
    found = set(Mailbox.objects.filter(pk__in={c.mailbox_id for c in copies}).values_list("organisation_id", flat=True))
    return found.pop() if len(found) == 1 else None


def move_message(
    user: User,
    message_id: uuid.UUID | str,
    folder: str,
    *,
    mailbox_id: uuid.UUID | None = None,
    request: HttpRequest | None = None,
    moved: list[Move] | None = None,
) -> list[Delivery]:
    """File ``user``'s copies (or only the one in ``mailbox_id``) into ``folder``. "inbox" and
    "sent" both mean "back where it belongs": a received copy returns to the inbox, the
    sender's copy to "sent". Each copy that changed folder is appended to ``moved``, with
    where it was, for :func:`undo_moves`."""
    if folder not in MOVE_TARGETS:
        raise ValueError(folder)
    copies = _held_copies(user, message_id, mailbox_id)
    with transaction.atomic():
        # Read again, locked, in the transaction: a colleague may have filed the copy
        # elsewhere since it was read (it must still go where this user asked), or deleted
        # it for good (nothing is moved, nor recorded as moved).
        current = _relocked(copies, "folder")
        copies = [c for c in copies if c.pk in current]
        now = timezone.now()
        for copy in copies:
            copy.folder = current[copy.pk]
            target = copy.home_folder if folder in (Folder.INBOX, Folder.SENT) else folder
            if copy.folder != target:
                if moved is not None:
                    moved.append(Move(copy.pk, copy.folder, target))
                copy.folder = target
                # The trash keeps a copy PLI_TRASH_DAYS from when it went in.
                copy.trashed_at = now if target == Folder.TRASH else None
                Delivery.objects.filter(pk=copy.pk).update(folder=target, trashed_at=copy.trashed_at)
        audit.record(
            "message.move",
            actor=user,
            target=copies[0].message,
            request=request,
            details={"folder": folder, "copies": len(copies), "organisation": _organisation_of(copies)},
        )
    return copies


class Move(NamedTuple):
    """One copy filed from one folder into another (recorded by :func:`move_message`)."""

    copy: int
    source: str
    target: str


def undo_moves(user: User, moves: Sequence[Move], *, request: HttpRequest | None = None) -> int:
    """Put back where they were the copies that ``moves`` filed elsewhere (« Annuler » after
    archiving or binning): each one still in the folder the move put it in and still in a
    mailbox ``user`` works in goes back, as a move of its own (audited). A copy moved again
    since, or deleted for good, is left as it is. All in one transaction; returns how many
    messages went back."""
    wanted = {move.copy: move for move in moves}
    with transaction.atomic():
        # Every copy locked, in key order, before the first move's audit event (see
        # lock_selection).
        rows = list(
            Delivery.objects.filter(pk__in=wanted, mailbox__in=mailboxes_for(user))
            .select_for_update(of=("self",), no_key=True)
            .order_by("pk")
            .values_list("pk", "message_id", "mailbox_id", "folder")
        )
        back = {
            (message_id, mailbox_id, wanted[pk].source)
            for pk, message_id, mailbox_id, folder in rows
            if folder == wanted[pk].target
        }
        for message_id, mailbox_id, source in sorted(back):
            move_message(user, message_id, source, mailbox_id=mailbox_id, request=request)
    return len({message_id for message_id, _, _ in back})


class NotReceived(Exception):
    """Only a received copy can be marked read or unread: one's own sent copy is neither."""


def mark_unread(
    user: User, message_id: uuid.UUID | str, *, mailbox_id: uuid.UUID | None = None, request: HttpRequest | None = None
) -> list[Delivery]:
    """Mark ``user``'s received copies (or only the one in ``mailbox_id``) unread again: they
    count as unread and show so until opened again. The sender's receipt still says when it
    was first read, and a shared mailbox's team still sees who read it."""
    return _set_read(user, message_id, read=False, mailbox_id=mailbox_id, request=request)


def mark_read(
    user: User, message_id: uuid.UUID | str, *, mailbox_id: uuid.UUID | None = None, request: HttpRequest | None = None
) -> list[Delivery]:
    """Mark ``user``'s received copies (or only the one in ``mailbox_id``) read without
    opening them (from a folder's list). Nobody read it: the sender's receipt and the
    team's "read by" stay as they were, until someone opens it."""
    return _set_read(user, message_id, read=True, mailbox_id=mailbox_id, request=request)


def _set_read(
    user: User,
    message_id: uuid.UUID | str,
    *,
    read: bool,
    mailbox_id: uuid.UUID | None,
    request: HttpRequest | None,
) -> list[Delivery]:
    copies = _held_copies(user, message_id, mailbox_id)
    copies = [c for c in copies if c.is_incoming]
    if not copies:
        raise NotReceived
    with transaction.atomic():
        # Read again, locked, as move_message does: deleted for good meanwhile, nothing is
        # marked, nor recorded as marked.
        current = _relocked(copies, "read_at")
        copies = [c for c in copies if c.pk in current]
        now = timezone.now()
        handled: dict[uuid.UUID, tuple[Mailbox, datetime.datetime]] = {}
        for copy in copies:
            copy.read_at = current[copy.pk]
            if read and copy.read_at is None:
                copy.read_at, copy.read_by = now, user
            elif not read and copy.read_at is not None:
                copy.read_at, copy.read_by = None, None
                if copy.first_read_at is None:  # (one opened is no news anyway: notify_new_mail)
                    handled[copy.mailbox_id] = (copy.mailbox, copy.delivered_at)
            else:
                continue
            Delivery.objects.filter(pk=copy.pk).update(read_at=copy.read_at, read_by=copy.read_by)
        # Before the event (lock order), in key order.
        for mailbox_id in sorted(handled, key=str):
            _told_of(user, *handled[mailbox_id])
        audit.record(
            "message.mark_read" if read else "message.mark_unread",
            actor=user,
            target=copies[0].message,
            request=request,
            details={"copies": len(copies)},
        )
    return copies


def _told_of(user: User, mailbox: Mailbox, delivered_at: datetime.datetime) -> None:
    """``user`` marked unread a copy that had been read (ticked and marked read in the
    list, never opened: its ``first_read_at``, the sender's receipt, stays empty): they
    know it has arrived, and notify_new_mail must not e-mail them about it as news. Their
    last notice (the owner's on a personal mailbox, the member's row on a shared one) moves
    up to its arrival, as if they had been told of it then; newer arrivals are still news,
    within the period a notice after that arrival would allow (PLI_NEW_MAIL_EMAIL_MINUTES)."""
    if mailbox.kind == Mailbox.Kind.PERSONAL:
        rows: QuerySet[Any] = Mailbox.objects.filter(pk=mailbox.pk, owner=user)
    else:
        rows = MailboxMember.objects.filter(mailbox=mailbox, user=user)
    rows.filter(Q(new_mail_notified_at__isnull=True) | Q(new_mail_notified_at__lt=delivered_at)).update(
        new_mail_notified_at=delivered_at
    )


def lock_selection(mailbox: Mailbox, message_ids: Sequence[uuid.UUID]) -> None:
    """Lock, in key order, the copies in ``mailbox`` of the messages ticked in its list, at
    the start of the selection's transaction: each letter's action appends an audit event,
    which holds the trail's head until COMMIT, so a later letter's copy locked only then
    would be taken after the head (a colleague moving it meanwhile holds it and waits for
    the head: a deadlock on PostgreSQL). See "Lock order" in docs/decisions.md."""
    list(
        Delivery.objects.filter(mailbox=mailbox, message_id__in=message_ids)
        .select_for_update(of=("self",), no_key=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def deleted_by(user: User, message_id: uuid.UUID) -> bool:
    """Whether ``user`` deleted (a copy of) this message for good: read in the audit trail,
    since nothing else of it may be left."""
    events = audit.events_for(("messaging.message", message_id))
    return events.filter(action="message.delete", actor_id=str(user.pk)).exists()


def delete_message(
    user: User, message_id: uuid.UUID | str, *, mailbox_id: uuid.UUID | None = None, request: HttpRequest | None = None
) -> int:
    """Delete for good ``user``'s copies that are in the trash. When no mailbox holds the
    message any more it is crypto-shredded: its keys and its attachment blobs are destroyed."""
    copies = _held_copies(user, message_id, mailbox_id)
    trashed = [c for c in copies if c.folder == Folder.TRASH]
    if not trashed:
        raise NotInTrash
    with transaction.atomic():
        removed = _delete_copies(trashed, actor=user, request=request)
        if not removed:
            raise NotInTrash
    return removed


def _delete_copies(
    trashed: list[Delivery],
    *,
    actor: User | None,
    request: HttpRequest | None = None,
    trashed_before: datetime.datetime | None = None,
    reason: str = "",
    organisation: int | None = None,
    events: list[tuple[str, dict[str, Any]]] | None = None,
) -> int:
    """Delete for good those of ``trashed`` (copies of one message) that are still in the
    trash (and went in before ``trashed_before``, if given), inside the caller's
    transaction; shred the message when no mailbox holds it any more. Returns how many were
    deleted: 0 when none was still there (NotVisible when they are gone altogether).
    ``organisation``: that of the copies' mailboxes (looked up when not given), recorded for
    its access journal to find the event once the message is shredded. ``events``: the audit
    events are appended there instead of recorded, for a caller deleting several letters
    in one transaction, which records them all after its last row lock (lock order)."""
    message = trashed[0].message
    locked = Delivery.objects.filter(pk__in=[c.pk for c in trashed]).order_by("pk")
    if connection.features.has_select_for_update:
        # Locked before Django gathers the rows that point to them (who read, who
        # answered): an answer committing meanwhile would point to a deleted copy.
        locked = locked.select_for_update()
    # Read again in the transaction: a colleague may have taken the copy out of the
    # shared mailbox's trash since it was read above (what they just filed must not be
    # deleted for good), or read or answered it (the sender's receipt keeps that).
    current = {
        pk: (folder, read, answered)
        for pk, folder, read, answered, since in locked.values_list(
            "pk", "folder", "first_read_at", "answered_at", "trashed_at"
        )
        # Put back in the trash since the job read it: its days start again.
        if trashed_before is None or (since is not None and since < trashed_before)
    }
    if current and all(folder != Folder.TRASH for folder, _read, _answered in current.values()):
        return 0
    trashed = [c for c in trashed if c.pk in current and current[c.pk][0] == Folder.TRASH]
    for copy in trashed:
        _folder, copy.first_read_at, copy.answered_at = current[copy.pk]
    # Whether another copy is left is read under the message's row lock: two mailboxes
    # deleting their last copies at once, their events recorded only at the end (several
    # letters), would each see the other's copy still there and neither shred the message.
    _lock_messages([message.pk])
    _total, per_model = Delivery.objects.filter(pk__in=[c.pk for c in trashed]).delete()
    removed = per_model.get(Delivery._meta.label, 0)  # not the readings deleted with them
    if not removed:
        # Deleted by a concurrent request (a double click) since the copies were read:
        # recording a second delete, and a second shred, would falsify the trail.
        raise NotVisible
    now = timezone.now()
    DeletedCopy.objects.bulk_create(
        [
            DeletedCopy(
                message_id=c.message_id,
                mailbox_id=c.mailbox_id,
                role=c.role,
                delivered_at=c.delivered_at,
                read_at=c.first_read_at,
                answered_at=c.answered_at,
                deleted_at=now,
            )
            for c in trashed
            if c.is_incoming
        ],
        ignore_conflicts=True,
    )
    details: dict[str, Any] = {"copies": removed}
    if reason:
        details["reason"] = reason  # not a user's: the trash's retention, an unused mailbox
    if organisation is None:
        organisation = _organisation_of(trashed)
    if organisation is not None:
        details["organisation"] = organisation
    _record(events, "message.delete", actor=actor, target=message, request=request, details=details)
    if not Delivery.objects.filter(message=message).exists():
        _purge(message, events)
    return removed


def _record(events: list[tuple[str, dict[str, Any]]] | None, action: str, **kwargs: Any) -> None:
    """An audit event, recorded now, or kept in ``events`` to be recorded later (its target
    by type and id: a message shredded meanwhile has no primary key any more)."""
    if events is None:
        audit.record(action, **kwargs)
        return
    target = kwargs.get("target")
    if isinstance(target, models.Model):
        kwargs["target"] = (target._meta.label_lower, str(target.pk))
    events.append((action, kwargs))


def _record_all(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Record the events :func:`_record` kept, once every row lock is held."""
    for action, kwargs in events:
        audit.record(action, **kwargs)


@dataclass
class TrashSelection:
    """Letters ticked in a mailbox's trash, as they are now."""

    # Each letter's copies in the mailbox's trash, in the order the letters were given.
    letters: dict[uuid.UUID, list[Delivery]]
    # Still in the mailbox, no longer in its trash (put back by a colleague meanwhile).
    elsewhere: list[uuid.UUID]
    # Not in the mailbox (deleted for good meanwhile, or never its own).
    missing: list[uuid.UUID]


def trash_selection(
    mailbox: Mailbox,
    message_ids: Sequence[uuid.UUID],
    *,
    lock: bool = False,
    until: datetime.datetime | None = None,
) -> TrashSelection:
    """Sort ``message_ids`` by where their copies in ``mailbox`` are. With ``lock``, every
    copy is locked in key order (``FOR UPDATE``, as a delete locks them: no stronger lock is
    needed later, after an audit event), at the start of the caller's transaction, as
    :func:`lock_selection` does for the other actions. ``until``: a copy that went into the
    trash after it (someone binned it after the page was shown) counts as elsewhere."""
    rows = (
        Delivery.objects.filter(mailbox=mailbox, message_id__in=list(message_ids))
        .select_related("message", "message__data_key", "mailbox")
        .order_by("pk")
    )
    if lock:
        rows = rows.select_for_update(of=("self",))
    held: dict[uuid.UUID, list[Delivery]] = {}
    for copy in rows:
        held.setdefault(copy.message_id, []).append(copy)
    letters: dict[uuid.UUID, list[Delivery]] = {}
    elsewhere: list[uuid.UUID] = []
    missing: list[uuid.UUID] = []
    for message_id in dict.fromkeys(message_ids):
        copies = held.get(message_id)
        if not copies:
            missing.append(message_id)
            continue
        trashed = [
            c
            for c in copies
            if c.folder == Folder.TRASH and (until is None or c.trashed_at is None or c.trashed_at <= until)
        ]
        if trashed:
            letters[message_id] = trashed
        else:
            elsewhere.append(message_id)
    return TrashSelection(letters, elsewhere, missing)


@dataclass
class SelectionDeleted:
    deleted: int  # letters deleted for good
    elsewhere: list[uuid.UUID]
    missing: list[uuid.UUID]


def delete_selection(
    user: User, mailbox: Mailbox, message_ids: Sequence[uuid.UUID], *, request: HttpRequest | None = None
) -> SelectionDeleted:
    """Delete for good the letters ticked in ``mailbox``'s trash, each as « Supprimer
    définitivement » would (its own ``message.delete``, the message shredded with its last
    copy), all or none. Lock order: every ticked copy first (key order), then what each
    deletion locks, then the audit events."""
    with transaction.atomic():
        found = trash_selection(mailbox, message_ids, lock=True)
        deleted = _delete_letters(user, found, request)
    return SelectionDeleted(deleted, found.elsewhere, found.missing)


def _lock_messages(message_ids: Iterable[uuid.UUID]) -> None:
    """Lock the messages' rows, in key order, after their copies and before the audit
    trail's head (``FOR NO KEY UPDATE``: a commit referencing them, an answer, still takes
    its key-share lock). See "Lock order" in docs/decisions.md."""
    if connection.features.has_select_for_update:
        list(
            Message.objects.filter(pk__in=sorted(message_ids))
            .select_for_update(no_key=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def _delete_letters(user: User, found: TrashSelection, request: HttpRequest | None) -> int:
    events: list[tuple[str, dict[str, Any]]] = []
    # Every letter's message in one order, whatever the order ticked: two mailboxes deleting
    # the same letters, ticked in another order, would otherwise wait for each other.
    _lock_messages(found.letters)
    deleted = 0
    for message_id, copies in found.letters.items():
        try:
            removed = _delete_copies(copies, actor=user, request=request, events=events)
        except NotVisible:  # (not while locked; SQLite has one writer at a time)
            found.missing.append(message_id)
            continue
        if removed:
            deleted += 1
        else:
            found.elsewhere.append(message_id)
    _record_all(events)
    return deleted


# Letters deleted for good in one transaction when a trash is emptied.
EMPTY_TRASH_BATCH = 100


def trash_count(mailbox: Mailbox, until: datetime.datetime | None = None) -> int:
    """How many letters ``mailbox``'s trash holds (that went in by ``until``)."""
    return _emptied(mailbox, until).values("message_id").distinct().count()


def _emptied(mailbox: Mailbox, until: datetime.datetime | None) -> QuerySet[Delivery]:
    rows = Delivery.objects.filter(mailbox=mailbox, folder=Folder.TRASH)
    if until is not None:
        rows = rows.filter(Q(trashed_at__lte=until) | Q(trashed_at__isnull=True))
    return rows


def empty_trash(
    user: User,
    mailbox: Mailbox,
    *,
    until: datetime.datetime,
    request: HttpRequest | None = None,
    batch: int = EMPTY_TRASH_BATCH,
) -> int:
    """« Vider la corbeille »: delete for good every letter in ``mailbox``'s trash that went
    in by ``until`` (when the page was shown: a letter a colleague bins meanwhile stays), as
    :func:`delete_selection` does, ``batch`` letters a transaction (a trash of thousands
    would hold its locks, and the audit trail's head, for as long): interrupted, the
    batches done stay done. Returns how many letters went."""
    total = 0
    while True:
        with transaction.atomic():
            message_ids = list(
                _emptied(mailbox, until).order_by("message_id").values_list("message_id", flat=True).distinct()[:batch]
            )
            if not message_ids:
                return total
            found = trash_selection(mailbox, message_ids, lock=True, until=until)
            deleted = _delete_letters(user, found, request)
        # Each round deletes what it found still there: the next one reads what is left.
        total += deleted
        if not deleted:
            # Letters listed but none deletable (never expected): stop rather than loop.
            return total


def purge_old_trash(now: datetime.datetime | None = None, limit: int = 500) -> int:
    """Delete for good the copies that have been in the trash for PLI_TRASH_DAYS (never with
    0), as their users would from the trash: recorded in the trail (``message.delete``, no
    actor, reason ``trash_retention``), and the message shredded with its last copy. At
    most ``limit`` messages a run; returns how many copies went."""
    days = settings.PLI_TRASH_DAYS
    if not days:
        return 0
    now = now or timezone.now()
    before = now - datetime.timedelta(days=days)
    message_ids = list(
        Delivery.objects.filter(trashed_at__lt=before, folder=Folder.TRASH)
        .order_by("trashed_at")
        .values_list("message_id", flat=True)[: limit * 4]
    )
    removed = 0
    for message_id in list(dict.fromkeys(message_ids))[:limit]:
        with transaction.atomic():
            copies = Delivery.objects.filter(message_id=message_id, folder=Folder.TRASH, trashed_at__lt=before)
            if connection.features.has_select_for_update:
                # Every organisation's copies before the first one's deletion and events: a
                # user emptying the second organisation's trash meanwhile would otherwise
                # hold a copy this run waits for, itself waiting for this run (lock order).
                copies = copies.select_for_update(of=("self",))
            # One event per organisation, each in its own access journal; all recorded last.
            by_organisation: dict[int | None, list[Delivery]] = {}
            for copy in copies.select_related("message", "mailbox").order_by("pk"):
                by_organisation.setdefault(copy.mailbox.organisation_id, []).append(copy)
            events: list[tuple[str, dict[str, Any]]] = []
            for organisation_id, group in by_organisation.items():
                with contextlib.suppress(NotVisible):
                    removed += _delete_copies(
                        group,
                        actor=None,
                        trashed_before=before,
                        reason="trash_retention",
                        organisation=organisation_id,
                        events=events,
                    )
            _record_all(events)
    return removed


def apply_retention(now: datetime.datetime | None = None, limit: int = 500) -> int:
    """Send to the trash the copies older than their organisation's retention period
    (``Organisation.retention_days``; None keeps everything), counted from when the message
    was sent; the trash then deletes them for good after PLI_TRASH_DAYS, so that a period
    set too short can still be undone. Recorded as ``message.move`` with no actor and reason
    ``retention``. At most ``limit`` messages an organisation a run; returns how many
    copies moved."""
    now = now or timezone.now()
    moved = 0
    policies = Organisation.objects.filter(retention_days__gte=MIN_RETENTION_DAYS).values_list("pk", "retention_days")
    for organisation_id, days in policies:
        before = now - datetime.timedelta(days=days or MIN_RETENTION_DAYS)
        old = Delivery.objects.filter(mailbox__organisation_id=organisation_id, sent_at__lt=before).exclude(
            folder=Folder.TRASH
        )
        message_ids = list(old.order_by("sent_at").values_list("message_id", flat=True)[: limit * 4])
        for message_id in list(dict.fromkeys(message_ids))[:limit]:
            with transaction.atomic():
                # Locked (and read again) before the event: a user filing the copy meanwhile
                # is not overwritten, and the audit head is taken last (lock order).
                copies = list(
                    old.filter(message_id=message_id)
                    .select_for_update(of=("self",), no_key=True)
                    .select_related("message")
                    .order_by("pk")
                )
                if not copies:
                    continue
                Delivery.objects.filter(pk__in=[c.pk for c in copies]).update(folder=Folder.TRASH, trashed_at=now)
                audit.record(
                    "message.move",
                    target=copies[0].message,
                    details={
                        "folder": Folder.TRASH,
                        "copies": len(copies),
                        "reason": "retention",
                        "organisation": organisation_id,
                    },
                )
                moved += len(copies)
    return moved


# How long before an unused mailbox is emptied its members are told.
INACTIVITY_WARNING = datetime.timedelta(days=30)


@dataclass
class InactivityRun:
    warned: int = 0
    copies_deleted: int = 0
    emptied: int = 0


def _last_use() -> Greatest:
    """A mailbox's last use: the latest of its last send or listing, its owner's last sign-in
    (a personal mailbox) and its creation."""
    return Greatest(Coalesce("last_used_at", "created_at"), Coalesce("owner__last_login", "last_used_at", "created_at"))


def handle_inactive_mailboxes(now: datetime.datetime | None = None, limit: int = 500) -> InactivityRun:
    """CNIL: a mailbox unused for PLI_MAILBOX_INACTIVE_DAYS (365; 0 never) is deleted after a
    warning. INACTIVITY_WARNING before, its people are told by e-mail (the owner of a
    personal mailbox, or its organisation's admins once the owner has left; a shared
    mailbox's members and admins), and any use (a sign-in, a listing, a reading, a send) cancels it.
    Once the period is over and the warning is a month old, every copy in it is deleted for
    good (``message.delete``, reason ``mailbox_inactive``; messages shredded with their last
    copy, receipts kept) and it is recorded as ``mailbox.emptied``; a shared mailbox is also
    closed (writing to it then says it is no longer active), a personal one stays, empty,
    its year starting again. At most ``limit`` messages a run."""
    days = settings.PLI_MAILBOX_INACTIVE_DAYS
    run = InactivityRun()
    if not days:
        return run
    now = now or timezone.now()
    period = datetime.timedelta(days=days)
    # A use since the warning cancels it (a sign-in does not touch the mailbox itself). A
    # personal mailbox is switched off when its owner leaves their last organisation: what it
    # holds goes all the same, its organisation's admins warned.
    active = Mailbox.objects.filter(Q(is_active=True) | Q(kind=Mailbox.Kind.PERSONAL))
    used = active.alias(last_use=_last_use()).filter(
        inactivity_warned_at__isnull=False, last_use__gt=F("inactivity_warned_at")
    )
    with transaction.atomic():
        # Locked in key order first, as a send numbering copies locks them: one UPDATE of
        # several rows takes them in the table's order, and could hold one a send waits for.
        lifted = list(
            Mailbox.objects.filter(pk__in=list(used.values_list("pk", flat=True)))
            .select_for_update(no_key=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        Mailbox.objects.filter(pk__in=lifted).update(inactivity_warned_at=None)
    due = active.alias(last_use=_last_use()).filter(
        inactivity_warned_at__isnull=False,
        inactivity_warned_at__lte=now - INACTIVITY_WARNING,
        last_use__lt=now - period,
    )
    for mailbox in due.select_related("organisation")[:limit]:
        deleted, done = _empty_mailbox(mailbox, limit - run.copies_deleted)
        run.copies_deleted += deleted
        if done:
            run.emptied += 1
        if run.copies_deleted >= limit:
            return run
    # An empty personal mailbox has nothing to lose (its emptying would only restart its
    # year): its owner, or a departed owner's admins every year, are not told it will be emptied.
    holds = Exists(Delivery.objects.filter(mailbox=OuterRef("pk")))
    to_warn = (
        active.alias(last_use=_last_use())
        .filter(inactivity_warned_at__isnull=True, last_use__lt=now - period + INACTIVITY_WARNING)
        .filter(holds | Q(kind=Mailbox.Kind.ORGANISATIONAL))
    )
    for mailbox in to_warn.select_related("organisation", "owner")[:limit]:
        run.warned += 1
        if not _warn_inactive(mailbox, now, now + INACTIVITY_WARNING):
            # The relay refuses or does not answer (20 s an e-mail): the others wait for the
            # next run rather than hold this one, and the reminders behind it, for hours.
            break
    return run


def _empty_mailbox(mailbox: Mailbox, limit: int) -> tuple[int, bool]:
    """Delete up to ``limit`` messages' copies in ``mailbox`` for good; (copies deleted,
    whether it is now empty and recorded so)."""
    deleted = 0
    message_ids = list(Delivery.objects.filter(mailbox=mailbox).values_list("message_id", flat=True)[: max(limit, 0)])
    for message_id in message_ids:
        with transaction.atomic():
            copies = list(
                Delivery.objects.filter(mailbox=mailbox, message_id=message_id)
                .select_for_update(of=("self",), no_key=True)
                .select_related("message", "mailbox")
                .order_by("pk")
            )
            if not copies:
                continue
            Delivery.objects.filter(pk__in=[c.pk for c in copies]).update(folder=Folder.TRASH)
            for copy in copies:
                copy.folder = Folder.TRASH
            with contextlib.suppress(NotVisible):
                deleted += _delete_copies(
                    copies, actor=None, reason="mailbox_inactive", organisation=mailbox.organisation_id
                )
    if Delivery.objects.filter(mailbox=mailbox).exists():
        return deleted, False
    with transaction.atomic():
        closed = mailbox.kind == Mailbox.Kind.ORGANISATIONAL
        # Its year starts again, empty; a shared one is closed as an admin's removal would (a
        # personal one stays as it was: a departed owner's is not switched on again).
        changes: dict[str, Any] = {"inactivity_warned_at": None, "last_used_at": timezone.now()}
        if closed:
            changes["is_active"] = False
        Mailbox.objects.filter(pk=mailbox.pk).update(**changes)
        audit.record(
            "mailbox.emptied",
            target=mailbox,
            details={"reason": "inactive", "closed": closed, "organisation": mailbox.organisation_id},
        )
    return deleted, True


def _warn_inactive(mailbox: Mailbox, now: datetime.datetime, deadline: datetime.datetime) -> bool:
    """Record the warning, then e-mail it; False if an e-mail could not be sent."""
    from pli.notify.email import send_templated

    if mailbox.kind == Mailbox.Kind.PERSONAL and mailbox.owner is not None and mailbox.owner.is_active:
        people = [mailbox.owner]
    else:
        members = User.objects.filter(mailboxes=mailbox, is_active=True)
        admins = User.objects.filter(
            memberships__organisation=mailbox.organisation, memberships__role="admin", is_active=True
        )
        people = list({user.pk: user for user in [*members, *admins]}.values())
    with transaction.atomic():
        Mailbox.objects.filter(pk=mailbox.pk).update(inactivity_warned_at=now)
        audit.record(
            "mailbox.inactivity_warned",
            target=mailbox,
            details={"recipients": len(people), "organisation": mailbox.organisation_id},
        )
    # Sent once the warning is committed: a relay down costs this e-mail, never a second
    # warning or a month restarted.
    sent = True
    with translation.override(settings.LANGUAGE_CODE):
        for person in people:
            sent &= send_templated(
                to=person.email,
                template_prefix="messaging/email/inactive_mailbox",
                context={
                    "mailbox": mailbox,
                    "person": person,
                    # The last whole day it may wait: it is emptied on the deadline's own day,
                    # at the hour of this warning, which "by <the deadline's day>" hid.
                    "last_day": timezone.localdate(deadline) - datetime.timedelta(days=1),
                    "days": settings.PLI_MAILBOX_INACTIVE_DAYS,
                },
            )
    return sent


# A message is e-mailed about once it has waited this long unread (whoever is signed in
# reads it first), and only if it arrived within the last day (a worker stopped for a week
# does not send a week of notices when it restarts).
NEW_MAIL_GRACE = datetime.timedelta(minutes=2)
NEW_MAIL_LOOKBACK = datetime.timedelta(days=1)
NEW_MAIL_BATCH = 500


def notify_new_mail(now: datetime.datetime | None = None, limit: int = 500) -> int:
    """E-mail each member of a mailbox where unread messages have arrived: a notice that
    names the mailbox and the number of unread messages, and nothing of them (no sender, no
    subject, no patient: a professional's e-mail is not a secure channel). At most one per
    member and mailbox every PLI_NEW_MAIL_EMAIL_MINUTES (30; 0 never), only about messages
    that arrived since the last one, NEW_MAIL_GRACE old and still unread; never to someone
    who turned it off (``User.new_mail_email``), nor about their own messages. At most
    ``limit`` e-mails a run; returns how many were sent."""
    from pli.notify import email

    minutes = settings.PLI_NEW_MAIL_EMAIL_MINUTES
    if not minutes:
        return 0
    now = now or timezone.now()
    # New arrivals, found from the messages of the last day (Message.sent_at is indexed),
    # their copies then reached by message id, a batch at a time (the copies' message index):
    # given in one join, PostgreSQL's planner may read the whole copies table instead (seen
    # with 400,000 copies), which grows with the instance, not with the day's mail.
    recent = list(Message.objects.filter(sent_at__gt=now - NEW_MAIL_LOOKBACK).order_by().values_list("pk", flat=True))
    # The last arrival in each mailbox by each author: no one is told of what they wrote
    # themselves (a GP's copy to her practice's shared mailbox).
    latest: dict[uuid.UUID, dict[int | None, datetime.datetime]] = {}
    for start in range(0, len(recent), NEW_MAIL_BATCH):
        arrivals = (
            Delivery.objects.filter(
                message_id__in=recent[start : start + NEW_MAIL_BATCH],
                delivered_at__lte=now - NEW_MAIL_GRACE,
                folder=Folder.INBOX,
                read_at__isnull=True,
                # Read once and marked unread again since: a reminder its reader set, not news.
                first_read_at__isnull=True,
                mailbox__is_active=True,
            )
            .exclude(message__sender=F("mailbox"))
            .values_list("mailbox_id", "message__author_id")
            .annotate(last=Max("delivered_at"))
            .order_by()
        )
        for mailbox_id, author_id, last in arrivals:
            by_author = latest.setdefault(mailbox_id, {})
            if author_id not in by_author or last > by_author[author_id]:
                by_author[author_id] = last
    if not latest:
        return 0
    quiet_since = now - datetime.timedelta(minutes=minutes)
    quiet = Q(new_mail_notified_at__isnull=True) | Q(new_mail_notified_at__lte=quiet_since)
    # (last notice, mailbox, person, the row that keeps their last notice). A personal
    # mailbox's reader is its owner, whose last notice is kept on the mailbox (it has no
    # member row); a shared one's are its members.
    readers: list[tuple[datetime.datetime | None, Mailbox, User, QuerySet[Any]]] = []
    for mailbox in Mailbox.objects.filter(
        quiet,
        pk__in=list(latest),
        kind=Mailbox.Kind.PERSONAL,
        owner__is_active=True,
        owner__new_mail_email=True,
    ).select_related("owner"):
        owner = cast(User, mailbox.owner)
        readers.append((mailbox.new_mail_notified_at, mailbox, owner, Mailbox.objects.filter(pk=mailbox.pk)))
    for member in MailboxMember.objects.filter(
        quiet,
        mailbox_id__in=list(latest),
        mailbox__kind=Mailbox.Kind.ORGANISATIONAL,
        # As mailboxes_for: leaving the organisation takes its shared mailboxes away.
        mailbox__organisation__memberships__user=F("user"),
        user__is_active=True,
        user__new_mail_email=True,
    ).select_related("mailbox", "user"):
        readers.append(
            (member.new_mail_notified_at, member.mailbox, member.user, MailboxMember.objects.filter(pk=member.pk))
        )
    readers.sort(key=lambda reader: (str(reader[1].pk), reader[2].pk))
    sent = 0
    for notified_at, mailbox, person, row in readers:
        newest = max((last for author_id, last in latest[mailbox.pk].items() if author_id != person.pk), default=None)
        if newest is None or (notified_at is not None and notified_at >= newest):
            continue  # nothing but their own, or told already about everything that has arrived
        if sent >= limit:
            break
        # Recorded before the e-mail is sent: a relay that fails costs this notice, never
        # one e-mail a run to everyone while it is down.
        claimed = row.filter(new_mail_notified_at=notified_at).update(new_mail_notified_at=now)
        if not claimed:
            continue  # another worker's run told them meanwhile
        unread = Delivery.objects.filter(mailbox_id=mailbox.pk, folder=Folder.INBOX, read_at__isnull=True).count()
        if not unread:
            continue  # read since the arrivals were gathered (the run's earlier e-mails take time)
        with translation.override(settings.LANGUAGE_CODE):
            outcome = email.send_templated_outcome(
                to=person.email,
                template_prefix="messaging/email/new_mail",
                context={
                    "mailbox": mailbox,
                    "person": person,
                    "unread": unread,
                    "link": settings.PUBLIC_URL + reverse("messaging:folder", args=[mailbox.pk, Folder.INBOX]),
                    "minutes": minutes,
                },
            )
        if outcome == email.ADDRESS_REFUSED:
            continue  # this address only (a 550 for it): its notice is spent, the others go
        if outcome != email.SENT:
            break  # the relay refuses or does not answer: the others wait for the next run
        sent += 1
    return sent


def _purge(message: Message, events: list[tuple[str, dict[str, Any]]] | None = None) -> None:
    attachments = list(Attachment.objects.filter(message=message).values_list("pk", "data_key_id"))
    key_ids = [k for _, k in attachments if k is not None]
    if message.data_key_id is not None:
        key_ids.append(message.data_key_id)
    blob_ids = [pk.hex for pk, _ in attachments]
    message_id = str(message.pk)  # (delete() sets it to None)
    Message.objects.filter(in_reply_to=message).update(in_reply_to=None)
    message.delete()
    DataKey.objects.filter(pk__in=key_ids).delete()
    _record(events, "message.shred", target=("messaging.message", message_id), details={"blobs": len(blob_ids)})

    def remove_blobs() -> None:
        store = blob_store()
        for blob_id in blob_ids:
            with contextlib.suppress(OSError):
                store.delete(blob_id)

    transaction.on_commit(remove_blobs)


# --- maintenance ----------------------------------------------------------------------------


@dataclass
class CleanupResult:
    orphans: int
    temporary: int


def orphan_blob_age() -> float:
    return max(float(settings.PLI_ORPHAN_BLOB_AGE), 2.0 * MAX_PENDING_AGE)


def cleanup_orphan_blobs(older_than: float | None = None) -> CleanupResult:
    """Remove blobs no attachment references, written more than ``older_than`` seconds ago
    (aborted uploads, sends interrupted by a crash), and stale temporary files.

    A committed attachment's blob was written less than MAX_PENDING_AGE before its
    transaction committed, so with ``older_than`` above that, a blob about to be committed
    is never taken; the modification time is checked again just before removal.
    """
    age = orphan_blob_age() if older_than is None else older_than
    # Against another database, every blob would look orphaned (raises DataDirMismatch).
    instance.check_blob_dir()

    def referenced(batch: list[str]) -> set[str]:
        ids = Attachment.objects.filter(pk__in=[uuid.UUID(b) for b in batch]).values_list("pk", flat=True)
        return {pk.hex for pk in ids}

    swept = blob_store().sweep(age, referenced)
    removed, temporary = swept.removed, swept.temporary
    if removed or temporary or swept.failed:
        logger.info(
            "blob cleanup: %d orphan blobs and %d temporary files removed; %d could not be read or removed",
            removed,
            temporary,
            swept.failed,
        )
    return CleanupResult(orphans=removed, temporary=temporary)


# --- bulk seeding (demo data, benchmarks) ---------------------------------------------------


def seed_messages(
    sender: Mailbox, recipient: Mailbox, subjects: Sequence[str], *, body: str = "", batch_size: int = 2000
) -> int:
    """Deliver many attachment-less messages at once, encrypted like any other but without
    per-message audit events: for demo data and benchmarks, never for user actions."""
    start = timezone.now() - datetime.timedelta(seconds=len(subjects))
    created = 0
    for offset in range(0, len(subjects), batch_size):
        chunk = subjects[offset : offset + batch_size]
        data_keys: list[DataKey] = []
        messages: list[Message] = []
        copies: list[Delivery] = []
        tokens: list[SearchToken] = []
        for index, subject in enumerate(chunk):
            moment = start + datetime.timedelta(seconds=offset + index)
            message = Message(sender=sender, sent_at=moment)
            data_keys.append(message.adopt_key(new_data_key()))
            message.subject = subject
            message.body = body
            messages.append(message)
            copies.append(
                Delivery(
                    message=message,
                    mailbox=sender,
                    role=Role.SENDER,
                    folder=Folder.SENT,
                    sent_at=moment,
                    delivered_at=moment,
                    read_at=moment,
                    first_read_at=moment,
                )
            )
            copies.append(
                Delivery(
                    message=message,
                    mailbox=recipient,
                    role=Role.TO,
                    folder=Folder.INBOX,
                    sent_at=moment,
                    delivered_at=moment,
                )
            )
            tokens += [SearchToken(message=message, token=t) for t in search.message_tokens(subject, None)]
        with transaction.atomic():
            insert_rows(data_keys)
            insert_rows(messages)
            insert_rows(tokens)
            insert_copies(copies)
        created += len(chunk)
    return created


@dataclass
class ReindexResult:
    messages: int = 0
    unreadable: int = 0


def reindex_messages(batch_size: int = 500) -> ReindexResult:
    """Compute every message's search tokens again from its subject and patient context.

    For an instance upgraded to a version that indexes more of a message (as when joined
    compound names were added), so that older messages are found like new ones. Each batch
    replaces its messages' tokens in one transaction, with the messages locked, so a message
    deleted meanwhile is skipped rather than given tokens again; sends and reads go on
    meanwhile. A message whose content cannot be decrypted keeps its tokens and is counted
    (and logged by id). One audit event says it was done, with the counts.
    """
    result = ReindexResult()
    last: uuid.UUID | None = None
    while True:
        with transaction.atomic():
            batch = Message.objects.select_related("data_key").select_for_update(of=("self",)).order_by("pk")
            if last is not None:
                batch = batch.filter(pk__gt=last)
            messages = list(batch[:batch_size])
            if not messages:
                break
            last = messages[-1].pk
            rebuilt: list[uuid.UUID] = []
            tokens: list[SearchToken] = []
            for message in messages:
                try:
                    words = search.message_tokens(str(message.subject or ""), message.patient)
                except (CryptoError, ContentShredded) as exc:
                    logger.error("message %s: not reindexed, content unreadable (%s)", message.pk, type(exc).__name__)
                    result.unreadable += 1
                    continue
                rebuilt.append(message.pk)
                tokens += [SearchToken(message=message, token=t) for t in words]
            SearchToken.objects.filter(message_id__in=rebuilt).delete()
            insert_rows(tokens)
            result.messages += len(rebuilt)
    audit.record("message.reindex", details={"messages": result.messages, "unreadable": result.unreadable})
    return result
