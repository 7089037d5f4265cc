"""Messages between professionals, their attachments, and one copy per mailbox.

A :class:`Message` is written once and never changes. Each mailbox that holds it (every
``to``/``cc`` recipient, and the sender's own copy in "sent") has a :class:`Delivery` row:
its folder, when it was delivered, read and answered, and by whom. Subjects, bodies,
patient context and attachment names are encrypted fields; attachment contents are blobs
encrypted under the attachment's own data key. Search goes through keyed tokens
(:class:`SearchToken`), never plaintext words.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

from pli.accounts.models import Mailbox
from pli.core.encryption import ContentShredded, EncryptedJSONField, EncryptedModel, EncryptedTextField
from pli.crypto import CryptoError

logger = logging.getLogger(__name__)
# Shown in lists for a message whose key cannot be opened (translated where shown).
UNREADABLE = gettext_noop("(unreadable: tell your administrator)")


class Folder(models.TextChoices):
    INBOX = "inbox", _("Inbox")
    SENT = "sent", _("Sent")
    ARCHIVE = "archive", _("Archive")
    TRASH = "trash", _("Trash")


class Role(models.TextChoices):
    TO = "to", _("To")
    CC = "cc", _("Cc")
    SENDER = "sender", _("Sender")


class ExternalSender(models.TextChoices):
    """Where a message from outside Pli's mailboxes comes from (see ``Message.external_sender``)."""

    PATIENT_LINK = "patient_link", _("A patient, through a secure link")


class Message(EncryptedModel):
    thread_id = models.UUIDField(default=uuid.uuid4, db_index=True, editable=False)
    # Directory data (public by nature): who sent it is not health data.
    sender = models.ForeignKey(Mailbox, null=True, on_delete=models.SET_NULL, related_name="+")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    in_reply_to = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="+")
    sent_at = models.DateTimeField(db_index=True)
    # Nullable: crypto-shredding (EncryptedModel.shred) clears them along with the key.
    subject = EncryptedTextField(null=True)
    body = EncryptedTextField(null=True)
    # {"ins", "family_name", "given_names", "birth_date" (ISO), "sex"}, or null.
    patient = EncryptedJSONField(null=True)
    attachment_count = models.PositiveSmallIntegerField(default=0)
    attachments_size = models.PositiveBigIntegerField(default=0)
    # A message received from outside Pli's mailboxes has no sender mailbox; this says who
    # sent it: {"kind": an ExternalSender, "name": "..."}. Encrypted like the content: the
    # name of a patient is health data. Null for messages between mailboxes.
    external_sender = EncryptedJSONField(null=True)
    # The random value of the web form it was sent from: the same form sent twice (a double
    # click, a page sent again after a slow answer) is one message. Empty otherwise.
    submission = models.CharField(max_length=64, blank=True, default="")

    attachments: models.Manager[Attachment]
    deliveries: models.Manager[Delivery]

    class Meta:
        db_table = "pli_message"
        constraints = [
            models.UniqueConstraint(
                fields=["author", "submission"],
                condition=~models.Q(submission=""),
                name="pli_message_submission_unique",
            )
        ]

    def __str__(self) -> str:
        return f"message {self.pk}"

    @property
    def listed_subject(self) -> str:
        """The subject for a list of messages. One message whose key cannot be opened (a
        master key missing or wrong, a damaged row) must not make the whole mailbox fail:
        the list says so for that one, the error is logged, and opening it still fails."""
        try:
            return str(self.subject or "")
        except (CryptoError, ContentShredded) as exc:
            logger.error("message %s: subject unreadable in a listing (%s)", self.pk, type(exc).__name__)
            return gettext(UNREADABLE)

    def readable_external_sender(self) -> dict[str, Any] | None:
        """``external_sender``, or None with the error logged if it cannot be decrypted (see
        listed_subject): who wrote is shown in lists too."""
        try:
            external = self.external_sender
        except (CryptoError, ContentShredded) as exc:
            logger.error("message %s: sender unreadable (%s)", self.pk, type(exc).__name__)
            return {"kind": "unreadable"}
        return external if isinstance(external, dict) else None

    @property
    def sender_kind(self) -> str:
        """``mailbox`` (a Pli mailbox, possibly deleted since) or an :class:`ExternalSender`."""
        external = self.readable_external_sender() if self.sender_id is None else None
        if external:
            if external.get("kind") == "unreadable":
                return str(ExternalSender.PATIENT_LINK)  # the only kind from outside so far
            return str(external.get("kind") or "external")
        return "mailbox"

    @property
    def sender_label(self) -> str:
        """Who the message is from, as its readers see it, in the active language: decrypted
        here, at display time (a patient's name is stored only in ``external_sender``)."""
        sender = self.sender
        if sender is not None:
            return sender.name
        external = self.readable_external_sender()
        if not external:
            return gettext("(deleted mailbox)")
        if external.get("kind") == "unreadable":
            return gettext(UNREADABLE)
        name = str(external.get("name") or "").strip()
        if external.get("kind") == ExternalSender.PATIENT_LINK:
            if name:
                return gettext("Patient — %(name)s (secure link)") % {"name": name}
            return gettext("Patient (secure link)")
        return name or gettext("(unknown sender)")


