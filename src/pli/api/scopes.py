"""What a token may be used for. Views name the scopes they need (``required_scopes``)."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

MESSAGES_READ = "messages:read"
MESSAGES_SEND = "messages:send"
# Filing: archive, bin, put back, delete for good from the trash. Not sending: software that
# files the letters it imported must not be able to write in the practitioner's name.
MESSAGES_FILE = "messages:file"
SHARES_READ = "shares:read"
SHARES_WRITE = "shares:write"

SCOPES: dict[str, Promise] = {
    MESSAGES_READ: _("Read messages in my mailboxes"),
    MESSAGES_SEND: _("Send messages from my mailboxes"),
    MESSAGES_FILE: _("File messages in my mailboxes (archive, trash, delete from the trash)"),
    SHARES_READ: _("Read my patient shares and their status"),
    SHARES_WRITE: _("Create and revoke patient shares"),
}

# A new token may do everything its owner may do, unless narrowed at creation.
DEFAULT_SCOPES: tuple[str, ...] = tuple(SCOPES)
