"""REST API v1 for patient shares (registered in pli.api.urls). Thin: the share form
validates, services act and audit; a share of someone else is a 404 like a missing one."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, cast

from django import forms
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import transaction
from django.http import QueryDict
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from pli.accounts import services as accounts
from pli.accounts.models import User
from pli.api import idempotency
from pli.api.models import ApiToken
from pli.api.parsers import JSONParser, unsupported_upload
from pli.api.permissions import HasScope
from pli.api.schema import IDEMPOTENCY_KEY, IDEMPOTENCY_RESPONSES
from pli.api.scopes import SHARES_READ, SHARES_WRITE
from pli.api.serializers import UTCDateTimeField
from pli.api.strict import StrictView
from pli.audit import services as audit
from pli.blobs import BlobNotFound
from pli.core.api import field_error_body, form_error_body, refuse_repeated, refuse_unknown, search_criteria
from pli.core.ins import birth_date_mismatch
from pli.core.uploads import dropped_files
from pli.core.views import content_unavailable_message
from pli.messaging import services as messaging
from pli.messaging.models import Attachment, Message
from pli.sharing import mailbox, notifications, services, validation
from pli.sharing.forms import (
    NO_DOCUMENT_NOR_MESSAGE,
    NOT_YOUR_MAILBOX,
    CorrectionForm,
    ShareFilterForm,
    ShareForm,
    sender_error,
)
from pli.sharing.models import Channel, LockReason, PatientShare, Status
from pli.sharing.uploads import DOCUMENTS_FIELD, UploadBatch, UploadRejected, document_rules, install, pending_files

TAGS = ["shares"]


class StrictBooleanField(forms.BooleanField):
    """A flag sent by software: ``allow_reply=0`` must not mean yes, as a checkbox's
    "any value is checked" would."""

    # Not the checkbox widget: it turns any value but "false" into True before we see it.
    widget = forms.TextInput

    def to_python(self, value: Any) -> bool:
        return validation.parse_boolean(value)


class ApiShareForm(ShareForm):
    """The API takes the birth date as ``YYYY-MM-DD`` only (the web form also takes DD/MM/YYYY)."""

    allow_reply = StrictBooleanField(required=False)

    def clean_patient_birth_date(self) -> Any:
        return validation.parse_iso_birth_date(self.cleaned_data["patient_birth_date"])


class ApiCorrectionForm(CorrectionForm):
    """A resend's corrections, the birth date as at creation (``YYYY-MM-DD`` only)."""

    def clean_patient_birth_date(self) -> Any:
        return validation.parse_iso_birth_date(self.cleaned_data["patient_birth_date"])


class _ApiShareFilterForm(ShareFilterForm):
    """The web list's search; an empty ``status`` is not "any status" here, as in the page's
    menu: the schema lists the statuses only."""

    def clean_status(self) -> str:
        value: str = self.cleaned_data.get("status") or ""
        if not value and "status" in self.data:
            # Django's "Select a valid choice.  is not one of the available choices." named
            # the empty value as nothing at all.
            choices = cast(list[tuple[str, str]], getattr(self.fields["status"], "choices", []))
            statuses = ", ".join(choice for choice, _label in choices if choice)
            raise forms.ValidationError(
                _("Give a status, one of: %(statuses)s."), code="invalid_choice", params={"statuses": statuses}
            )
        return value


class ShareCreateSerializer(serializers.Serializer[Any]):
    """The multipart request (for the schema; validation is the share form's)."""

    patient_given_name = serializers.CharField(max_length=150)
    patient_family_name = serializers.CharField(max_length=150)
    patient_birth_date = serializers.DateField(help_text="YYYY-MM-DD.")
    patient_email = serializers.EmailField(
        required=False, allow_blank=True, max_length=254, help_text="E-mail and/or mobile: at least one."
    )
    patient_mobile = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=40,
        help_text="A French mobile number (E.164 or national); the one-time code goes there by SMS.",
    )
    patient_ins = serializers.CharField(
        required=False, allow_blank=True, max_length=30, help_text="INS (NIR/NIA): 13 characters and a 2-digit key."
    )
    message = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=5000,
        help_text="Shown to the patient once identified; never in notifications.",
    )
    documents = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        help_text=(
            "One part per document (repeat the field). At least one document, or a `message`: a "
            "message alone (an answer to the patient, say) is a share too."
        ),
    )
    expires_in_days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=services.MAX_EXPIRY_DAYS,
        help_text="Default: the organisation's policy (30 days unless changed).",
    )
    allow_reply = serializers.BooleanField(required=False, default=False)
    sender = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=254,
        help_text=(
            "The address of a mailbox the caller works in (their own, or a shared mailbox of their "
            "organisation), where the patient's replies arrive; its members follow the share. "
            "Default: the caller's own mailbox."
        ),
    )
    forward_of = serializers.UUIDField(
        required=False,
        help_text=(
            "The id of a message the caller can read, whose attachments (`forward_attachments`) go to the patient "
            "without being sent again, as « Envoyer au patient » does on the message's page: the message's page "
            "then shows the share to those who hold it, so that the documents are not sent twice."
        ),
    )
    forward_attachments = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        help_text=(
            "Attachments of `forward_of` to hand to the patient (repeat the field), after the uploaded "
            "`documents`; together they keep to the share's limits."
        ),
    )


class ShareCreatedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Status.choices)
    expires_at = UTCDateTimeField()


# What GET /api/v1/shares/{id} lists in ``events`` (named in the schema by settings.py).
EVENT_TYPES = [action.removeprefix("share.") for action in services.EVENT_ACTIONS]


# The events that name the channel they went by.
_CHANNEL_EVENTS = frozenset({"notification_sent", "notification_delivered", "notification_failed", "code_sent"})


class ShareEventSerializer(serializers.Serializer[Any]):
    type = serializers.ChoiceField(choices=EVENT_TYPES)
    at = UTCDateTimeField()
    channel = serializers.ChoiceField(
        choices=Channel.choices,
        allow_null=True,
        help_text=(
            "For `notification_sent`, `notification_delivered`, `notification_failed` and `code_sent`: the "
            "channel; null otherwise. `notification_sent` means the e-mail server or the SMS provider took the "
            "message; `notification_delivered`, that the SMS provider reported it delivered to the patient's "
            "phone (when it sends delivery reports); a `notification_failed` may follow a `notification_sent` "
            "when the provider reports the SMS undelivered."
        ),
    )
    final = serializers.BooleanField(
        allow_null=True,
        help_text=(
            "For `notification_failed`: true when Pli has given up on this notification (the patient "
            "will not receive it: reach them another way, or send a new link), false when it will retry; "
            "null otherwise."
        ),
    )
    reason = serializers.ChoiceField(
        choices=notifications.FAILURE_CATEGORIES,
        allow_null=True,
        help_text=(
            "For `notification_failed`: why. `address_refused`: the patient's mail server refused the e-mail "
            "address; `number_refused`: the mobile number was refused (not a valid mobile, unreachable by SMS, "
            "or blocked by its owner); correct the contact and resend. `message_refused`: refused for good for "
            "another reason (Pli's settings); `provider_unavailable`: the provider did not answer or refused for "
            "now. Null otherwise."
        ),
    )


def event_data(event: services.ShareEvent) -> dict[str, Any]:
    channel = event.details.get("channel") if event.type in _CHANNEL_EVENTS else None
    return {
        "type": event.type,
        "at": event.at,
        "channel": channel if channel in Channel.values else None,
        "final": bool(event.details.get("final")) if event.type == "notification_failed" else None,
        "reason": event.failure,
    }


_LOCK_REASON = (
    "Why the share is locked: `birth_date` (too many wrong birth dates), `code` (too many wrong "
    "codes) or `codes_sent` (too many codes requested); null unless `status` is `locked`."
)


_SENDER = (
    "The address of the mailbox the share was sent from, where the patient's replies arrive (a shared "
    "mailbox's members all follow the share); null when there is none."
)


_CLOSED = (
    "When the conversation was closed (`POST /api/v1/shares/{id}/close`, or from the web): the patient can no "
    "longer reply. Null while it is open, and for a share that does not take replies (`allow_reply` false)."
)


class SharePatientSerializer(serializers.Serializer[Any]):
    given_name = serializers.CharField()
    family_name = serializers.CharField()
    birth_date = serializers.DateField(help_text="The birth date the patient types (YYYY-MM-DD).")
    ins = serializers.CharField(allow_null=True)
    email = serializers.CharField(allow_null=True, help_text="Where the link goes (null when none).")
    mobile = serializers.CharField(allow_null=True, help_text="E.164 (`+33612345678`); null when none.")


class ShareFileSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField()


class ShareAuthorSerializer(serializers.Serializer[Any]):
    email = serializers.CharField()
    name = serializers.CharField()


_PATIENT = (
    "The patient as the share names them, and their contacts as they are now (after any correction by `/resend`)."
)
_FILES = (
    "The documents (in order); empty once the share has ended and its documents were deleted, "
    "while `documents` keeps their number."
)
_CREATED_BY = "The practitioner who made the share (a shared mailbox's team follows the shares of its members)."
_FORWARD_OF = "The message whose attachments went with the share (`forward_of` at creation), or null."


class ShareSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Status.choices)
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField()
    allow_reply = serializers.BooleanField()
    conversation_closed_at = UTCDateTimeField(allow_null=True, help_text=_CLOSED)
    documents = serializers.IntegerField(help_text="Number of documents.")
    lock_reason = serializers.ChoiceField(choices=LockReason.choices, allow_null=True, help_text=_LOCK_REASON)
    sender = serializers.CharField(allow_null=True, help_text=_SENDER)
    patient = SharePatientSerializer(help_text=_PATIENT)
    files = ShareFileSerializer(many=True, help_text=_FILES)
    created_by = ShareAuthorSerializer(help_text=_CREATED_BY)
    forward_of = serializers.UUIDField(allow_null=True, help_text=_FORWARD_OF)
    events = ShareEventSerializer(many=True)


_READERS_ONLY = "Absent for a token without `shares:read`."


class ShareActionResultSerializer(serializers.Serializer[Any]):
    """What an action answers: the share as GET gives it, or only its `id` and `status` to a
    token without `shares:read`."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Status.choices)
    created_at = UTCDateTimeField(required=False, help_text=_READERS_ONLY)
    expires_at = UTCDateTimeField(required=False, help_text=_READERS_ONLY)
    allow_reply = serializers.BooleanField(required=False, help_text=_READERS_ONLY)
    conversation_closed_at = UTCDateTimeField(allow_null=True, required=False, help_text=f"{_CLOSED} {_READERS_ONLY}")
    documents = serializers.IntegerField(required=False, help_text=f"Number of documents. {_READERS_ONLY}")
    lock_reason = serializers.ChoiceField(
        choices=LockReason.choices, allow_null=True, required=False, help_text=f"{_LOCK_REASON} {_READERS_ONLY}"
    )
    sender = serializers.CharField(allow_null=True, required=False, help_text=f"{_SENDER} {_READERS_ONLY}")
    patient = SharePatientSerializer(required=False, help_text=f"{_PATIENT} {_READERS_ONLY}")
    files = ShareFileSerializer(many=True, required=False, help_text=f"{_FILES} {_READERS_ONLY}")
    created_by = ShareAuthorSerializer(required=False, help_text=f"{_CREATED_BY} {_READERS_ONLY}")
    forward_of = serializers.UUIDField(allow_null=True, required=False, help_text=f"{_FORWARD_OF} {_READERS_ONLY}")
    events = ShareEventSerializer(many=True, required=False, help_text=_READERS_ONLY)


class ShareSummarySerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Status.choices)
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField()
    sender = serializers.CharField(
        allow_null=True, help_text="The address of the mailbox the share was sent from (null when none)."
    )


MAX_LIST = 200


class _InstantField(serializers.DateTimeField):
    """A time the database can hold once in UTC: without an offset, a time is taken in the
    server's zone, which near year 1 puts it before year 1 in UTC (an OverflowError, a 500)."""

    def enforce_timezone(self, value: datetime.datetime) -> datetime.datetime:
        try:
            instant: datetime.datetime = super().enforce_timezone(value)
            instant.astimezone(datetime.UTC)
        except OverflowError:
            self.fail("overflow")
        return instant


class ShareListQuerySerializer(serializers.Serializer[Any]):
    created_before = _InstantField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIST)