class Attachment(EncryptedModel):
    """A file of a message. Its content is the blob named after its id, sealed with its key."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    position = models.PositiveSmallIntegerField()
    name = EncryptedTextField(null=True)
    content_type = EncryptedTextField(null=True)
    sha256 = EncryptedTextField(null=True)  # a plaintext digest would let anyone confirm a known document
    size = models.PositiveBigIntegerField()
    # A structured health format recognised in it (pli.messaging.structured: "cda", "hprim",
    # "hl7v2", "xdm"), or None. Sealed like the type: it says what kind of document it is.
    format = EncryptedTextField(null=True)

    class Meta:
        db_table = "pli_attachment"
        ordering = ["position"]

    def __str__(self) -> str:
        return f"attachment {self.pk}"

    @property
    def blob_id(self) -> str:
        return self.id.hex


class Delivery(models.Model):
    """One mailbox's copy of a message: where it is filed and what happened to it."""

    # Every send inserts a copy per recipient, and each index of this table is written for
    # each: only the indexes the pages read are kept. The mailbox is the first column of
    # the three below (its own index would be a fourth copy of it), and read_by and
    # answered_by are never looked up (users are deactivated, never deleted).
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="+", db_index=False)
    role = models.CharField(max_length=8, choices=Role.choices)
    folder = models.CharField(max_length=8, choices=Folder.choices)
    # A copy of the message's time, so a folder page is one index range scan.
    sent_at = models.DateTimeField()
    delivered_at = models.DateTimeField()
    # Unread while null: the copy's state, which its readers may set back ("mark as unread").
    read_at = models.DateTimeField(null=True, blank=True)
    read_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # The first reading, as the sender's receipt shows it: kept when a reader marks the copy
    # unread again (a receipt is a record of what happened, not of the reader's to-do list).
    first_read_at = models.DateTimeField(null=True, blank=True)
    # The first answer, as the sender's receipt shows it; every member's is an Answer.
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # When the copy went into the trash: after PLI_TRASH_DAYS there it is deleted for good.
    trashed_at = models.DateTimeField(null=True, blank=True)
    # Its number in the mailbox, from 1, in the order copies arrived (committed): software
    # fetches what arrived after the last number it saw, whatever was read or filed since.
    # Never reused, never changed by a move. See insert_copies.
    uid = models.BigIntegerField()

    readings: models.Manager[Reading]
    answers: models.Manager[Answer]

    class Meta:
        db_table = "pli_delivery"
        indexes = [
            models.Index(fields=["mailbox", "folder", "-sent_at", "-id"], name="delivery_folder_page"),
            # A search covers every folder but the trash: newest first across folders, and
            # a date range, are one index walk too (not a sort of the whole mailbox).
            models.Index(fields=["mailbox", "-sent_at", "-id"], name="delivery_mailbox_page"),
            # The unread copies alone, newest first: the unread counts and a page of the unread
            # (software polling them, after a cursor too) are one range of it. Partial on a
            # condition without parameters, which SQLite matches; read_at as a column of a
            # full index instead, SQLite (without statistics) left for delivery_folder_page
            # on any page after the first, walking the read copies.
            models.Index(
                fields=["mailbox", "folder", "-sent_at", "-id"],
                name="delivery_unread_only",
                condition=models.Q(read_at__isnull=True),
            ),
            # The copies the trash retention job deletes, oldest first. Partial: a send
            # writes no entry in it (its copies are not in the trash).
            models.Index(fields=["trashed_at"], name="delivery_trashed", condition=models.Q(trashed_at__isnull=False)),
        ]
        constraints = [
            # A mailbox receives a message once (to wins over cc); a self-addressed message
            # also has the sender's own copy.
            models.UniqueConstraint(
                fields=["message", "mailbox"], condition=~models.Q(role="sender"), name="delivery_once_per_mailbox"
            ),
            # Also the index of what arrived after a number (MailboxMessagesView's after_uid).
            models.UniqueConstraint(fields=["mailbox", "uid"], name="delivery_uid"),
            models.UniqueConstraint(
                fields=["message", "mailbox"], condition=models.Q(role="sender"), name="delivery_one_sender_copy"
            ),
        ]

    def __str__(self) -> str:
        return f"copy of message {self.message_id} in mailbox {self.mailbox_id} ({self.folder})"

    @property
    def is_incoming(self) -> bool:
        return self.role != Role.SENDER

    @property
    def home_folder(self) -> str:
        return Folder.SENT if self.role == Role.SENDER else Folder.INBOX


