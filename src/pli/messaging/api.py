"""REST API v1 for messages (registered in pli.api.urls). Thin: the compose form validates,
services act and audit; a message the caller may not see is a 404 like a missing one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from django import forms
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpResponseBase
from django.http.multipartparser import MultiPartParserError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ParseError, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from pli.accounts.models import Mailbox, User
from pli.api import idempotency
from pli.api.parsers import JSONParser, unsupported_upload
from pli.api.permissions import HasScope
from pli.api.schema import IDEMPOTENCY_KEY, IDEMPOTENCY_RESPONSES
from pli.api.scopes import MESSAGES_FILE, MESSAGES_READ, MESSAGES_SEND
from pli.api.strict import StrictView
from pli.core.api import field_error_body, form_error_body, refuse_repeated, refuse_unknown, search_criteria
from pli.core.uploads import dropped_files
from pli.core.views import content_unavailable_message
from pli.messaging import services, uploads
from pli.messaging.forms import ComposeForm
from pli.messaging.models import Attachment, Delivery, ExternalSender, Folder, Message, Role
from pli.messaging.serializers import (
    UNKNOWN_FOLDER,
    MailboxSerializer,
    MarkUnreadSerializer,
    MessageCreatedSerializer,
    MessageCreateFormSerializer,
    MessageCreateSerializer,
    MessagePageSerializer,
    MessageSearchPageSerializer,
    MessageSearchSerializer,
    MessageSerializer,
    MovedSerializer,
    MoveSerializer,
)
from pli.messaging.uploads import UploadRejected, UploadSession
from pli.messaging.views import SearchForm, attachment_response

TAGS = ["messages"]
# What POST /api/v1/messages takes (its schema's fields); any other field is refused.
MESSAGE_FIELDS = frozenset(MessageCreateSerializer().fields)


def _user(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - IsAuthenticated ran first
    return user


def _not_found() -> NotFound:
    return NotFound(_("Not found."))


def _attachment_data(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "format": attachment.format or None,
    }


def _copy_data(copy: Delivery) -> dict[str, Any]:
    return {
        "mailbox": copy.mailbox_id,
        "folder": copy.folder,
        "unread": copy.is_incoming and copy.read_at is None,
        "uid": copy.uid,
    }


class MessagingView(StrictView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scopes: Any = [MESSAGES_READ]


class MailboxListView(MessagingView):
    @extend_schema(
        operation_id="mailboxes_list",
        summary="Your mailboxes, with their unread counts",
        responses=MailboxSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        mailboxes = services.mailbox_list(_user(request))
        counts = services.unread_counts(m.pk for m in mailboxes)
        data = [
            {
                "id": m.pk,
                "address": m.address,
                "name": m.name,
                "kind": m.kind,
                "unread": counts.get(m.pk, 0),
                "last_uid": m.last_uid,
            }
            for m in mailboxes
        ]
        return Response(MailboxSerializer(data, many=True).data)


class FolderQuerySerializer(serializers.Serializer[Any]):
    folder = serializers.ChoiceField(
        choices=Folder.choices, default=Folder.INBOX, error_messages={"invalid_choice": UNKNOWN_FOLDER}
    )
    cursor = serializers.CharField(required=False, max_length=200)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=services.MAX_PAGE_SIZE)
    q = serializers.CharField(required=False, max_length=200, allow_blank=True)
    unread = serializers.ChoiceField(
        choices=["true", "false"],
        required=False,
        error_messages={
            "invalid_choice": gettext_lazy("Write unread=true (only unread messages) or unread=false (only read ones).")
        },
    )


_FOLDER_QUERY = ("folder", "cursor", "limit", "q", "unread")


class ArrivalsQuerySerializer(serializers.Serializer[Any]):
    after_uid = serializers.IntegerField(min_value=0, max_value=2**63 - 1)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=services.MAX_PAGE_SIZE)


# Checked by the web search's form; `q` keeps the serializer (no word to look for finds nothing).
_SEARCH_CRITERIA = ("sender", "date_from", "date_to")
LISTING_PARAMETERS = frozenset((*_FOLDER_QUERY, *_SEARCH_CRITERIA, "after_uid"))


class _ApiSearchForm(SearchForm):
    """The web search's checks, with the dates only as the API documents them (YYYY-MM-DD):
    Django's other formats follow the request's language, so that 01/02/2026 was the 1st of
    February in French and the 2nd of January in English."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["folder"]  # the API's own `folder` parameter chooses the folder
        for name in ("date_from", "date_to"):
            field = self.fields[name]
            assert isinstance(field, forms.DateField)  # noqa: S101 - SearchForm's own
            field.input_formats = ["%Y-%m-%d"]
            field.error_messages["invalid"] = _("Enter a date as YYYY-MM-DD.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("date_from", "date_to"):
            # Given, but empty: not a date (the schema says so), rather than no criterion.
            if name in self.data and not str(self.data[name]).strip() and name not in self.errors:
                self.add_error(name, self.fields[name].error_messages["invalid"])
        return data


def _mailbox(request: Request, user: User, mailbox_id: uuid.UUID) -> Mailbox:
    """A mailbox of the caller's; one out of reach is not found, as a missing one, and the
    refusal is recorded."""
    try:
        return services.mailbox_for(user, mailbox_id)
    except services.NotVisible:
        services.record_denied(user, request._request, ("accounts.mailbox", mailbox_id), "api")
        raise _not_found() from None


def _folder_page(request: Request, user: User, mailbox: Mailbox, given: Any) -> services.Page | Response:
    """A page of a folder, searched by the criteria ``given`` (the listing's query, or a
    search's body); the answer naming each refused criterion instead."""
    refuse_repeated(given, [*_FOLDER_QUERY, *_SEARCH_CRITERIA])
    # Plain dicts of what was given, not the QueryDict: DRF reads an empty value there as
    # an absent one, so that folder= listed the inbox, limit= gave 50 and date_to= no
    # bound, where the schema allows only a folder, a number, a date.
    query = FolderQuerySerializer(data={name: given[name] for name in _FOLDER_QUERY if name in given})
    # The web search's own form checks the other criteria, so both refuse the same dates.
    criteria = _ApiSearchForm({name: given[name] for name in _SEARCH_CRITERIA if name in given})
    # Checked together, so that one answer names every refused parameter (a wrong folder
    # and a wrong date took two tries to learn).
    if not all([query.is_valid(), criteria.is_valid()]):
        body = {**form_error_body(criteria.errors), **query.errors}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    params = query.validated_data
    search = services.SearchQuery(
        text=params.get("q") or "",
        sender=criteria.cleaned_data["sender"],
        date_from=criteria.cleaned_data["date_from"],
        date_to=criteria.cleaned_data["date_to"],
    )
    try:
        page = services.folder_page(
            mailbox,
            params["folder"],
            cursor=params.get("cursor"),
            limit=params.get("limit") or services.PAGE_SIZE,
            query=search if search else None,
            unread={"true": True, "false": False}.get(params.get("unread", "")),
        )
    except services.BadCursor:
        raise ValidationError({"cursor": [_("This cursor is not valid: use the `next` link of a page.")]}) from None
    services.record_listing(user, mailbox, params["folder"], len(page.items), request._request)
    return page


class MailboxMessagesView(MessagingView):
    query_parameters = {"GET": LISTING_PARAMETERS}

    @extend_schema(
        operation_id="mailbox_messages_list",
        summary="Messages of a folder, newest first, paginated by cursor; or those that arrived after a number",
        description="Two ways to list. By folder (`folder`, and the search parameters): newest first, a page "
        "after the other with `next`. By arrival (`after_uid`): every message filed in the mailbox after the one "
        "numbered `after_uid`, oldest first, whatever folder it is in now and whether someone read it or not; "
        "numbers are given in the order messages become visible, so software that keeps the last `uid` it "
        "processed and asks for what came after sees each message once, none missed. Start from 0, or from the "
        "mailbox's `last_uid` (GET /api/v1/mailboxes) to skip what is already there. `after_uid` combines with "
        "`limit` only.",
        parameters=[
            OpenApiParameter("folder", str, enum=Folder.values, default=Folder.INBOX, description="The folder."),
            OpenApiParameter("cursor", str, description="The `next` cursor of the previous page."),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": services.MAX_PAGE_SIZE, "default": services.PAGE_SIZE},
                description=f"Messages per page (1 to {services.MAX_PAGE_SIZE}, default {services.PAGE_SIZE}).",
            ),
            OpenApiParameter(
                "q",
                str,
                description="Search words: subject words (whole), patient names (whole, or their first three "
                "letters or more) or INS.",
            ),
            OpenApiParameter(
                "sender",
                str,
                description="Words of the sender's name or address (accents and case ignored); for a patient's "
                "answer, of the patient's names.",
            ),
            OpenApiParameter(
                "date_from", OpenApiTypes.DATE, description="Sent on or after this day (YYYY-MM-DD, Paris time)."
            ),
            OpenApiParameter("date_to", OpenApiTypes.DATE, description="Sent on or before this day (YYYY-MM-DD)."),
            OpenApiParameter(
                "unread",
                str,
                enum=["true", "false"],
                description="`true`: only the messages still unread in this mailbox (received, neither opened "
                "nor marked read); `false`: only the others. Software that files each new letter should rather "
                "use `after_uid`: a letter someone opened first is no longer unread.",
            ),
            OpenApiParameter(
                "after_uid",
                {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**63 - 1},
                description="List the messages that arrived after the one with this `uid` (0: from the first), "
                "oldest first, in every folder. With `limit` only. A number above the mailbox's `last_uid` is a 400: "
                "the database was restored from a backup and numbers again from an older count; start again from 0 "
                "and skip the messages already processed (by their `id`).",
            ),
        ],
        responses=MessagePageSerializer,
        tags=TAGS,
    )
    def get(self, request: Request, mailbox_id: uuid.UUID) -> Response:
        user = _user(request)
        mailbox = _mailbox(request, user, mailbox_id)
        given = request.query_params
        if "after_uid" in given:
            return self._arrivals(request, user, mailbox)
        page = _folder_page(request, user, mailbox, given)
        if isinstance(page, Response):
            return page
        next_url = None
        if page.next_cursor:
            query_params = request.query_params.copy()
            query_params["cursor"] = page.next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{query_params.urlencode()}")
        results = [_summary(copy) for copy in page.items]
        return Response({"next": next_url, "results": results})

    def _arrivals(self, request: Request, user: User, mailbox: Mailbox) -> Response:
        given = request.query_params
        refuse_repeated(given, ["after_uid", "limit"])
        # A folder or a search would make the walk skip what it filters out, and the numbers
        # seen no longer tell what was missed: refused rather than half applied.
        clash = [name for name in (*_FOLDER_QUERY, *_SEARCH_CRITERIA) if name in given and name != "limit"]
        if clash:
            message = _("after_uid lists every message in the order they arrived: it combines with limit only.")
            raise ValidationError({name: [message] for name in clash})
        query = ArrivalsQuerySerializer(data={name: given[name] for name in ("after_uid", "limit") if name in given})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if params["after_uid"] > mailbox.last_uid:
            # Never given yet: the software saw numbers this database no longer knows (restored
            # from a backup, it numbers again from its older count) and would skip, without a
            # word, the letters given the numbers it believes it has passed. Read with the
            # mailbox, after any copy the software saw had committed with its number.
            message = _(
                "No message of this mailbox has this number yet (its last is %(last)s): if Pli's database "
                "was restored from a backup, start again from after_uid=0 and skip the messages already "
                "processed (by their id)."
            ) % {"last": mailbox.last_uid}
            raise ValidationError({"after_uid": [message]})
        page = services.arrivals_page(mailbox, params["after_uid"], limit=params.get("limit") or services.PAGE_SIZE)
        services.record_listing(user, mailbox, "arrivals", len(page.items), request._request)
        next_url = None
        if page.next_cursor:
            query_params = request.query_params.copy()
            query_params["after_uid"] = page.next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{query_params.urlencode()}")
        return Response({"next": next_url, "results": [_summary(copy) for copy in page.items]})


