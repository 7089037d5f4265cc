"""People, organisations, roles and mailboxes (addresses).

Names, professional identifiers and mailbox addresses are directory data, public by nature
(the national "Annuaire Santé" publishes them), so they are not encrypted; health data
never lives in these tables.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("an e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    """A professional, an assistant or an administrator. Logs in with an e-mail address."""

    username = None  # type: ignore[assignment]
    email = models.EmailField(_("e-mail address"), unique=True)
    profession = models.CharField(_("profession"), max_length=80, blank=True)
    specialty = models.CharField(_("specialty"), max_length=120, blank=True)
    rpps = models.CharField(_("RPPS number"), max_length=11, null=True, blank=True, unique=True)
    adeli = models.CharField(_("ADELI number"), max_length=9, null=True, blank=True, unique=True)
    city = models.CharField(_("city"), max_length=120, blank=True)
    # An e-mail (without any content) when messages arrive in one's mailboxes.
    new_mail_email = models.BooleanField(_("e-mail me when messages arrive"), default=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    class Meta:
        db_table = "pli_user"

    _pli_new_password = False

    def set_password(self, raw_password: str | None) -> None:
        # A new password (from any path: allauth's pages, `pli changepassword`, the admin)
        # revokes the account's API tokens once saved (pli.accounts.signals). Not a rehash of
        # the same password, which Django does at sign-in when the hasher's settings change.
        old = self.password
        super().set_password(raw_password)
        if self.pk is not None and not (old and raw_password is not None and check_password(raw_password, old)):
            self._pli_new_password = True

    def take_new_password(self) -> bool:
        """Whether a new password was set since the last call (and forget it): the API tokens
        are revoked once per new password (pli.accounts.adapter, pli.accounts.signals)."""
        new = self._pli_new_password
        self._pli_new_password = False
        return new

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        full = f"{self.first_name} {self.last_name}".strip()
        return full or self.email

    @property
    def national_id(self) -> str:
        """The national professional id: 8+RPPS or 0+ADELI (Annuaire Santé convention)."""
        if self.rpps:
            return "8" + self.rpps
        if self.adeli:
            return "0" + self.adeli
        return ""


# An organisation's retention period is never under a month: a period typed in by mistake
# would send a practice's whole correspondence to the trash. Shorter values (set outside
# the settings page) are ignored by the retention jobs.
MIN_RETENTION_DAYS = 30


class Organisation(models.Model):
    class Kind(models.TextChoices):
        PRACTICE = "practice", _("Practice")
        CLINIC = "clinic", _("Clinic")
        HOSPITAL = "hospital", _("Hospital")
        LAB = "lab", _("Laboratory")
        PHARMACY = "pharmacy", _("Pharmacy")
        OTHER = "other", _("Other")

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("short name"), max_length=60, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.PRACTICE)
    finess = models.CharField(_("FINESS number"), max_length=9, null=True, blank=True, unique=True)
    siret = models.CharField(_("SIRET number"), max_length=14, null=True, blank=True, unique=True)
    city = models.CharField(_("city"), max_length=120, blank=True)
    # E.164; shown to patients on their pages (never in e-mails or SMS), to call when a link
    # is locked, expired or withdrawn.
    phone = models.CharField(_("telephone number for patients"), max_length=20, blank=True)
    is_demo = models.BooleanField(default=False)
    # Policies (product.md: configurable per organisation).
    share_expiry_days = models.PositiveSmallIntegerField(_("patient link validity (days)"), default=30)
    retention_days = models.PositiveIntegerField(_("message retention (days)"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "pli_organisation"

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", _("Administrator")
        PRACTITIONER = "practitioner", _("Practitioner")
        ASSISTANT = "assistant", _("Assistant")

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "pli_membership"
        constraints = [models.UniqueConstraint(fields=["user", "organisation"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} — {self.organisation} ({self.role})"


class Mailbox(models.Model):
    """An address that receives messages: a person's own, or an organisation's shared one."""

    class Kind(models.TextChoices):
        PERSONAL = "personal", _("Personal")
        ORGANISATIONAL = "organisational", _("Shared")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    address = models.CharField(_("address"), max_length=254, unique=True)
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="mailboxes")
    owner = models.OneToOneField(User, null=True, blank=True, on_delete=models.PROTECT, related_name="personal_mailbox")
    members: models.ManyToManyField[User, MailboxMember] = models.ManyToManyField(
        User, through="MailboxMember", related_name="mailboxes"
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # CNIL: a mailbox unused for a year is deleted after a warning. Set by a send from it, a
    # folder opened or a message read in it (to the half-day); a personal mailbox is also used
    # by its owner's sign-in (User.last_login). See pli.messaging.services.handle_inactive_mailboxes.
    last_used_at = models.DateTimeField(null=True, blank=True)
    # When its members were warned that it would be emptied; cleared by any use.
    inactivity_warned_at = models.DateTimeField(null=True, blank=True)
    # The random value of the shared mailbox form it was created from: the same form sent
    # twice (a double click) is one mailbox. Empty for the others and the older ones.
    submission = models.CharField(max_length=64, blank=True, default="")
    # A personal mailbox: when its owner was last e-mailed that messages had arrived (no
    # content), if ever. A shared mailbox's members each have theirs (MailboxMember).
    new_mail_notified_at = models.DateTimeField(null=True, blank=True)
    # The number given to the last copy filed in this mailbox (Delivery.uid). Raised in the
    # transaction that files the copies, so the row stays locked until COMMIT: numbers are
    # given in the order the copies become visible, as IMAP's UIDs are.
    last_uid = models.BigIntegerField(default=0)

    class Meta:
        db_table = "pli_mailbox"
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="personal", owner__isnull=False) | models.Q(kind="organisational")),
                name="personal_mailbox_has_owner",
            ),
            models.UniqueConstraint(
                fields=["organisation", "submission"],
                condition=~models.Q(submission=""),
                name="pli_mailbox_submission_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>"


class MailboxMember(models.Model):
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="mailbox_memberships")
    created_at = models.DateTimeField(auto_now_add=True)
    # When this member was last e-mailed that messages had arrived here (no content), if ever.
    new_mail_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pli_mailbox_member"
        constraints = [models.UniqueConstraint(fields=["mailbox", "user"], name="mailbox_member_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.mailbox}"


class Invitation(models.Model):
    """An organisation admin's invitation, accepted once through a link sent by e-mail.

    Only a keyed hash of the link's token is stored: a copy of the database doesn't let
    anyone accept a pending invitation.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(_("e-mail address"))
    role = models.CharField(_("role"), max_length=16, choices=Membership.Role.choices)
    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pli_invitation"
        indexes = [models.Index(fields=["organisation", "email"])]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.organisation}"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()
