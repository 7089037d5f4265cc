"""Patient shares: documents handed to a patient through a secure link.

A :class:`PatientShare` holds the patient's identity traits and contacts and the
practitioner's message, all encrypted fields; its documents are blobs encrypted under each
:class:`ShareDocument`'s own data key. The link's token is never stored: only its keyed hash
(``token_hash``), so a copy of the database opens no link. One-time codes and patient
sessions are stored as keyed hashes too.

What happened to a share (creation, notifications, each step of the patient, downloads,
revocation) is read from the audit trail (``pli.audit``), whose events target the share:
one tamper-evident history for the practitioner, the patient and the auditor.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from pli.accounts.models import Mailbox, Organisation
from pli.core.encryption import ContentShredded, EncryptedDateField, EncryptedModel, EncryptedTextField
from pli.crypto import CryptoError
from pli.messaging.models import UNREADABLE

logger = logging.getLogger(__name__)


class Status(models.TextChoices):
    SENT = "sent", pgettext_lazy("share status", "Sent")
    OPENED = "opened", pgettext_lazy("share status", "Opened")
    DOWNLOADED = "downloaded", pgettext_lazy("share status", "Downloaded")
    EXPIRED = "expired", pgettext_lazy("share status", "Expired")
    REVOKED = "revoked", pgettext_lazy("share status", "Revoked")
    LOCKED = "locked", pgettext_lazy("share status", "Locked")


# The patient's progress, kept apart from the status so that unlocking restores it.
PROGRESS_ORDER = (Status.SENT, Status.OPENED, Status.DOWNLOADED)


class LockReason(models.TextChoices):
    BIRTH_DATE = "birth_date", _("too many wrong birth dates")
    CODE = "code", _("too many wrong codes")
    CODES_SENT = "codes_sent", _("too many codes requested")


class PatientShare(EncryptedModel):
    organisation = models.ForeignKey(Organisation, null=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="patient_shares")
    # Where the patient's replies arrive: the creator's own mailbox when they have one.
    reply_mailbox = models.ForeignKey(Mailbox, null=True, on_delete=models.SET_NULL, related_name="+")
    # The received message whose attachments were forwarded, if any (an id, not a foreign
    # key: the share outlives the message's retention).
    # The message whose attachments it sent, if any: its page lists the shares made from it.
    source_message_id = models.UUIDField(null=True, blank=True, db_index=True)

    patient_given_name = EncryptedTextField()
    patient_family_name = EncryptedTextField()
    patient_birth_date = EncryptedDateField()
    patient_ins = EncryptedTextField(null=True)
    patient_email = EncryptedTextField(null=True)
    patient_mobile = EncryptedTextField(null=True)  # E.164
    message = EncryptedTextField(null=True)

    token_hash = models.CharField(max_length=64, unique=True)
    # The link a reminder replaced: it keeps working, so that the first message and a
    # patient half-way through identifying themselves are not cut off. A practitioner's
    # resend retires both.
    earlier_token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENT, db_index=True)
    progress = models.CharField(max_length=16, choices=Status.choices, default=Status.SENT)
    lock_reason = models.CharField(max_length=16, choices=LockReason.choices, blank=True)
    allow_reply = models.BooleanField(default=False)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(db_index=True)
    link_sent_at = models.DateTimeField()  # when the current link was issued
    opened_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    reminder_sent_at = models.DateTimeField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)  # conversation closed by the practitioner
    # Attempt limits count from here (creation or the last unlock).
    counters_reset_at = models.DateTimeField(default=timezone.now)

    birth_date_failures = models.PositiveSmallIntegerField(default=0)
    code_failures = models.PositiveIntegerField(default=0)
    open_count = models.PositiveIntegerField(default=0)
    download_count = models.PositiveIntegerField(default=0)
    document_count = models.PositiveSmallIntegerField(default=0)
    documents_size = models.PositiveBigIntegerField(default=0)
    # Keyed tokens of the patient's names and INS (pli.messaging.search, under the shares'
    # own key), space-separated: how a practitioner finds a share by its patient. On the row
    # rather than in a table of their own: a search only goes through the shares one may
    # see, and a creation then writes no more rows (a table cost share creation 8%).
    search_tokens = models.TextField(default="", blank=True, editable=False)
    # The random value of the web form it was made from: the same form sent twice (a double
    # click, a page sent again after a slow answer) is one share and one link sent. Empty
    # otherwise.
    submission = models.CharField(max_length=64, blank=True, default="", editable=False)
    # The last action the practitioner's page asked for ("resend:<the form's random value>"):
    # the same button sent twice does it once (one new link, one SMS).
    action_submission = models.CharField(max_length=80, blank=True, default="", editable=False)

    documents: models.Manager[ShareDocument]
    codes: models.Manager[OneTimeCode]
    notifications: models.Manager[ShareNotification]
    patient_sessions: models.Manager[PatientSession]
    replies: models.Manager[ShareReply]

    class Meta:
        db_table = "pli_patient_share"
        indexes = [models.Index(fields=["created_by", "-created_at"], name="share_by_creator")]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "submission"],
                condition=~models.Q(submission=""),
                name="pli_share_submission_unique",
            )
        ]

    @property
    def message_only(self) -> bool:
        """Sent with a message and no document (an answer to the patient, say). Read from
        the size, which stays when ended shares' documents are purged (their count does not)."""
        return not self.documents_size

    def effective_status(self, now: datetime.datetime | None = None) -> str:
        """The status as of ``now``: a share past its expiry is expired even before the
        periodic job records it (reads never write)."""
        now = now or timezone.now()
        if (self.status in PROGRESS_ORDER or self.status == Status.LOCKED) and self.expires_at <= now:
            return Status.EXPIRED
        return self.status

    @property
    def listed_patient(self) -> str:
        """The patient's names for a list of shares. One share whose key cannot be opened (a
        master key missing or wrong, a damaged row) must not make the whole list fail, as
        in a mailbox (Message.listed_subject): the list says so for that one, the error is
        logged, and opening it still fails."""
        try:
            return f"{self.patient_family_name.upper()} {self.patient_given_name}"
        except (CryptoError, ContentShredded) as exc:
            logger.error("share %s: patient unreadable in a listing (%s)", self.pk, type(exc).__name__)
            return gettext(UNREADABLE)

    @property
    def sender_name(self) -> str:
        return self.created_by.display_name

    @property
    def sender_organisation(self) -> str:
        return self.organisation.name if self.organisation_id else ""  # type: ignore[union-attr]