def _sender_data(message: Message) -> dict[str, Any]:
    """Who sent it: a mailbox's address and name; for a message from outside Pli's mailboxes
    (no address to answer to) the label readers see, decrypted now, and its kind; for a
    patient's answer, the share it answers (its thread is the share's)."""
    sender = message.sender
    if sender is not None:
        return {"sender": sender.address, "sender_name": sender.name, "sender_kind": "mailbox", "share_id": None}
    if message.readable_external_sender():
        kind = message.sender_kind
        share = message.thread_id if kind == ExternalSender.PATIENT_LINK else None
        return {"sender": None, "sender_name": message.sender_label, "sender_kind": kind, "share_id": share}
    return {"sender": None, "sender_name": None, "sender_kind": "mailbox", "share_id": None}


def _summary(copy: Delivery) -> dict[str, Any]:
    message = copy.message
    return {
        "id": message.pk,
        "thread_id": message.thread_id,
        "subject": message.listed_subject,
        **_sender_data(message),
        "sent_at": message.sent_at.isoformat(),
        "unread": copy.is_incoming and copy.read_at is None,
        "folder": copy.folder,
        "attachments": message.attachment_count,
        "uid": copy.uid,
    }


def message_data(message: Message, copies: list[Delivery]) -> dict[str, Any]:
    recipients = services.message_recipients(message)
    sent_by_caller = any(c.role == Role.SENDER for c in copies)
    patient = message.patient
    return {
        "id": message.pk,
        "thread_id": message.thread_id,
        "in_reply_to": message.in_reply_to_id,
        "subject": message.subject,
        "body": message.body,
        **_sender_data(message),
        "to": [r.mailbox.address for r in recipients if r.role == Role.TO],
        "cc": [r.mailbox.address for r in recipients if r.role == Role.CC],
        "sent_at": message.sent_at.isoformat(),
        "patient": (
            {
                "ins": patient.get("ins", ""),
                "family_name": patient.get("family_name", ""),
                "given_names": patient.get("given_names", ""),
                "birth_date": patient.get("birth_date") or None,
                "sex": patient.get("sex", ""),
                "birthplace_code": patient.get("birthplace_code", ""),
            }
            if patient
            else None
        ),
        "attachments": [_attachment_data(a) for a in services.message_attachments(message)],
        "copies": [{**_copy_data(c), **services.team_activity(c)} for c in copies],
        "receipts": [
            {
                "address": r.mailbox.address,
                "name": r.mailbox.name,
                "role": r.role,
                "delivered_at": r.delivered_at.isoformat(),
                "read_at": r.first_read_at.isoformat() if r.first_read_at else None,
                "answered_at": r.answered_at.isoformat() if r.answered_at else None,
            }
            for r in recipients
        ]
        if sent_by_caller
        else [],
    }


