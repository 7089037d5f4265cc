"""Shapes of the messaging API: requests (for the schema; validation is the compose form's)
and responses."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from pli.accounts.models import Mailbox
from pli.messaging.forms import BODY_MAX, GIVEN_NAMES_MAX, NAME_MAX, SUBJECT_MAX
from pli.messaging.models import ExternalSender, Folder, Role

# A copy's number is a 64-bit integer (BigIntegerField): the schema says so, for generated
# clients to use a 64-bit type.
UID_MAX = 2**63 - 1


class MailboxSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    address = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Mailbox.Kind.choices)
    unread = serializers.IntegerField(help_text="Unread messages in the inbox.")
    last_uid = serializers.IntegerField(
        min_value=0,
        max_value=UID_MAX,
        help_text="The `uid` of the last message filed in this mailbox so far (0 if none): software that starts "
        "now fetches what arrives next with `after_uid` set to it.",
    )


SENDER_HELP = (
    "Address of the sending mailbox; null for a message from outside Pli's mailboxes (see `sender_kind`) "
    "or from a deleted mailbox."
)
SENDER_NAME_HELP = (
    "Name of the sending mailbox or, for a message from outside Pli's mailboxes, who sent it (a patient "
    "replying through a secure link), in the language of the request."
)


def share_id_field() -> serializers.UUIDField:
    return serializers.UUIDField(
        allow_null=True,
        help_text="For a patient's answer (`sender_kind` patient_link): the patient share it answers "
        "(`/api/v1/shares/{id}`, e.g. to close the conversation; 404 once the share is deleted or when it is "
        "not yours to follow). Null otherwise.",
    )


def sender_kind_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=["mailbox", *ExternalSender.values],
        help_text="mailbox: sent from a Pli mailbox; patient_link: a patient's reply through a secure link.",
    )


class MessageSummarySerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    thread_id = serializers.UUIDField()
    subject = serializers.CharField(allow_blank=True)
    sender = serializers.CharField(allow_null=True, help_text=SENDER_HELP)
    sender_name = serializers.CharField(allow_null=True, help_text=SENDER_NAME_HELP)
    sender_kind = sender_kind_field()
    share_id = share_id_field()
    sent_at = serializers.DateTimeField()
    unread = serializers.BooleanField()
    folder = serializers.ChoiceField(choices=Folder.choices)
    attachments = serializers.IntegerField(help_text="Number of attachments.")
    uid = serializers.IntegerField(
        min_value=1,
        max_value=UID_MAX,
        help_text="This copy's number in the mailbox: 1, 2, 3... in the order messages arrived, never reused and "
        "unchanged by a move. See the `after_uid` parameter.",
    )


class MessagePageSerializer(serializers.Serializer[Any]):
    next = serializers.URLField(
        allow_null=True,
        help_text="The next page (older messages; with `after_uid`, those that arrived next), or null on the last one.",
    )
    results = MessageSummarySerializer(many=True)


class MessageSearchSerializer(serializers.Serializer[Any]):
    """POST …/messages/search: the listing's criteria in the body, kept out of the URL."""

    folder = serializers.ChoiceField(choices=Folder.choices, default=Folder.INBOX)
    q = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Search words: subject words (whole), patient names (whole, or their first three letters or "
        "more) or INS.",
    )
    sender = serializers.CharField(required=False, help_text="Words of the sender's name or address.")
    date_from = serializers.DateField(required=False, help_text="Sent on or after this day (YYYY-MM-DD, Paris time).")
    date_to = serializers.DateField(required=False, help_text="Sent on or before this day (YYYY-MM-DD).")
    unread = serializers.ChoiceField(
        choices=["true", "false"],
        required=False,
        help_text="`true` (or JSON true): only the unread; `false`: the others.",
    )
    limit = serializers.IntegerField(required=False, min_value=1, help_text="Messages per page (default 50).")
    cursor = serializers.CharField(required=False, help_text="`next_cursor` of the previous answer.")


class MessageSearchPageSerializer(serializers.Serializer[Any]):
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Send it as `cursor`, with the same criteria, for the next page; null on the last."
    )
    results = MessageSummarySerializer(many=True)


class AttachmentSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes.")
    sha256 = serializers.CharField(help_text="Hex SHA-256 of the content.")
    format = serializers.ChoiceField(
        choices=["cda", "hprim", "hprim_net", "hl7v2", "xdm"],
        allow_null=True,
        help_text="A structured health format recognised in the content, for software to import it: `cda` "
        "(HL7 CDA R2), `hprim` (HPRIM Santé), `hprim_net` (HPRIM Net / HPRIM Médecin), `hl7v2` (HL7 v2), `xdm` "
        "(IHE XDM package); null otherwise.",
    )


class PatientSerializer(serializers.Serializer[Any]):
    ins = serializers.CharField(allow_blank=True)
    family_name = serializers.CharField()
    given_names = serializers.CharField()
    birth_date = serializers.DateField()
    sex = serializers.CharField(
        allow_blank=True, help_text="F, M or I (the INS traits' sex); empty when not known (a patient's reply)."
    )
    birthplace_code = serializers.CharField(
        allow_blank=True, help_text="INSEE code (COG) of the birthplace, or empty when not given."
    )


class ReceiptSerializer(serializers.Serializer[Any]):
    address = serializers.CharField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=[(Role.TO, "to"), (Role.CC, "cc")])
    delivered_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
    answered_at = serializers.DateTimeField(allow_null=True)


