"""The access journal of an organisation: its part of the audit trail, for its administrators.

Which events concern an organisation: those of its members (the actor is a member), and
those whose target is one of its members, its mailboxes, its invitations, the organisation
itself, a message or attachment with a copy in one of its mailboxes, or one of its patient
shares (the patient's steps on it included). The trail holds no content and the journal adds
none: who (a name, « le patient », « Pli »), what (a label), on what (a type and an id), when,
from which address.

The trail only grows: pages go by cursor (the ``seq`` of the last row shown), never by
offset.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import CharField, Exists, F, Func, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from pli.accounts.models import Invitation, Mailbox, Membership, Organisation, User
from pli.audit import services as audit
from pli.audit.models import AuditEvent

PAGE_SIZE = 50

# Every action code recorded today, with its label; an unknown code is shown as is.
ACTIONS: dict[str, Promise] = {
    "auth.login": _("Sign-in"),
    "auth.logout": _("Sign-out"),
    "auth.second_factor": _("Second factor"),
    "auth.second_factor.added": _("Second factor added"),
    "auth.second_factor.removed": _("Second factor removed"),
    "auth.second_factor.reset": _("Recovery codes renewed"),
    "auth.reauthentication": _("Password confirmed"),
    "auth.session_expired": _("Session expired"),
    "auth.sessions.ended": _("Sessions ended"),
    "auth.password.changed": _("Password changed"),
    "auth.password.set": _("Password set"),
    "auth.password.reset": _("Password reset"),
    "account.new_mail_email": _("E-mail notices of new messages turned on or off"),
    "api.token_created": _("API token created"),
    "api.token_revoked": _("API token revoked"),
    "api.token_used": _("API token used"),
    "api.idempotent_replay": _("API request repeated"),
    "mailbox.list": _("Mailbox listed"),
    "mailbox.access_denied": _("Mailbox access refused"),
    "message.read": _("Message read"),
    "message.send": _("Message sent"),
    "message.receive": _("Message received"),
    "message.move": _("Message moved"),
    "message.mark_read": _("Message marked read (not opened)"),
    "message.mark_unread": _("Message marked unread"),
    "message.delete": _("Message deleted"),
    "message.shred": _("Message erased"),
    "message.access_denied": _("Message access refused"),
    "attachment.download": _("Attachment downloaded"),
    "share.created": _("Patient share created"),
    "share.read": _("Patient share consulted"),
    "share.list": _("Patient shares listed"),
    "share.revoked": _("Patient link revoked"),
    "share.unlocked": _("Patient share unlocked"),
    "share.resent": _("Patient link sent again"),
    "share.closed": _("Patient conversation closed"),
    "share.expired": _("Patient share expired"),
    "share.reminder_queued": _("Reminder to the patient"),
    "share.notification_sent": _("Patient notified"),
    "share.notification_delivered": _("SMS delivered to the patient's phone"),
    "share.notification_failed": _("Patient notification failed"),
    "share.documents_purged": _("Patient documents erased"),
    "share.deleted": _("Patient share deleted (retention)"),
    "share.birth_date_confirmed": _("Birth date confirmed"),
    "share.birth_date_failed": _("Wrong birth date"),
    "share.code_sent": _("Code sent to the patient"),
    "share.code_failed": _("Wrong code"),
    "share.code_repeated": _("Code sent again by the browser"),
    "share.opened": _("Patient share opened"),
    "share.locked": _("Patient share locked"),
    "share.documents_listed": _("Documents listed by the patient"),
    "share.viewed": _("Document viewed by the patient"),
    "share.downloaded": _("Document downloaded by the patient"),
    "share.replied": _("Patient reply"),
    "share.access_denied": _("Patient share access refused"),
    "organisation.created": _("Organisation created"),
    "organisation.settings_changed": _("Organisation settings changed"),
    "organisation.journal_viewed": _("Access journal viewed"),
    "organisation.journal_exported": _("Access journal exported"),
    "user.created": _("Account created"),
    "membership.added": _("Member added"),
    "membership.removed": _("Member removed"),
    "membership.role_changed": _("Role changed"),
    "mailbox.created": _("Shared mailbox created"),
    "mailbox.renamed": _("Shared mailbox renamed"),
    "mailbox.inactivity_warned": _("Unused mailbox: members warned"),
    "mailbox.emptied": _("Unused mailbox emptied"),
    "mailbox.members_changed": _("Shared mailbox members changed"),
    "mailbox.member_added": _("Access to a shared mailbox given"),
    "mailbox.member_removed": _("Access to a shared mailbox withdrawn"),
    "invitation.sent": _("Invitation sent"),
    "invitation.accepted": _("Invitation accepted"),
    "invitation.revoked": _("Invitation cancelled"),
    "invitation.refused": _("Invitation link refused"),
}

# The kinds of action the journal can be filtered by.
KINDS: dict[str, tuple[Promise, tuple[str, ...]]] = {
    "read": (_("Reads"), ("message.read", "share.read", "mailbox.list", "share.list")),
    "download": (_("Downloads"), ("attachment.download",)),
    "send": (_("Sent and received messages"), ("message.send", "message.receive")),
    "move": (_("Moves"), ("message.move", "message.mark_read", "message.mark_unread")),
    "delete": (_("Deletions"), ("message.delete", "message.shred", "share.documents_purged", "share.deleted")),
    "patient": (
        _("Patient steps"),
        (
            "share.birth_date_confirmed",
            "share.birth_date_failed",
            "share.code_sent",
            "share.code_failed",
            "share.code_repeated",
            "share.opened",
            "share.locked",
            "share.documents_listed",
            "share.viewed",
            "share.downloaded",
            "share.replied",
            "share.access_denied",
        ),
    ),
    "share": (
        _("Patient shares"),
        (
            "share.created",
            "share.revoked",
            "share.unlocked",
            "share.resent",
            "share.closed",
            "share.expired",
            "share.reminder_queued",
            "share.notification_sent",
            "share.notification_delivered",
            "share.notification_failed",
        ),
    ),
    "sign_in": (
        _("Sign-ins"),
        (
            "auth.login",
            "auth.logout",
            "auth.second_factor",
            "auth.reauthentication",
            "auth.session_expired",
            "auth.sessions.ended",
        ),
    ),
    "security": (
        _("Passwords, second factors and API tokens"),
        (
            "auth.second_factor.added",
            "auth.second_factor.removed",
            "auth.second_factor.reset",
            "auth.password.changed",
            "auth.password.set",
            "auth.password.reset",
            "api.token_created",
            "api.token_revoked",
            "api.token_used",
        ),
    ),
    "refused": (_("Refused accesses"), ("mailbox.access_denied", "message.access_denied", "invitation.refused")),
    "administration": (
        _("Administration"),
        (
            "organisation.created",
            "organisation.settings_changed",
            "user.created",
            "membership.added",
            "membership.removed",
            "membership.role_changed",
            "mailbox.created",
            "mailbox.renamed",
            "mailbox.inactivity_warned",
            "mailbox.emptied",
            "mailbox.members_changed",
            "mailbox.member_added",
            "mailbox.member_removed",
            "invitation.sent",
            "invitation.accepted",
            "invitation.revoked",
            "organisation.journal_viewed",
            "organisation.journal_exported",
        ),
    ),
}

TARGETS: dict[str, Promise] = {
    "messaging.message": _("Message"),
    "messaging.attachment": _("Attachment"),
    "sharing.patientshare": _("Patient share"),
    "accounts.user": _("Account"),
    "accounts.mailbox": pgettext_lazy("audit target", "Mailbox"),
    "accounts.invitation": _("Invitation"),
    "accounts.organisation": _("Organisation"),
    "api.apitoken": _("API token"),
}


class UUIDText(Func):
    """A UUID column as the text the audit trail keeps (``str(uuid)``: lower case, dashes).
    SQLite stores the 32 hex digits only."""

    output_field = CharField()
    template = "CAST(%(expressions)s AS text)"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        hexa = "lower(%(expressions)s)"
        parts = [f"substr({hexa}, {start}, {length})" for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))]
        return self.as_sql(compiler, connection, template=" || '-' || ".join(parts), **extra)


def _ids(queryset: QuerySet[Any], field: str = "id") -> QuerySet[Any]:
    ids: QuerySet[Any] = queryset.annotate(audit_id=UUIDText(field)).values("audit_id")
    return ids


@dataclass(frozen=True)
class Filters:
    member: int | None = None
    kind: str = ""
    since: datetime.date | None = None
    until: datetime.date | None = None


def former_members(organisation: Organisation) -> QuerySet[User]:
    """Those the organisation removed and who are not back: an administrator looks into what
    a departed employee did (they were missing from the journal's « Membre » list)."""
    removed = AuditEvent.objects.filter(
        action="membership.removed", target_type="accounts.user", details__organisation=organisation.pk
    ).values_list("target_id", flat=True)
    ids = [int(value) for value in removed if value.isdigit()]
    return User.objects.filter(pk__in=ids).exclude(memberships__organisation=organisation)


def events(organisation: Organisation, filters: Filters) -> QuerySet[AuditEvent]:
    """The organisation's events matching the filters, newest first."""
    # Imported here: messaging and sharing depend on accounts, not the other way round.
    from pli.messaging.models import Attachment, DeletedCopy, Delivery, Message
    from pli.sharing.models import PatientShare

    memberships = Membership.objects.filter(organisation=organisation).annotate(audit_id=Cast("user_id", CharField()))
    mailboxes = Mailbox.objects.filter(organisation=organisation)
    message_ids = _ids(Delivery.objects.filter(mailbox__in=mailboxes.values("pk")), "message_id")
    # A copy deleted for good here while the message lives on elsewhere: still its events.
    deleted_ids = _ids(DeletedCopy.objects.filter(mailbox__in=mailboxes.values("pk")), "message_id")
    sent_ids = _ids(Message.objects.filter(sender__in=mailboxes.values("pk")))
    attachment_ids = _ids(Attachment.objects.filter(message__deliveries__mailbox__in=mailboxes.values("pk")))
    share_ids = _ids(PatientShare.objects.filter(organisation=organisation))
    # A share deleted at the end of its retention: its history stays the organisation's.
    deleted_share_ids = AuditEvent.objects.filter(
        action="share.deleted", target_type="sharing.patientshare", details__organisation=organisation.pk
    ).values("target_id")
    # Its copies moved or deleted (by someone, or a job: retention, an unused mailbox), the
    # message perhaps shredded since: the event names the organisation. A letter sent from
    # one of its mailboxes: the event names the mailbox.
    named = Q(
        action__in=("message.move", "message.delete"),
        target_type="messaging.message",
        details__organisation=organisation.pk,
    ) | Q(
        action="message.send",
        target_type="messaging.message",
        details__sender__in=[str(pk) for pk in mailboxes.values_list("pk", flat=True)],
    )
    # Someone may work in several organisations (a hospital and a practice): what they do
    # in another is not this one's to read. Their own account's events (sign-ins, second
    # factor, tokens) and their refused accesses are, from the day they joined; beyond that,
    # an event concerns the organisation through what it is about. Events on a member's
    # account that name an organisation (a role changed, a removal) are that one's.
    member_since = Exists(memberships.filter(audit_id=OuterRef("actor_id"), created_at__lte=OuterRef("at")))
    target_since = Exists(memberships.filter(audit_id=OuterRef("target_id"), created_at__lte=OuterRef("at")))
    about_the_account = (
        Q(target_type="accounts.user", target_id=F("actor_id"))
        | Q(target_type="api.apitoken")
        | Q(outcome=audit.DENIED)
    )
    members = memberships.values("audit_id")
    concerned = (
        (Q(actor_type="user", actor_id__in=members) & about_the_account & member_since)
        | Q(target_type="accounts.organisation", target_id=str(organisation.pk))
        | (
            Q(target_type="accounts.user", target_id__in=members)
            & (
                Q(details__organisation=organisation.pk)
                # One's own (a sign-in) is the branch above's: its test of the date not run twice.
                | (~Q(details__has_key="organisation") & ~Q(actor_id=F("target_id")) & target_since)
            )
        )
        | Q(target_type="accounts.mailbox", target_id__in=_ids(mailboxes))
        | Q(target_type="accounts.invitation", target_id__in=_ids(Invitation.objects.filter(organisation=organisation)))
        | Q(target_type="messaging.message", target_id__in=message_ids)
        | Q(target_type="messaging.message", target_id__in=deleted_ids)
        | Q(target_type="messaging.message", target_id__in=sent_ids)
        | Q(target_type="messaging.attachment", target_id__in=attachment_ids)
        | Q(target_type="sharing.patientshare", target_id__in=share_ids)
        | Q(target_type="sharing.patientshare", target_id__in=deleted_share_ids)
        | named
    )
    if filters.member is not None:
        # Read along the actor's index rather than the whole trail. A former member's, only
        # someone the organisation removed (the rest concerns it no more than anyone's).
        found = AuditEvent.objects.filter(actor_type="user", actor_id=str(filters.member)).filter(concerned)
        if (
            not Membership.objects.filter(organisation=organisation, user_id=filters.member).exists()
            and not former_members(organisation).filter(pk=filters.member).exists()
        ):
            found = found.none()
    else:
        found = AuditEvent.objects.filter(concerned)
    if filters.kind in KINDS:
        found = found.filter(action__in=KINDS[filters.kind][1])
    zone = timezone.get_current_timezone()
    if filters.since is not None:
        found = found.filter(at__gte=datetime.datetime.combine(filters.since, datetime.time(), zone))
    if filters.until is not None:
        day_after = filters.until + datetime.timedelta(days=1)
        found = found.filter(at__lt=datetime.datetime.combine(day_after, datetime.time(), zone))
    return found.order_by("-seq")


def page(organisation: Organisation, filters: Filters, before: int | None) -> tuple[list[AuditEvent], int | None]:
    """One page of events, and the cursor of the next (older) one, if any."""
    found = events(organisation, filters)
    if before is not None:
        found = found.filter(seq__lt=before)
    rows = list(found[: PAGE_SIZE + 1])
    if len(rows) > PAGE_SIZE:
        return rows[:PAGE_SIZE], rows[PAGE_SIZE - 1].seq
    return rows, None


@dataclass(frozen=True)
class Row:
    seq: int
    who: str
    what: str
    on: str
    on_full: str
    # With a name where the page shows one, and the whole id otherwise (the export's).
    on_named: str
    at: datetime.datetime
    ip: str
    outcome: str


def _who(event: AuditEvent, names: dict[str, str]) -> str:
    if event.actor_type == "user":
        return names.get(event.actor_id, str(_("Account %(id)s") % {"id": event.actor_id}))
    if event.actor_type == "patient":
        return str(_("the patient"))
    if event.actor_type == "system":
        return "Pli"
    if event.actor_type == "anonymous":
        return str(_("not signed in"))
    return event.actor_type


def _on(event: AuditEvent, short: bool, names: dict[tuple[str, str], str] | None = None) -> str:
    """The event's target: its kind and id, or on the page, for an account, a mailbox or
    an organisation, its name (an opaque « Compte 12 » or « Boîte 3f2a9c1e » told the administrator nothing)."""
    if not event.target_type:
        return ""
    label = TARGETS.get(event.target_type, event.target_type)
    name = (names or {}).get((event.target_type, event.target_id))
    if name:
        return f"{label} {name}"
    ident = event.target_id[:8] if short and len(event.target_id) == 36 else event.target_id
    return f"{label} {ident}"


_OUTCOMES = {"success": _("success"), "failure": _("failure"), "denied": _("refused")}


def rows(found: Iterable[AuditEvent]) -> list[Row]:
    """The events as the journal shows them. Names are the actors' and targeted accounts'
    (professionals'), mailboxes' and organisations': no patient's name, subject or content
    is ever looked up."""
    found = list(found)
    user_ids = {e.actor_id for e in found if e.actor_type == "user" and e.actor_id.isdigit()}
    user_ids |= {e.target_id for e in found if e.target_type == "accounts.user" and e.target_id.isdigit()}
    names = {str(u.pk): u.display_name for u in User.objects.filter(pk__in=[int(i) for i in user_ids])}
    mailbox_ids = {e.target_id for e in found if e.target_type == "accounts.mailbox"}
    targets = {("accounts.user", pk): name for pk, name in names.items()}
    targets |= {
        ("accounts.mailbox", str(pk)): name
        for pk, name in Mailbox.objects.filter(pk__in=_uuids(mailbox_ids)).values_list("pk", "name")
    }
    organisation_ids = {
        int(e.target_id) for e in found if e.target_type == "accounts.organisation" and e.target_id.isdigit()
    }
    targets |= {
        ("accounts.organisation", str(pk)): name
        for pk, name in Organisation.objects.filter(pk__in=organisation_ids).values_list("pk", "name")
    }
    return [
        Row(
            seq=e.seq,
            who=_who(e, names),
            what=str(ACTIONS.get(e.action, e.action)),
            on=_on(e, short=True, names=targets),
            on_full=_on(e, short=False),
            on_named=_on(e, short=False, names=targets),
            at=timezone.localtime(e.at),
            ip=e.ip or "",
            outcome=str(_OUTCOMES.get(e.outcome, e.outcome)),
        )
        for e in found
    ]


def _uuids(values: Iterable[str]) -> list[uuid.UUID]:
    found = []
    for value in values:
        with contextlib.suppress(ValueError):
            found.append(uuid.UUID(value))
    return found


def all_rows(organisation: Organisation, filters: Filters, chunk: int = 2000) -> Iterator[Row]:
    """Every matching row, newest first, read by cursor in chunks (for the export)."""
    before: int | None = None
    while True:
        found = events(organisation, filters)
        if before is not None:
            found = found.filter(seq__lt=before)
        batch = list(found[:chunk])
        yield from rows(batch)
        if len(batch) < chunk:
            return
        before = batch[-1].seq