SEARCH_FIELDS = frozenset((*_FOLDER_QUERY, *_SEARCH_CRITERIA))


class MailboxSearchView(MessagingView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        operation_id="mailbox_messages_search",
        summary="Search a folder, the criteria in the body (kept out of URLs and the logs of proxies)",
        description="The listing's search (`GET …/messages` with `q`, `sender`, `date_from`, `date_to`, "
        "`unread`, `folder`, `limit`), sent as a JSON object or a form: a patient's name or INS in a URL ends "
        "up in the logs of every proxy on the way. Newest first; for the next page, send the same criteria "
        "with `cursor` set to `next_cursor`.",
        request={
            "application/json": MessageSearchSerializer,
            "application/x-www-form-urlencoded": MessageSearchSerializer,
        },
        responses=MessageSearchPageSerializer,
        tags=TAGS,
    )
    def post(self, request: Request, mailbox_id: uuid.UUID) -> Response:
        user = _user(request)
        mailbox = _mailbox(request, user, mailbox_id)
        given = search_criteria(request.data, SEARCH_FIELDS)
        page = _folder_page(request, user, mailbox, given)
        if isinstance(page, Response):
            return page
        return Response({"next_cursor": page.next_cursor, "results": [_summary(copy) for copy in page.items]})


class MessageCreateView(MessagingView):
    required_scopes = [MESSAGES_SEND]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="messages_create",
        summary="Send a message (multipart/form-data; attachments are encrypted as they stream in)",
        request={
            "multipart/form-data": MessageCreateSerializer,
            "application/x-www-form-urlencoded": MessageCreateFormSerializer,
        },
        responses={
            201: MessageCreatedSerializer,
            413: OpenApiResponse(description="Attachments too large (per message limit); `attachments` named."),
            **IDEMPOTENCY_RESPONSES,
        },
        parameters=[IDEMPOTENCY_KEY],
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        user = _user(request)
        return idempotency.guarded(
            request._request, user, idempotency.MESSAGES, lambda held: self._send(request, user, held)
        )

    def _send(self, request: Request, user: User, held: idempotency.Claim | None) -> Response:
        with UploadSession() as session:
            # Before anything reads the body: files must never reach Django's default
            # handlers, which would write plaintext temporary files.
            uploads.install(request._request, session)
            try:
                # Django's parsing, as the web form's (pli.messaging.uploads.install adds to it),
                # for the media types DRF's parsers of this view take.
                if self.get_content_negotiator().select_parser(request, self.get_parsers()) is None:
                    raise unsupported_upload(request.content_type)
                data, files = request._request.POST, request._request.FILES
                uploads.check_urlencoded_text(request._request)
                refuse_unknown(data, MESSAGE_FIELDS, files.keys())
            except UploadRejected as exc:
                return Response(field_error_body(exc.field, exc.message), status=exc.status)
            except RequestDataTooBig:
                return Response({"detail": _("The text fields are too large.")}, status=status.HTTP_400_BAD_REQUEST)
            except (TooManyFieldsSent, TooManyFilesSent):
                return Response({"detail": _("Too many form fields.")}, status=status.HTTP_400_BAD_REQUEST)
            except (ParseError, MultiPartParserError):
                # DRF's own message quotes Django's parser in English ("Invalid boundary…").
                return Response(
                    {"detail": _("The multipart body could not be read; nothing was saved.")},
                    status=status.HTTP_400_BAD_REQUEST,
                )
            replayed, on_created = idempotency.before_creating(
                request, held, data, files, partial(_replay, request, user)
            )
            if replayed is not None:
                # Answered from the first request's result; this one's blobs are
                # discarded with the session, as those of any request that saves nothing.
                return replayed
            form = ComposeForm(data, files, user=user, uploads=uploads.pending_uploads(files))
            if not form.is_valid():
                return Response(form_error_body(form.errors), status=status.HTTP_400_BAD_REQUEST)
            try:
                message = services.send_message(
                    user, form.draft(), session=session, request=request._request, on_created=on_created
                )
            except idempotency.Conflict:
                return idempotency.in_flight().response()
            except services.UploadExpired:
                return Response(
                    {"attachments": [_("The upload took too long and expired. Please send again.")]},
                    status=status.HTTP_400_BAD_REQUEST,
                )
            except services.SourceGone as exc:
                # Deleted for good meanwhile: answered as the form would answer now.
                return Response({exc.field: [_("Unknown message.")]}, status=status.HTTP_400_BAD_REQUEST)
            except services.ContentUnavailable:
                raise APIException(content_unavailable_message()) from None
            attachments = message.__dict__["attachment_list"]
        return Response(_created_body(message, attachments), status=status.HTTP_201_CREATED)