class DeletedCopy(models.Model):
    """A recipient's copy deleted for good while the message lives on in other mailboxes:
    who received it and what became of it (delivered, read, answered), never its content.
    The sender's receipts and every reader's "To"/"Cc" still name that recipient; it goes
    with the message when the last copy does."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=8, choices=Role.choices)
    delivered_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)  # the receipt's: the first reading
    answered_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField()

    class Meta:
        db_table = "pli_deleted_copy"
        constraints = [models.UniqueConstraint(fields=["message", "mailbox"], name="deleted_copy_once_per_mailbox")]

    def __str__(self) -> str:
        return f"deleted copy of message {self.message_id} in mailbox {self.mailbox_id}"

    def as_recipient(self) -> Delivery:
        """The copy as it stood, for the lists of recipients (never saved)."""
        return Delivery(
            message_id=self.message_id,
            mailbox=self.mailbox,
            role=self.role,
            folder=Folder.TRASH,
            sent_at=self.delivered_at,
            delivered_at=self.delivered_at,
            read_at=self.read_at,
            first_read_at=self.read_at,
            answered_at=self.answered_at,
        )


class Reading(models.Model):
    """Who opened a copy, and when: for shared mailboxes the team sees every reader."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="readings")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    read_at = models.DateTimeField()

    class Meta:
        db_table = "pli_reading"
        constraints = [models.UniqueConstraint(fields=["delivery", "user"], name="reading_once_per_user")]

    def __str__(self) -> str:
        return f"read by user {self.user_id}"


class Answer(models.Model):
    """Who answered a copy, and when (their first answer): for shared mailboxes the team sees
    every member who answered, and two answering the same letter see each other."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="answers")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    answered_at = models.DateTimeField()

    class Meta:
        db_table = "pli_answer"
        ordering = ["answered_at", "id"]
        constraints = [models.UniqueConstraint(fields=["delivery", "user"], name="answer_once_per_user")]

    def __str__(self) -> str:
        return f"answered by user {self.user_id}"


class SearchToken(models.Model):
    """A keyed blind-index token of one normalised word of a message (see pli.messaging.search)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    token = models.CharField(max_length=16)

    class Meta:
        db_table = "pli_search_token"
        constraints = [models.UniqueConstraint(fields=["token", "message"], name="search_token_unique")]

    def __str__(self) -> str:
        return "search token"