def _user(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - IsAuthenticated ran first
    return user


def _share(request: Request, share_id: uuid.UUID) -> PatientShare:
    share = services.shares_for(_user(request)).filter(pk=share_id).first()
    if share is None:
        raise NotFound(_("Not found."))
    return share


def share_data(share: PatientShare) -> dict[str, Any]:
    current = share.effective_status(timezone.now())
    return {
        "id": share.pk,
        "status": current,
        "created_at": share.created_at,
        "expires_at": share.expires_at,
        "allow_reply": share.allow_reply,
        "conversation_closed_at": share.closed_at,
        "documents": share.document_count,
        "lock_reason": (share.lock_reason or None) if current == Status.LOCKED else None,
        "sender": share.reply_mailbox.address if share.reply_mailbox is not None else None,
        "patient": {
            "given_name": share.patient_given_name,
            "family_name": share.patient_family_name,
            "birth_date": share.patient_birth_date,
            "ins": share.patient_ins or None,
            "email": share.patient_email or None,
            "mobile": share.patient_mobile or None,
        },
        "files": [
            {"id": d.pk, "name": d.name, "content_type": d.content_type, "size": d.size} for d in share.documents.all()
        ],
        "created_by": {"email": share.created_by.email, "name": share.created_by.display_name},
        "forward_of": share.source_message_id,
        "events": [event_data(e) for e in services.events(share)],
    }


# The query parameters of GET /api/v1/shares.
LISTING_PARAMETERS = ("q", "status", "sender", "created_before", "limit")


class SharesView(StrictView):
    query_parameters = {"GET": LISTING_PARAMETERS}
    permission_classes = [IsAuthenticated, HasScope]
    required_scopes: Any = {"GET": [SHARES_READ], "POST": [SHARES_WRITE]}
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="shares_list",
        summary="Your patient shares, most recent first (at most `limit`, 200 by default)",
        description=(
            'When more shares may follow, the answer has a `Link` header with `rel="next"`: the same '
            "query with `created_before` set to the last share's `created_at`."
        ),
        parameters=[
            OpenApiParameter(
                "q",
                str,
                description="The patient: names (whole, or their first three letters or more) or INS; every word "
                "must match. Accents and case are ignored.",
            ),
            OpenApiParameter("status", str, enum=list(Status.values), description="The status, as `status` reads."),
            OpenApiParameter(
                "sender",
                str,
                description="Only the shares sent from this mailbox (an address of a mailbox you work in, as "
                "`GET /api/v1/mailboxes` lists them).",
            ),
            OpenApiParameter(
                "created_before",
                OpenApiTypes.DATETIME,
                description="Only shares created before this instant (ISO 8601; without an offset, Paris time).",
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": MAX_LIST},
                description=f"1 to {MAX_LIST} (default {MAX_LIST}).",
            ),
            OpenApiParameter(
                "Link",
                str,
                location=OpenApiParameter.HEADER,
                response=[200],
                description='`<URL>; rel="next"`: the next page, when more shares may follow.',
            ),
        ],
        responses=ShareSummarySerializer(many=True),
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        user = _user(request)
        query = request.query_params
        refuse_repeated(query, LISTING_PARAMETERS)
        # A plain dict, not the QueryDict: DRF would take an empty value as an absent one.
        found = _share_page(request, user, {name: query[name] for name in LISTING_PARAMETERS if name in query})
        if isinstance(found, Response):
            return found
        data, next_before = found
        response = Response(ShareSummarySerializer(data, many=True).data)
        if next_before is not None:
            following = request.query_params.copy()
            following["created_before"] = next_before
            response["Link"] = f'<{request.build_absolute_uri(f"{request.path}?{following.urlencode()}")}>; rel="next"'
        return response

    @extend_schema(
        operation_id="shares_create",
        summary="Send documents to a patient by secure link (multipart; documents are encrypted as they arrive)",
        request={"multipart/form-data": ShareCreateSerializer},
        responses={
            201: ShareCreatedSerializer,
            413: OpenApiResponse(description="Documents too large; `documents` named."),
            **IDEMPOTENCY_RESPONSES,
        },
        parameters=[IDEMPOTENCY_KEY],
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        user = _user(request)
        return idempotency.guarded(
            request._request, user, idempotency.SHARES, lambda held: self._create(request, user, held)
        )

    def _create(self, request: Request, user: User, held: idempotency.Claim | None) -> Response:
        rules = document_rules()
        with UploadBatch(rules.store) as batch:
            # Before anything reads the body: files must never reach Django's default
            # handlers, which would write plaintext temporary files.
            install(request._request, batch, rules)
            try:
                # Django's parsing (with pli.sharing.uploads' checks), for the media types
                # DRF's parsers of this view take: JSON is refused, not read as no fields.
                if self.get_content_negotiator().select_parser(request, self.get_parsers()) is None:
                    raise unsupported_upload(request.content_type)
                data, files = request._request.POST, request._request.FILES
                refuse_unknown(data, SHARE_FIELDS, files.keys())
            except UploadRejected as exc:
                return Response(field_error_body(exc.field, exc.message), status=exc.status)
            except (RequestDataTooBig, TooManyFieldsSent, MultiPartParserError, SuspiciousOperation):
                return Response({"detail": _("The form could not be read; please send it again.")}, status=400)
            replayed, on_created = idempotency.before_creating(
                request, held, data, files, partial(_replay, request, user)
            )
            if replayed is not None:
                # The first request's share answered again; this one's documents are
                # discarded with the batch, as those of any request that saves nothing.
                return replayed
            form = ApiShareForm(data)
            documents = pending_files(files, DOCUMENTS_FIELD)
            errors: dict[str, Any] = {}
            if not form.is_valid():
                errors.update(form_error_body(form.errors))
            if "sender" not in form.errors and (error := sender_error(user, form)):
                errors["sender"] = [error]
            source, forwarded = _forwarded(request, user, data, errors)
            if any(value != "" for value in data.getlist(DOCUMENTS_FIELD)):
                # A document sent as a text part (its content base64-encoded, say) is not a
                # file: the patient would otherwise get the share without it, or the client
                # be told that it sent no document at all.
                errors[DOCUMENTS_FIELD] = [
                    _("Documents must be sent as files (multipart/form-data parts with a file name).")
                ]
            elif (
                not documents
                and not forwarded
                and not str(data.get("message", "")).strip()
                # A wrong forward_of: its attachments were the documents; that is the error.
                and not errors.keys() & {FORWARD_OF, FORWARD_ATTACHMENTS}
            ):
                errors[DOCUMENTS_FIELD] = [NO_DOCUMENT_NOR_MESSAGE]
            if not errors and (over := mailbox.over_limits(documents, forwarded)):
                errors[FORWARD_ATTACHMENTS] = [over]
            if not errors and (other := mailbox.other_patient(forwarded, form.cleaned_data.get("patient_ins") or "")):
                errors["patient_ins"] = [other]
            if errors:
                return Response(errors, status=status.HTTP_400_BAD_REQUEST)
            try:
                copies = mailbox.copy_attachments(forwarded)
                batch.pending.extend(copies)
                share = services.create_share(
                    user,
                    form.share_input(),
                    [*documents, *copies],
                    request=request._request,
                    source_message_id=source,
                    on_created=on_created,
                )
            except idempotency.Conflict:
                return idempotency.in_flight().response()
            except BlobNotFound:
                # Only a deletion for good removes a stored attachment: the message went from
                # the trash while this request ran.
                return Response({FORWARD_OF: [_("Unknown message.")]}, status=status.HTTP_400_BAD_REQUEST)
            except messaging.ContentUnavailable:
                raise APIException(content_unavailable_message()) from None
            except services.ShareError as exc:
                if exc.code == "sender":  # taken out of the mailbox since the check above
                    return Response({"sender": [str(NOT_YOUR_MAILBOX)]}, status=status.HTTP_400_BAD_REQUEST)
                if exc.code != "upload_expired":
                    raise
                return Response(
                    {DOCUMENTS_FIELD: [_("Sending the files took too long; please send them again.")]},
                    status=status.HTTP_400_BAD_REQUEST,
                )
            batch.keep()
        return Response(_created_body(share), status=status.HTTP_201_CREATED)


FORWARD_OF = "forward_of"
FORWARD_ATTACHMENTS = "forward_attachments"


def _forwarded(
    request: Request, user: User, data: Any, errors: dict[str, Any]
) -> tuple[uuid.UUID | None, list[Attachment]]:
    """The message the share is made from (``forward_of``) and those of its attachments
    that go to the patient (``forward_attachments``), as the share page's « Envoyer au
    patient » does; what is wrong is added to ``errors``. A message the caller cannot read
    is unknown, whether it exists or not (the refusal is audited when it does)."""
    if len(data.getlist(FORWARD_OF)) > 1:
        errors[FORWARD_OF] = [_("This field is given more than once: send it once.")]
        return None, []
    raw = str(data.get(FORWARD_OF, "")).strip()
    chosen = [value.strip() for value in data.getlist(FORWARD_ATTACHMENTS) if value.strip()]
    if not raw:
        if chosen:
            errors[FORWARD_ATTACHMENTS] = [_("Give forward_of, the message these attachments belong to.")]
        return None, []
    try:
        message_id = uuid.UUID(raw)
        attachments = mailbox.received_attachments(user, message_id)
    except ValueError:
        errors[FORWARD_OF] = [_("Unknown message.")]
        return None, []
    except messaging.NotVisible:
        if Message.objects.filter(pk=message_id).exists():
            messaging.record_denied(user, request._request, ("messaging.message", message_id), "share")
        errors[FORWARD_OF] = [_("Unknown message.")]
        return None, []
    wanted: set[uuid.UUID] = set()
    for value in chosen:
        try:
            wanted.add(uuid.UUID(value))
        except ValueError:
            errors[FORWARD_ATTACHMENTS] = [_("Not an attachment of this message.")]
            return None, []
    forwarded = [a for a in attachments if a.pk in wanted]
    if len(forwarded) != len(wanted):
        errors[FORWARD_ATTACHMENTS] = [_("Not an attachment of this message.")]
        return None, []
    return message_id, forwarded


def _created_body(share: PatientShare) -> Any:
    return ShareCreatedSerializer({"id": share.pk, "status": share.status, "expires_at": share.expires_at}).data


def _replayed(
    request: Request, user: User, held: idempotency.Claim, request_fingerprint: str, endpoint: str
) -> PatientShare | Response:
    """The share the first request with this Idempotency-Key made or acted on (the retry
    recorded), or the answer refusing the retry."""
    try:
        idempotency.check_same_request(held, request_fingerprint)
        share = services.shares_for(user).filter(pk=held.row.object_id or "").first()
        if share is None:
            raise idempotency.gone()
    except idempotency.Refused as exc:
        return exc.response()
    idempotency.record_replay(user, endpoint, share, request._request)
    return share


def _replay(request: Request, user: User, held: idempotency.Claim, request_fingerprint: str) -> Response:
    """The answer of the first request with this Idempotency-Key, rebuilt from its share."""
    share = _replayed(request, user, held, request_fingerprint, idempotency.SHARES)
    if isinstance(share, Response):
        return share
    return Response(_created_body(share), status=status.HTTP_201_CREATED)


def _share_page(
    request: Request, user: User, given: dict[str, Any]
) -> tuple[list[dict[str, Any]], str | None] | Response:
    """The caller's shares the criteria ``given`` select (the listing's query, or a search's
    body), and the ``created_before`` of the next page when more may follow; the answer
    naming each refused criterion instead."""
    params = ShareListQuerySerializer(data={name: given[name] for name in ("created_before", "limit") if name in given})
    # The web list's own form: both refuse the same searches.
    criteria = _ApiShareFilterForm(
        {name: given[name] for name in ("q", "status", "sender") if name in given},
        mailboxes=accounts.mailbox_list(user) if given.get("sender") else (),
    )
    # Checked together, so that one answer names every refused parameter.
    if not all([params.is_valid(), criteria.is_valid()]):
        body = {**form_error_body(criteria.errors), **params.errors}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    now = timezone.now()
    text, wanted = criteria.cleaned_data["q"], criteria.cleaned_data["status"]
    shares = services.filter_shares(services.shares_for(user), text, wanted, now, criteria.sender_mailbox)
    shares = shares.select_related("reply_mailbox").order_by("-created_at")
    before = params.validated_data.get("created_before")
    if before is not None:
        shares = shares.filter(created_at__lt=before)
    limit = params.validated_data.get("limit") or MAX_LIST
    found = list(shares[:limit])
    if text:
        # Which patient was looked for is not kept; that someone looked, and found how
        # many, is (as for the web list).
        audit.record(
            "share.list",
            actor=user,
            target=user,
            request=request._request,
            details={"count": len(found), "search": True},
        )
    data = [
        {
            "id": s.pk,
            "status": s.effective_status(now),
            "created_at": s.created_at,
            "expires_at": s.expires_at,
            "sender": s.reply_mailbox.address if s.reply_mailbox is not None else None,
        }
        for s in found
    ]
    next_before = None
    if len(found) == limit:
        next_before = found[-1].created_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    return data, next_before


class ShareSearchSerializer(serializers.Serializer[Any]):
    """POST /api/v1/shares/search: the listing's criteria in the body, kept out of the URL."""

    q = serializers.CharField(
        required=False,
        help_text="The patient: names (whole, or their first three letters or more) or INS; every word must match.",
    )
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    sender = serializers.CharField(required=False, help_text="The address of a mailbox you work in.")
    created_before = serializers.DateTimeField(
        required=False, help_text="`next_created_before` of the previous answer, or an instant (ISO 8601)."
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIST, help_text=f"Default {MAX_LIST}.")


class ShareSearchPageSerializer(serializers.Serializer[Any]):
    next_created_before = serializers.CharField(
        allow_null=True,
        help_text="Send it as `created_before`, with the same criteria, for the next page; null on the last.",
    )
    results = ShareSummarySerializer(many=True)


class ShareSearchView(StrictView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scopes: Any = [SHARES_READ]
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        operation_id="shares_search",
        summary="Search your shares, the criteria in the body (kept out of URLs and the logs of proxies)",
        description="The listing's search (`GET /api/v1/shares` with `q`, `status`, `sender`, `created_before`, "
        "`limit`), sent as a JSON object or a form: a patient's name or INS in a URL ends up in the logs of every "
        "proxy on the way. Most recent first; for the next page, send the same criteria with `created_before` set "
        "to `next_created_before`.",
        request={
            "application/json": ShareSearchSerializer,
            "application/x-www-form-urlencoded": ShareSearchSerializer,
        },
        responses=ShareSearchPageSerializer,
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        given = search_criteria(request.data, LISTING_PARAMETERS)
        found = _share_page(request, _user(request), given)
        if isinstance(found, Response):
            return found
        data, next_before = found
        return Response({"next_created_before": next_before, "results": ShareSummarySerializer(data, many=True).data})


class ShareDetailView(StrictView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scopes: Any = [SHARES_READ]

    @extend_schema(
        operation_id="shares_retrieve",
        summary="A share's status and what happened to it",
        responses=ShareSerializer,
        tags=TAGS,
    )
    def get(self, request: Request, share_id: uuid.UUID) -> Response:
        share = _share(request, share_id)
        # It names the patient: a read of the share, recorded as the web page's is.
        audit.record("share.read", actor=_user(request), target=share, request=request._request)
        return Response(ShareSerializer(share_data(share)).data)


CONFLICTS = {
    "revoked": gettext_lazy("This share has been revoked."),
    "expired": gettext_lazy("This share has expired."),
    "not_locked": gettext_lazy("This share is not locked."),
    "locked": gettext_lazy("This share is locked: unlock it first."),
    "no_replies": gettext_lazy("This share does not take replies from the patient."),
}


class _ShareActionView(StrictView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scopes: Any = [SHARES_WRITE]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    action = ""

    def post(self, request: Request, share_id: uuid.UUID) -> Response:
        user = _user(request)
        if self.action == "resend":
            # A resend retried after a dropped connection must not send the patient a second
            # link (and end the first): under an Idempotency-Key it is done once.
            return idempotency.guarded(
                request._request, user, idempotency.RESENDS, lambda held: self._act(request, user, share_id, held)
            )
        return self._act(request, user, share_id, None)

    def _act(self, request: Request, user: User, share_id: uuid.UUID, held: idempotency.Claim | None) -> Response:
        functions: dict[str, Callable[..., PatientShare]] = {
            "revoke": services.revoke,
            "unlock": services.unlock,
            "resend": services.resend,
            "close": services.close_conversation,
        }
        options: dict[str, Any] = {}
        # Only a resend takes a body; a revocation with a « reason », say, would lose it.
        refuse_unknown(request.data, RESEND_FIELDS if self.action == "resend" else (), dropped_files(request._request))
        if self.action == "resend":
            # An object, or nothing: a list or a text (the contacts wrapped in a list, say)
            # was ignored, and the new link went to the contacts meant to be corrected.
            serializers.Serializer(data=request.data).is_valid(raise_exception=True)
            nulls = _null_corrections(request.data)
            if nulls:
                return Response(nulls, status=status.HTTP_400_BAD_REQUEST)
            form = _correction_form(request.data)
            if form is not None:
                if not form.is_valid():
                    return Response(form_error_body(form.errors), status=status.HTTP_400_BAD_REQUEST)
                options["corrections"] = form.corrections()
        request_fingerprint = ""
        if held is not None:
            request_fingerprint = _resend_fingerprint(held, share_id, request.data)
            if held.used:
                return _replay_resend(request, user, held, request_fingerprint)
        try:
            with transaction.atomic():
                share = functions[self.action](user, share_id, request=request._request, **options)
                if held is not None:
                    idempotency.complete(held, share.pk, request_fingerprint=request_fingerprint)
        except idempotency.Conflict:
            return idempotency.in_flight().response()
        except services.ShareError as exc:
            if exc.code == "not_found":
                raise NotFound(_("Not found.")) from None
            if exc.code == "no_contact":
                # The correction would leave the patient with no contact at all.
                message = _("Give the patient's mobile number or e-mail address (or both).")
                body = {name: [message] for name in CONTACT_FIELDS if name in request.data}
                return Response(body, status=status.HTTP_400_BAD_REQUEST)
            if exc.code == "birth_date_mismatch":
                # The corrected birth date contradicts the INS given at creation.
                body = field_error_body("patient_birth_date", birth_date_mismatch().messages[0])
                return Response(body, status=status.HTTP_400_BAD_REQUEST)
            detail = CONFLICTS.get(exc.code) or _("This action is not possible.")
            return Response({"detail": str(detail)}, status=status.HTTP_409_CONFLICT)
        return _action_answer(request, share)


def _action_answer(request: Request, share: PatientShare) -> Response:
    token = request.auth
    if isinstance(token, ApiToken) and not token.has_scopes([SHARES_READ]):
        # A write-only token acts; what happened to the share (the patient's steps, their
        # times) is for tokens that may read it.
        return Response({"id": str(share.pk), "status": share.effective_status(timezone.now())})
    return Response(ShareSerializer(share_data(share)).data)


def _resend_fingerprint(held: idempotency.Claim, share_id: uuid.UUID, data: Any) -> str:
    """The resend's fingerprint: which share, and what it corrects (JSON or form)."""
    fields = QueryDict(mutable=True)
    fields.setlist("share", [str(share_id)])
    if isinstance(data, Mapping):
        for name in CORRECTION_FIELDS:
            if name in data:
                values = data.getlist(name) if isinstance(data, QueryDict) else [data[name]]
                fields.setlist(name, [str(value) for value in values])
    return idempotency.fingerprint(held, fields, MultiValueDict())


def _replay_resend(request: Request, user: User, held: idempotency.Claim, request_fingerprint: str) -> Response:
    """The same resend sent again: the share as it is now, and no second link."""
    share = _replayed(request, user, held, request_fingerprint, idempotency.RESENDS)
    return share if isinstance(share, Response) else _action_answer(request, share)


CONTACT_FIELDS = ("patient_email", "patient_mobile")
CORRECTION_FIELDS = ("patient_birth_date", *CONTACT_FIELDS)


def _null_corrections(data: Any) -> dict[str, list[str]]:
    """The corrections a JSON body gives as null (or another value that is not text),
    refused: much software writes a field it has no value for as null, which the form would
    take as empty (as it takes ``[]`` and ``{}``), removing the contact."""
    if not isinstance(data, Mapping):
        return {}
    message = _("Give the contact as text: empty to remove it, or leave the field out to keep it.")
    refused = {
        name: [message]
        for name in CONTACT_FIELDS
        if name in data and (not isinstance(data[name], str | int) or isinstance(data[name], bool))
    }
    if "patient_birth_date" in data and not isinstance(data["patient_birth_date"], str):
        refused["patient_birth_date"] = [str(_("Give the birth date as YYYY-MM-DD."))]
    return refused


def _correction_form(data: Any) -> CorrectionForm | None:
    """What a resend corrects, if the request gives anything (only the fields given change)."""
    if not isinstance(data, Mapping) or not any(name in data for name in CORRECTION_FIELDS):
        return None
    return ApiCorrectionForm(data, only_given=True)  # the request's own data: a field given twice is refused


class ShareResendSerializer(serializers.Serializer[Any]):
    """Corrections (for the schema; validation is the share form's)."""

    patient_birth_date = serializers.DateField(
        required=False,
        help_text="The patient's corrected birth date (YYYY-MM-DD), when the one given at creation was wrong: "
        "wrong birth dates typed so far stop counting. Absent: unchanged.",
    )

    patient_email = serializers.EmailField(
        required=False,
        allow_blank=True,
        max_length=254,
        help_text="The patient's corrected e-mail address; empty to remove it (null is refused). Absent: unchanged.",
    )
    patient_mobile = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=40,
        help_text=(
            "The patient's corrected mobile number, as at creation; empty to remove it (null is refused). "
            "Absent: unchanged."
        ),
    )


# What POST /api/v1/shares and /resend take (their schemas' fields); any other field is refused.
SHARE_FIELDS = frozenset(ShareCreateSerializer().fields)
RESEND_FIELDS = frozenset(ShareResendSerializer().fields)

_ACTION_SCHEMA: dict[str, Any] = {
    "request": None,
    "description": "Answers the share as GET does; with a token without `shares:read`, only its `id` and `status`.",
    "responses": {
        200: ShareActionResultSerializer,
        409: OpenApiResponse(description="Not possible in the share's state."),
    },
    "tags": TAGS,
}


class ShareRevokeView(_ShareActionView):
    action = "revoke"

    @extend_schema(
        operation_id="shares_revoke", summary="Revoke the link: the patient can no longer open it", **_ACTION_SCHEMA
    )
    def post(self, request: Request, share_id: uuid.UUID) -> Response:
        return super().post(request, share_id)


class ShareUnlockView(_ShareActionView):
    action = "unlock"

    @extend_schema(
        operation_id="shares_unlock", summary="Unlock a share locked after too many failed attempts", **_ACTION_SCHEMA
    )
    def post(self, request: Request, share_id: uuid.UUID) -> Response:
        return super().post(request, share_id)


class ShareCloseView(_ShareActionView):
    action = "close"

    @extend_schema(
        operation_id="shares_close",
        summary="Close the conversation: the patient can no longer reply",
        **{
            **_ACTION_SCHEMA,
            "description": (
                "For a share created with `allow_reply`: the patient's replies so far stay in the mailbox; the link "
                "still opens the documents. Closing a closed conversation changes nothing; a share that does not "
                "take replies answers 409. " + _ACTION_SCHEMA["description"]
            ),
        },
    )
    def post(self, request: Request, share_id: uuid.UUID) -> Response:
        return super().post(request, share_id)


RESEND_IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_KEY.name,
    IDEMPOTENCY_KEY.type,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Optional, as on `POST /api/v1/shares`: sent again with exactly the same request (same share, "
    "same contacts) after a dropped connection, it answers the share again without sending the patient a "
    "second link. Kept 24 hours.",
)


class ShareResendView(_ShareActionView):
    action = "resend"

    @extend_schema(
        operation_id="shares_resend",
        summary="Send the patient a new link (the previous one stops working)",
        **{
            **_ACTION_SCHEMA,
            "description": (
                "With `patient_email` and/or `patient_mobile`, corrects the patient's contacts first (checked as "
                "at creation; at least one must remain), e.g. after a `notification_failed` event with `reason` "
                "`address_refused` or `number_refused`; with `patient_birth_date`, the birth date the patient must "
                "type (a share locked by wrong birth dates is unlocked first, with `/unlock`). "
                + _ACTION_SCHEMA["description"]
            ),
            "request": ShareResendSerializer,
            "parameters": [RESEND_IDEMPOTENCY_KEY],
            "responses": {
                **_ACTION_SCHEMA["responses"],
                400: OpenApiResponse(description="A correction refused; the field named."),
                409: OpenApiResponse(
                    description="Not possible in the share's state; or a request with this `Idempotency-Key` is "
                    "still being processed (retry later), or its share no longer exists. `detail` says which."
                ),
                422: IDEMPOTENCY_RESPONSES[422],
            },
        },
    )
    def post(self, request: Request, share_id: uuid.UUID) -> Response:
        return super().post(request, share_id)