def _created_body(message: Message, attachments: list[Attachment]) -> dict[str, Any]:
    return {
        "id": message.pk,
        "thread_id": message.thread_id,
        "sent_at": message.sent_at.isoformat(),
        "attachments": [_attachment_data(a) for a in attachments],
    }


def _replay(request: Request, user: User, held: idempotency.Claim, request_fingerprint: str) -> Response:
    """The answer of the first request with this Idempotency-Key, rebuilt from its message."""
    try:
        idempotency.check_same_request(held, request_fingerprint)
        copies = services.visible_copies(user, held.row.object_id or "")
        if not copies:
            # Deleted for good since (or its mailbox left): nothing to answer with.
            raise idempotency.gone()
    except idempotency.Refused as exc:
        return exc.response()
    message = copies[0].message
    idempotency.record_replay(user, idempotency.MESSAGES, message, request._request)
    return Response(_created_body(message, services.message_attachments(message)), status=status.HTTP_201_CREATED)


def _mailbox_query(request: Request) -> uuid.UUID | None:
    refuse_repeated(request.query_params, ["mailbox"])
    if "mailbox" not in request.query_params:
        return None
    # Given but empty is not "every mailbox": a variable left empty read (or deleted) the
    # copies in all the caller's mailboxes, a shared one's included.
    try:
        return uuid.UUID(request.query_params["mailbox"])
    except ValueError:
        raise ValidationError({"mailbox": [_("Must be a mailbox id.")]}) from None


