"""The messaging endpoints of REST API v1, included by pli.api.urls (no trailing slashes)."""

from django.urls import path

import pli.api.converters  # noqa: F401 - registers <guid:…>
from pli.messaging import api

urlpatterns = [
    path("mailboxes", api.MailboxListView.as_view(), name="mailbox-list"),
    path("mailboxes/<guid:mailbox_id>/messages", api.MailboxMessagesView.as_view(), name="mailbox-messages"),
    path(
        "mailboxes/<guid:mailbox_id>/messages/search", api.MailboxSearchView.as_view(), name="mailbox-messages-search"
    ),
    path("messages", api.MessageCreateView.as_view(), name="message-create"),
    path("messages/<guid:message_id>", api.MessageDetailView.as_view(), name="message-detail"),
    path("messages/<guid:message_id>/move", api.MessageMoveView.as_view(), name="message-move"),
    path("messages/<guid:message_id>/unread", api.MessageUnreadView.as_view(), name="message-unread"),
    path(
        "messages/<guid:message_id>/attachments/<guid:attachment_id>",
        api.AttachmentView.as_view(),
        name="message-attachment",
    ),
]
