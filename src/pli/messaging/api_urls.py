"""The messaging endpoints of REST API v1, included by pli.api.urls (no trailing slashes)."""

from django.urls import path

from pli.messaging import api

urlpatterns = [
    path("mailboxes", api.MailboxListView.as_view(), name="mailbox-list"),
    path("mailboxes/<uuid:mailbox_id>/messages", api.MailboxMessagesView.as_view(), name="mailbox-messages"),
    path("messages", api.MessageCreateView.as_view(), name="message-create"),
    path("messages/<uuid:message_id>", api.MessageDetailView.as_view(), name="message-detail"),
    path("messages/<uuid:message_id>/move", api.MessageMoveView.as_view(), name="message-move"),
    path(
        "messages/<uuid:message_id>/attachments/<uuid:attachment_id>",
        api.AttachmentView.as_view(),
        name="message-attachment",
    ),
]
