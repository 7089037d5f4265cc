"""The signed-in user's mailboxes and unread counts, for the navigation of every page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from pli.accounts.models import Mailbox


@dataclass(frozen=True)
class MailboxEntry:
    mailbox: Mailbox
    unread: int


@dataclass(frozen=True)
class MailNav:
    mailboxes: list[MailboxEntry]

    @property
    def unread(self) -> int:
        return sum(entry.unread for entry in self.mailboxes)


def mail_nav(user: Any) -> MailNav:
    from pli.messaging import services

    mailboxes = services.mailbox_list(user)
    counts = services.unread_counts(m.pk for m in mailboxes)
    return MailNav([MailboxEntry(m, counts.get(m.pk, 0)) for m in mailboxes])


def mail(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: pages that don't show the navigation don't pay for the queries.
    return {"mail_nav": SimpleLazyObject(lambda: mail_nav(user))}