class CopySerializer(serializers.Serializer[Any]):
    mailbox = serializers.UUIDField()
    folder = serializers.ChoiceField(choices=Folder.choices)
    unread = serializers.BooleanField()
    uid = serializers.IntegerField(
        min_value=1, max_value=UID_MAX, help_text="The copy's number in its mailbox (see `after_uid`)."
    )


class MemberAtSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    at = serializers.DateTimeField()


class HeldCopySerializer(CopySerializer):
    read_by = MemberAtSerializer(
        many=True, help_text="A shared mailbox's copy: each member who opened it, first first (empty otherwise)."
    )
    answered_by = MemberAtSerializer(
        many=True, help_text="A shared mailbox's copy: each member who answered it, first first (empty otherwise)."
    )


class MessageSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    thread_id = serializers.UUIDField()
    in_reply_to = serializers.UUIDField(
        allow_null=True, help_text="The message this one answers; null for a new message or a forward."
    )
    subject = serializers.CharField(allow_blank=True)
    body = serializers.CharField(allow_blank=True)
    sender = serializers.CharField(allow_null=True, help_text=SENDER_HELP)
    sender_name = serializers.CharField(allow_null=True, help_text=SENDER_NAME_HELP)
    sender_kind = sender_kind_field()
    share_id = share_id_field()
    to = serializers.ListField(child=serializers.CharField())
    cc = serializers.ListField(child=serializers.CharField())
    sent_at = serializers.DateTimeField()
    patient = PatientSerializer(allow_null=True)
    attachments = AttachmentSerializer(many=True)
    copies = HeldCopySerializer(
        many=True,
        help_text="Where the message is filed in each of your mailboxes, and for a shared one who read and "
        "who answered it.",
    )
    receipts = ReceiptSerializer(
        many=True,
        help_text='Delivery and reading per recipient, "to" first; only for messages sent from your mailboxes. '
        "A recipient who deleted the message keeps the receipt it had.",
    )


class MessageCreatedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    thread_id = serializers.UUIDField()
    sent_at = serializers.DateTimeField()
    attachments = AttachmentSerializer(many=True)


class MessageCreateSerializer(serializers.Serializer[Any]):
    """The multipart form of ``POST /api/v1/messages`` (documented; the compose form validates)."""

    sender = serializers.CharField(max_length=254, help_text="Address of one of your mailboxes.")
    to = serializers.ListField(
        child=serializers.CharField(max_length=254), required=False, help_text="Recipient address (repeatable)."
    )
    cc = serializers.ListField(
        child=serializers.CharField(max_length=254), required=False, help_text="Copy address (repeatable)."
    )
    subject = serializers.CharField(max_length=SUBJECT_MAX, required=False, allow_blank=True)
    body = serializers.CharField(max_length=BODY_MAX, required=False, allow_blank=True, help_text="Plain text.")
    attachments = serializers.ListField(
        child=serializers.FileField(), required=False, help_text="A file (repeatable; any type)."
    )
    patient_ins = serializers.CharField(
        max_length=21, required=False, allow_blank=True, help_text="INS: NIR or NIA, 13 characters and a 2-digit key."
    )
    patient_family_name = serializers.CharField(max_length=NAME_MAX, required=False, allow_blank=True)
    patient_given_names = serializers.CharField(max_length=GIVEN_NAMES_MAX, required=False, allow_blank=True)
    patient_birth_date = serializers.DateField(required=False, help_text="YYYY-MM-DD.")
    patient_sex = serializers.ChoiceField(choices=["F", "M", "I"], required=False)
    patient_birthplace_code = serializers.CharField(
        max_length=5,
        required=False,
        allow_blank=True,
        help_text="Optional INS trait: the INSEE code (COG) of the birthplace, 5 characters such as 75056 or "
        "2A004; 99 and the country's code for a birth abroad (99134 Spain).",
    )
    in_reply_to = serializers.UUIDField(required=False, help_text="Id of the message answered.")
    forward_of = serializers.UUIDField(required=False, help_text="Id of a message forwarded.")
    forward_attachments = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        help_text="Attachment of `forward_of` to forward (repeatable).",
    )


class MessageCreateFormSerializer(MessageCreateSerializer):
    """The same send as an ``application/x-www-form-urlencoded`` form (UTF-8): no files."""

    attachments = None  # type: ignore[assignment]  # DRF: None removes the inherited field


# The move's and the listing's answer to a folder that is none of the four.
UNKNOWN_FOLDER = _("Unknown folder “{input}”: choose inbox, sent, archive or trash.")


class TextUUIDField(serializers.UUIDField):
    """A UUID given as text, as the schema says: DRF's field also takes a number, so that JSON
    ``"mailbox": 123`` named the UUID numbered 123 and was answered 404, not 400."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class FolderField(serializers.ChoiceField):
    """A folder's name, as text: a JSON list, object or boolean was refused quoting Python's
    spelling of it (« Dossier « ['archive'] » inconnu », « True »)."""

    default_error_messages = {"not_text": _("Give the folder's name as text: inbox, sent, archive or trash.")}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("not_text")
        return super().to_internal_value(data)


class MoveSerializer(serializers.Serializer[Any]):
    folder = FolderField(
        choices=Folder.choices,
        help_text="inbox or sent: back where the copy belongs; archive; trash.",
        error_messages={"invalid_choice": UNKNOWN_FOLDER},
    )
    mailbox = TextUUIDField(required=False, help_text="Only the copy in this mailbox (default: all yours).")


class MarkUnreadSerializer(serializers.Serializer[Any]):
    mailbox = TextUUIDField(
        required=False, help_text="Only the copy in this mailbox (default: all the copies you received)."
    )


class MovedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    copies = CopySerializer(many=True)