class MessageDetailView(MessagingView):
    query_parameters = {"GET": ("mailbox",), "DELETE": ("mailbox",)}
    required_scopes = {"GET": [MESSAGES_READ], "DELETE": [MESSAGES_FILE]}
    # No HEAD: a GET marks the message read and sets the sender's receipt, which a proxy's
    # or link checker's "safe" HEAD must not do.
    http_method_names = ["get", "delete", "options"]

    @extend_schema(
        operation_id="messages_retrieve",
        summary="A message, marked read in your mailboxes",
        parameters=[
            OpenApiParameter(
                "mailbox",
                OpenApiTypes.UUID,
                description="Read it through this mailbox only: the copies in your other shared "
                "mailboxes stay unread. Read through a shared mailbox, your copy in your personal mailbox "
                "is read too (it is yours alone). 404 if the message is not in it.",
            )
        ],
        responses=MessageSerializer,
        tags=TAGS,
    )
    def get(self, request: Request, message_id: uuid.UUID) -> Response:
        mailbox_id = _mailbox_query(request)
        try:
            opened = services.open_message(_user(request), message_id, mailbox_id=mailbox_id, request=request._request)
        except services.NotVisible:
            services.record_denied(
                _user(request), request._request, ("messaging.message", message_id), "read", mailbox=mailbox_id
            )
            raise _not_found() from None
        return Response(message_data(opened.message, opened.copies))

    @extend_schema(
        operation_id="messages_destroy",
        summary="Delete for good your copies that are in the trash",
        parameters=[OpenApiParameter("mailbox", OpenApiTypes.UUID, description="Only the copy in this mailbox.")],
        responses={204: None},
        tags=TAGS,
    )
    def delete(self, request: Request, message_id: uuid.UUID) -> Response:
        mailbox_id = _mailbox_query(request)
        try:
            services.delete_message(_user(request), message_id, mailbox_id=mailbox_id, request=request._request)
        except services.NotVisible:
            services.record_denied(
                _user(request), request._request, ("messaging.message", message_id), "delete", mailbox=mailbox_id
            )
            raise _not_found() from None
        except services.NotInTrash:
            raise ValidationError({"folder": [_("Move the message to the trash first.")]}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessageMoveView(MessagingView):
    required_scopes = [MESSAGES_FILE]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="messages_move",
        summary="File your copies of a message in a folder",
        request=MoveSerializer,
        responses=MovedSerializer,
        tags=TAGS,
    )
    def post(self, request: Request, message_id: uuid.UUID) -> Response:
        return _change_copies(
            request,
            message_id,
            "move",
            MoveSerializer,
            lambda user, data: services.move_message(
                user, message_id, data["folder"], mailbox_id=data.get("mailbox"), request=request._request
            ),
        )


