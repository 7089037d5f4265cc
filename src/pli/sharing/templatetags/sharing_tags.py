"""What messaging's pages show of a patient share."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django import template
from django.db.models import Q

from pli.accounts.models import Mailbox, MailboxMember
from pli.sharing.models import PatientShare

register = template.Library()


@register.simple_tag
def patient_share_exists(thread_id: uuid.UUID) -> bool:
    """Whether the share a patient's reply answered (its thread's id is the share's) still
    exists: the organisation's retention deletes ended shares, their replies stay in the
    mailbox, and a link to the share would lead to « page introuvable »."""
    return PatientShare.objects.filter(pk=thread_id).exists()


@register.simple_tag
def shares_from_message(message: Any, copies: Sequence[Any]) -> list[PatientShare]:
    """The secure shares made from ``message``'s attachments by the people who hold the
    viewer's copies of it (the owner of a personal mailbox, the members of a shared one),
    latest first: the team sees the documents already went to the patient, and does not send
    them twice. Shares by people outside those mailboxes (another recipient of the same
    letter, in another practice) are not theirs to see."""
    mailbox_ids = {copy.mailbox_id for copy in copies}
    if not mailbox_ids:
        return []
    # A personal mailbox's reader is its owner (Pli gives it no member row); a shared one's,
    # its members.
    members = MailboxMember.objects.filter(mailbox_id__in=mailbox_ids).values("user_id")
    owners = Mailbox.objects.filter(pk__in=mailbox_ids, owner__isnull=False).values("owner_id")
    return list(
        PatientShare.objects.filter(source_message_id=message.pk)
        .filter(Q(created_by_id__in=members) | Q(created_by_id__in=owners) | Q(reply_mailbox_id__in=mailbox_ids))
        .select_related("created_by")
        .order_by("-created_at")
    )