class ShareDocument(EncryptedModel):
    """A document of a share; its content is the blob named after its id."""

    share = models.ForeignKey(PatientShare, on_delete=models.CASCADE, related_name="documents")
    position = models.PositiveSmallIntegerField()
    name = EncryptedTextField()
    content_type = EncryptedTextField()
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "pli_share_document"
        ordering = ["position"]

    @property
    def blob_id(self) -> str:
        return self.id.hex


class OneTimeCode(models.Model):
    """A 6-digit code sent to the patient. Only its keyed hash is kept."""

    share = models.ForeignKey(PatientShare, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=64)
    channel = models.CharField(max_length=8)
    created_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    # A newer code, an unlock or a revocation retires the older ones.
    retired = models.BooleanField(default=False)

    class Meta:
        db_table = "pli_share_code"
        indexes = [models.Index(fields=["share", "-created_at"], name="share_code_latest")]

    def __str__(self) -> str:
        return f"code {self.pk} of share {self.share_id}"


class PatientSession(models.Model):
    """A patient's visit, bound to one share: the cookie holds a random key, the table its
    keyed hash. It expires after a few idle minutes and never grants anything beyond its share."""

    class Stage(models.TextChoices):
        BIRTH_DATE_CONFIRMED = "birth_date", _("Birth date confirmed")
        OPEN = "open", _("Documents open")

    key_hash = models.CharField(max_length=64, unique=True)
    share = models.ForeignKey(PatientShare, on_delete=models.CASCADE, related_name="patient_sessions")
    stage = models.CharField(max_length=16, choices=Stage.choices)
    created_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    opened_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pli_patient_session"

    def __str__(self) -> str:
        return f"patient session {self.pk} of share {self.share_id}"


class Channel(models.TextChoices):
    EMAIL = "email", _("E-mail")
    SMS = "sms", _("SMS")


class ShareNotification(EncryptedModel):
    """One e-mail or SMS to the patient, queued in the transaction that decided it.

    The rendered message (recipient, subject, text) is sealed with the notification's own
    data key until it is delivered or abandoned, then erased: the link's token exists in
    clear only in the patient's inbox.
    """

    class Kind(models.TextChoices):
        LINK = "link", _("Link")
        REMINDER = "reminder", _("Reminder")
        CODE = "code", _("One-time code")

    class State(models.TextChoices):
        PENDING = "pending", pgettext_lazy("notification state", "Pending")
        SENT = "sent", pgettext_lazy("notification state", "Sent")
        FAILED = "failed", pgettext_lazy("notification state", "Failed")
        CANCELLED = "cancelled", pgettext_lazy("notification state", "Cancelled")

    share = models.ForeignKey(PatientShare, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    recipient = EncryptedTextField(null=True)
    subject = EncryptedTextField(null=True)
    text = EncryptedTextField(null=True)
    html = EncryptedTextField(null=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    # Until then one worker owns the delivery; another one leaves it alone.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # Past this the notification is abandoned (the link or the code is no longer valid).
    give_up_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=64, blank=True)  # a short reason code, never content
    # The provider's id of the message (Twilio's SM…), which its delivery reports name.
    provider_id = models.CharField(max_length=64, blank=True, db_index=True)
    # When the provider reported the message delivered to the patient's phone.
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pli_share_notification"
        ordering = ["created_at"]


class ShareReply(models.Model):
    """A patient's answer. Its content lives in the practitioner's mailbox (a message of
    ``pli.messaging``, encrypted there); this row links it to the share."""

    share = models.ForeignKey(PatientShare, on_delete=models.CASCADE, related_name="replies")
    message_id = models.UUIDField()
    file_count = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    # The random value of the form the reply came from: the same form sent twice (a double
    # tap, a resubmission after a lost answer) is one reply. Empty for older replies.
    submission = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        db_table = "pli_share_reply"
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["share", "submission"],
                condition=~models.Q(submission=""),
                name="pli_share_reply_submission_unique",
            )
        ]

    def __str__(self) -> str:
        return f"reply {self.pk} to share {self.share_id}"