class MessageUnreadView(MessagingView):
    # The read state is the reading scope's: a GET of the message sets it.
    required_scopes = [MESSAGES_READ]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="messages_unread",
        summary="Mark your received copies of a message unread again",
        description="The copies count as unread (`unread` in the lists, the mailbox's count) until the message "
        "is read again. The sender's receipt keeps the time it was first read. 400 when you hold only the "
        "copy you sent.",
        request=MarkUnreadSerializer,
        responses=MovedSerializer,
        tags=TAGS,
    )
    def post(self, request: Request, message_id: uuid.UUID) -> Response:
        def mark(user: User, data: dict[str, Any]) -> list[Delivery]:
            try:
                return services.mark_unread(user, message_id, mailbox_id=data.get("mailbox"), request=request._request)
            except services.NotReceived:
                raise ValidationError({"detail": _("Only a message you received can be marked unread.")}) from None

        return _change_copies(request, message_id, "unread", MarkUnreadSerializer, mark)


def _change_copies(
    request: Request,
    message_id: uuid.UUID,
    step: str,
    serializer: type[serializers.Serializer[Any]],
    change: Callable[[User, dict[str, Any]], list[Delivery]],
) -> Response:
    """A change to the caller's copies of a message (filed, marked unread): a message that is
    not theirs answers 404 as a missing one, before its body is even read, and the refusal is
    recorded (``step`` names what was tried); the answer is the copies as changed."""
    user = _user(request)
    if not services.visible_copies(user, message_id):
        services.record_denied(user, request._request, ("messaging.message", message_id), step)
        raise _not_found()
    fields = serializer().fields
    refuse_repeated(request.data, fields)
    refuse_unknown(request.data, fields, dropped_files(request._request))
    body = serializer(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        copies = change(user, body.validated_data)
    except services.NotVisible:
        mailbox = body.validated_data.get("mailbox")
        services.record_denied(user, request._request, ("messaging.message", message_id), step, mailbox=mailbox)
        raise _not_found() from None
    return Response({"id": message_id, "copies": [_copy_data(c) for c in copies]})


class AnyContentRenderer(BaseRenderer):
    """Lets a client ask for the attachment with any ``Accept``; errors still come as JSON."""

    media_type = "*/*"
    format = "bin"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if isinstance(data, bytes):
            return data
        return json.dumps(data, default=str).encode()


class AttachmentView(MessagingView):
    renderer_classes = [JSONRenderer, AnyContentRenderer]
    # No HEAD: it would be recorded as a download.
    http_method_names = ["get", "options"]

    @extend_schema(
        operation_id="messages_attachment_retrieve",
        summary="The content of an attachment, streamed",
        responses={(200, "*/*"): OpenApiTypes.BINARY},
        # The JSON renderer is there for error bodies only; no format is chosen by query.
        parameters=[OpenApiParameter("format", exclude=True)],
        tags=TAGS,
    )
    def get(self, request: Request, message_id: uuid.UUID, attachment_id: uuid.UUID) -> HttpResponseBase:
        try:
            item, reader = services.open_attachment(_user(request), message_id, attachment_id, request=request._request)
        except services.NotVisible:
            services.record_denied(
                _user(request),
                request._request,
                ("messaging.message", message_id),
                "download",
                attachment=attachment_id,
            )
            raise _not_found() from None
        except services.ContentUnavailable:
            raise APIException(content_unavailable_message()) from None
        return attachment_response(item, reader, download=True)
