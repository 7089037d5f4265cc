"""The compose form: one set of rules for the web page and the REST API.

Field names are the API's contract (``sender``, ``to``, ``cc``, ``subject``, ``body``,
``attachments``, ``patient_*``, ``in_reply_to``); the web page posts the same names.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from pli.accounts.models import User
from pli.core.forms import (
    SubmissionField,
    contains_invisible_controls,
    new_submission,
    refuse_invisible_controls,
    refuse_repeated_fields,
)
from pli.core.ins import birth_date_mismatch, contradicts_birth_date, normalise_ins
from pli.core.sizes import limit_size
from pli.messaging import services
from pli.messaging.models import Attachment, Message
from pli.messaging.uploads import (
    PendingAttachment,
    max_attachments,
    max_message_bytes,
    too_large_message,
    too_many_message,
)

SUBJECT_MAX = 300
BODY_MAX = 200_000
NAME_MAX = 100
GIVEN_NAMES_MAX = 200
MAX_RECIPIENTS = 50

_SPLIT = re.compile(r"[\s,;]+")
# What separates the people of a list as typed in the page (a name may hold spaces).
_LIST_SEPARATOR = re.compile(r"[,;\n]")
# "Paul Durand <paul.durand@…>", as copied from a mail client: the display name (quoted, or
# up to the previous comma or semicolon) gives way to the address between the brackets.
# Anchored at the start or after a separator, and its two alternatives never start alike: a
# single pass over the text (unanchored, it took time in the square of the length).
_NAMED_ADDRESS = re.compile(r'(?:^|(?<=[,;]))(?:"[^"]*"|[^,;<>"])*<\s*([^<>\s]*)\s*>')
# 50 recipients written with their names fit many times over.
_MAX_ADDRESS_TEXT = 20_000

SEX_CHOICES = [("", "—"), ("F", _("Female")), ("M", _("Male")), ("I", _("Undetermined"))]
PATIENT_FIELDS = (
    "patient_ins",
    "patient_family_name",
    "patient_given_names",
    "patient_birth_date",
    "patient_sex",
    "patient_birthplace_code",
)
# The INS traits' birthplace: the INSEE code (COG) of the commune of birth, 5 characters
# (Corsica's departments 2A and 2B), or 99 and the country's code for a birth abroad.
BIRTHPLACE_CODE = re.compile(r"(?:\d{5}|2[AB]\d{3})")


class MultiValueInput(forms.TextInput):
    """A text input whose value may arrive as several form values (``to=a&to=b``) or as one
    comma-separated list, as typed in the page."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        getlist = getattr(data, "getlist", None)
        values = getlist(name) if callable(getlist) else ([data[name]] if name in data else [])
        if isinstance(values, str):
            values = [values]
        return [str(v) for v in values]

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return super().format_value(value)


def plausible_address(address: str) -> bool:
    """Shaped like a mailbox address: worth looking up (no control characters, one @)."""
    return (
        0 < len(address) <= 254
        and address.count("@") == 1
        and not any(ord(ch) < 32 or ord(ch) == 127 for ch in address)
    )


# The compose page's instructions for To and Cc, shown once below them.
RECIPIENTS_HELP_ID = "recipients-help"


class _RecipientsBoundField(forms.BoundField):
    """To and Cc: described by their own error, then by the instructions the two share, so
    that a screen reader moving from field to field reads how to fill them in."""

    @property
    def aria_describedby(self) -> str | None:
        return " ".join(filter(None, [super().aria_describedby, RECIPIENTS_HELP_ID]))


class AddressListField(forms.Field):
    widget = MultiValueInput

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        addresses: list[str] = []
        for item in value:
            if len(str(item)) > _MAX_ADDRESS_TEXT:
                raise ValidationError(
                    _("This list of recipients is too long: at most %(count)d recipients per message."),
                    code="too_many",
                    params={"count": MAX_RECIPIENTS},
                )
            bare = _NAMED_ADDRESS.sub(r" \1 ", str(item))
            for part in _LIST_SEPARATOR.split(bare):
                if part.strip() and "@" not in part:
                    # A name typed without picking the suggestion ("Sophie Leroy"), alone or
                    # among addresses: said whole, with what to do, rather than "“sophie”
                    # is not a mailbox address".
                    raise ValidationError(_not_an_address(part.strip()), code="invalid")
            addresses += [a for a in _SPLIT.split(bare.strip()) if a]
        return list(dict.fromkeys(a.lower() for a in addresses))

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if len(value) > MAX_RECIPIENTS:
            raise ValidationError(
                _("At most %(count)d recipients per message."), code="too_many", params={"count": MAX_RECIPIENTS}
            )
        for address in value:
            if not plausible_address(address):
                raise ValidationError(_not_an_address(address), code="invalid")


def _not_an_address(text: str) -> str:
    if "@" in text:
        return _("“%(address)s” is not a mailbox address.") % {"address": text[:80]}
    return _(
        "“%(name)s” is not an address: pick the person among the suggestions shown as you type, or type their address."
    ) % {"name": text[:80]}


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.Field):
    """The files themselves never reach the form: the upload handler has already encrypted
    them (see pli.messaging.uploads); the form checks their number and total size."""

    widget = MultipleFileInput

    def clean(self, value: Any) -> list[Any]:
        if not value:
            return []
        return list(value) if isinstance(value, list | tuple) else [value]


_LINE_BREAKS = re.compile(r"[\t\r\n]+")


class AttachmentChoiceField(forms.MultipleChoiceField):
    """Attachment ids, read in any of the ways a UUID is written (``C35DF0EC-…`` as SQL
    Server writes them), as the message ids beside them are."""

    def to_python(self, value: Any) -> list[str]:
        return [_canonical_uuid(item) for item in super().to_python(value)]


def _canonical_uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text  # refused as an unknown choice, quoted as sent


class _IsoDateField(forms.DateField):
    """A date as YYYY-MM-DD; one well written that no calendar has (1958-02-30) is told so,
    not sent back to a format it already follows."""

    def to_python(self, value: Any) -> datetime.date | None:
        try:
            return super().to_python(value)
        except ValidationError:
            if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
                raise ValidationError(
                    _("This date does not exist: check the day and the month."), code="invalid"
                ) from None
            raise


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class ComposeForm(forms.Form):
    sender = forms.CharField(label=_("From"), max_length=254)
    to = AddressListField(label=_("To"), required=False)
    cc = AddressListField(label=_("Cc"), required=False)
    subject = forms.CharField(label=_("Subject"), max_length=SUBJECT_MAX, required=False)
    body = forms.CharField(label=_("Message"), max_length=BODY_MAX, required=False, strip=False, widget=forms.Textarea)
    patient_ins = forms.CharField(
        label=_("INS (national health identifier)"),
        max_length=21,
        required=False,
        help_text=_("15 characters: the NIR or NIA and its 2-digit key."),
    )
    patient_family_name = forms.CharField(
        label=_("Birth name"), max_length=NAME_MAX, required=False, validators=[refuse_invisible_controls]
    )
    patient_given_names = forms.CharField(
        label=_("Given names"), max_length=GIVEN_NAMES_MAX, required=False, validators=[refuse_invisible_controls]
    )
    patient_birth_date = _IsoDateField(
        label=_("Birth date"),
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"invalid": _("Enter a date as YYYY-MM-DD.")},
    )
    patient_sex = forms.ChoiceField(label=_("Sex"), choices=SEX_CHOICES, required=False)
    patient_birthplace_code = forms.CharField(
        label=_("Birthplace (INSEE code)"),
        max_length=5,
        required=False,
        help_text=_(
            "Optional, as in the INS traits: 5 characters such as 75056 or 2A004; for a birth abroad, 99 and the "
            "country's code (99134 for Spain)."
        ),
    )
    in_reply_to = forms.UUIDField(required=False, widget=forms.HiddenInput)
    forward_of = forms.UUIDField(required=False, widget=forms.HiddenInput)
    attachments = MultipleFileField(label=_("Attachments"), required=False)
    forward_attachments = AttachmentChoiceField(
        label=_("Attachments forwarded"), required=False, choices=[], widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, user: User, uploads: list[PendingAttachment] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.uploads = list(uploads or [])
        self.forward_source: Message | None = None
        self.forward_candidates: list[Attachment] = []
        forward_id = self.data.get("forward_of") if self.is_bound else self.initial.get("forward_of")
        if forward_id:
            try:
                self.forward_source = services.visible_message(user, str(forward_id))
            except services.NotVisible:
                self.forward_source = None
        if self.forward_source is not None:
            self.forward_candidates = services.message_attachments(self.forward_source)
        field = self.fields["forward_attachments"]
        assert isinstance(field, forms.MultipleChoiceField)  # noqa: S101 - declared above
        field.choices = [(str(a.pk), a.name) for a in self.forward_candidates]
        if not forward_id:
            # Attachments chosen without their message: « not a valid choice » named no cause.
            field.error_messages = {
                **field.error_messages,
                "invalid_choice": _("Give forward_of, the message these attachments belong to."),
            }
        for name in ("to", "cc"):
            self.fields[name].widget.attrs.update({"autocomplete": "off", "data-directory-search": "1"})
            self.fields[name].bound_field_class = _RecipientsBoundField
        # Not remembered by the browser: a practice's computer is shared, and these name patients.
        for name in ("subject", *PATIENT_FIELDS):
            self.fields[name].widget.attrs["autocomplete"] = "off"

    # -- fields ------------------------------------------------------------------------------

    def for_page(self) -> ComposeForm:
        """The web page picks the sender from a list of the user's mailboxes."""
        mailboxes = services.mailboxes_for(self.user)
        self.fields["sender"].widget = forms.Select(choices=[(m.address, f"{m.name} <{m.address}>") for m in mailboxes])
        return self

    def _address_book(self) -> dict[str, Any]:
        """Every mailbox the form names (sender, to, cc), found with one query."""
        book: dict[str, Any] | None = getattr(self, "_book", None)
        if book is None:
            addresses = [str(self.data.get("sender") or "")]
            for name in ("to", "cc"):
                field = self.fields[name]
                raw = field.widget.value_from_datadict(self.data, self.files, self.add_prefix(name))
                # Unreadable (far too long): that field's own cleaning says so, under its name.
                with contextlib.suppress(ValidationError):
                    addresses += AddressListField().to_python(raw)
            found, _missing = services.resolve_addresses(a for a in addresses if plausible_address(a.strip()))
            book = {m.address.lower(): m for m in found}
            self._book = book
        return book

    def clean_sender(self) -> Any:
        address = self.cleaned_data["sender"].strip().lower()
        mailbox = self._address_book().get(address)
        if mailbox is not None and services.can_send_from(self.user, mailbox):
            return mailbox
        raise ValidationError(_("You can send only from a mailbox you belong to."), code="not_member")

    def _recipients(self, name: str) -> list[Any]:
        addresses: list[str] = self.cleaned_data.get(name) or []
        book = self._address_book()
        missing = [a for a in addresses if a not in book]
        if missing:
            domain = "@" + str(settings.PLI_MAIL_DOMAIN).lower()
            foreign = [a for a in missing if not a.endswith(domain)]
            if foreign:
                raise ValidationError(
                    _("%(addresses)s: not a Pli address. Only mailboxes of this Pli service can be reached."),
                    code="foreign",
                    params={"addresses": ", ".join(a[:80] for a in foreign)},
                )
            # A colleague who has left: said so, rather than "unknown" for an address taken
            # from one of their letters.
            closed = services.closed_addresses(missing)
            unknown = [a for a in missing if a not in closed]
            errors = []
            if closed:
                errors.append(
                    ValidationError(
                        ngettext(
                            "This mailbox is no longer active: %(addresses)s. Write to another address.",
                            "These mailboxes are no longer active: %(addresses)s. Write to other addresses.",
                            len(closed),
                        )
                        % {"addresses": ", ".join(a[:80] for a in missing if a in closed)},
                        code="closed",
                    )
                )
            if unknown:
                errors.append(
                    ValidationError(
                        ngettext("Unknown address: %(addresses)s.", "Unknown addresses: %(addresses)s.", len(unknown))
                        % {"addresses": ", ".join(a[:80] for a in unknown)},
                        code="unknown",
                    )
                )
            raise ValidationError(errors)
        return [book[a] for a in addresses]

    def clean_subject(self) -> str:
        # A subject is one line, in lists and in the API's answers: line breaks and tabs
        # pasted from another program become a space. Any other control character, or a mark
        # that turns the text around, only makes the subject display as something else.
        subject = _LINE_BREAKS.sub(" ", self.cleaned_data.get("subject", ""))
        if contains_invisible_controls(subject):
            raise ValidationError(
                _("The subject contains an invisible control character (a text direction mark, say): type it again."),
                code="control",
            )
        return subject

    def clean_to(self) -> list[Any]:
        return self._recipients("to")

    def clean_cc(self) -> list[Any]:
        return self._recipients("cc")

    def clean_patient_ins(self) -> str:
        return normalise_ins(self.cleaned_data.get("patient_ins", ""))

    def clean_patient_birthplace_code(self) -> str:
        value = (self.cleaned_data.get("patient_birthplace_code") or "").strip().upper()
        if value and not BIRTHPLACE_CODE.fullmatch(value):
            raise ValidationError(
                _(
                    "Enter the INSEE code of the birthplace: 5 characters such as 75056 or 2A004 (for a birth "
                    "abroad, 99 and the country's code)."
                ),
                code="invalid",
            )
        return value

    def clean_patient_birth_date(self) -> datetime.date | None:
        value: datetime.date | None = self.cleaned_data.get("patient_birth_date")
        if value is not None and not datetime.date(1880, 1, 1) <= value <= datetime.date.today():
            raise ValidationError(_("This birth date is not plausible."), code="range")
        return value

    def _source_message(self, name: str) -> Message | None:
        value: uuid.UUID | None = self.cleaned_data.get(name)
        if value is None:
            return None
        try:
            return services.visible_message(self.user, value)
        except services.NotVisible:
            raise ValidationError(_("Unknown message."), code="unknown") from None

    def clean_in_reply_to(self) -> Message | None:
        return self._source_message("in_reply_to")

    def clean_forward_of(self) -> Message | None:
        return self._source_message("forward_of")

    # -- whole form --------------------------------------------------------------------------

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        refuse_repeated_fields(self, multiple=("to", "cc"))
        to, cc = data.get("to"), data.get("cc")
        if to is not None and cc is not None and not to and not cc and "to" not in self.errors:
            self.add_error("to", ValidationError(_("Give at least one recipient."), code="required"))
        self._clean_patient(data)
        if data.get("in_reply_to") and data.get("forward_of"):
            # Taken as a reply, the forward's attachments went without a word.
            self.add_error(
                "forward_of",
                ValidationError(
                    _("A message answers another or forwards it, not both: give in_reply_to or forward_of."),
                    code="both",
                ),
            )
        forwarded: list[Attachment] = []
        chosen = set(data.get("forward_attachments") or [])
        if chosen:
            if self.forward_source is None:
                self.add_error("forward_attachments", ValidationError(_("Unknown message."), code="unknown"))
            else:
                forwarded = [a for a in self.forward_candidates if str(a.pk) in chosen]
        data["forwarded"] = forwarded
        count = len(self.uploads) + len(forwarded)
        size = sum(p.size for p in self.uploads) + sum(a.size for a in forwarded)
        if any(value != "" for value in MultiValueInput().value_from_datadict(self.data, self.files, "attachments")):
            # A client that sent text where files belong would otherwise see its message
            # go out without them.
            self.add_error(
                "attachments",
                ValidationError(
                    _("Attachments must be sent as files (multipart/form-data parts with a file name)."),
                    code="not_a_file",
                ),
            )
        elif count > max_attachments():
            self.add_error("attachments", ValidationError(too_many_message(), code="too_many"))
        elif size > max_message_bytes():
            self.add_error("attachments", ValidationError(too_large_message(), code="too_large"))
        subject = (data.get("subject") or "").strip()
        body = data.get("body") or ""
        # A subject or a text refused is no empty message: its own error says what to fix.
        if not subject and not body.strip() and count == 0 and not {"body", "subject"} & self.errors.keys():
            self.add_error(
                "body",
                ValidationError(_("The message is empty: write a subject, a text or attach a file."), code="empty"),
            )
        return data

    def _clean_patient(self, data: dict[str, Any]) -> None:
        named = any(data.get(name) for name in PATIENT_FIELDS) or any(name in self.errors for name in PATIENT_FIELDS)
        if not named:
            data["patient"] = None
            return
        for name in ("patient_family_name", "patient_given_names", "patient_birth_date", "patient_sex"):
            if not data.get(name) and name not in self.errors:
                self.add_error(
                    name,
                    ValidationError(_("Required when the message concerns a patient."), code="required"),
                )
        ins, sex = data.get("patient_ins") or "", data.get("patient_sex") or ""
        # The NIR's first digit is the sex (1 male, 2 female) for people born in France.
        if ins and sex in ("M", "F") and ins[0] in "12" and ins[0] != ("1" if sex == "M" else "2"):
            self.add_error("patient_sex", ValidationError(_("The sex does not match the INS."), code="mismatch"))
        birth: datetime.date | None = data.get("patient_birth_date")
        if ins and birth and contradicts_birth_date(ins, birth):
            self.add_error("patient_birth_date", birth_date_mismatch())
        data["patient"] = {
            "ins": ins,
            "family_name": (data.get("patient_family_name") or "").strip(),
            "given_names": (data.get("patient_given_names") or "").strip(),
            "birth_date": birth.isoformat() if birth else "",
            "sex": sex,
            "birthplace_code": data.get("patient_birthplace_code") or "",
        }

    def draft(self) -> services.Draft:
        data = self.cleaned_data
        return services.Draft(
            sender=data["sender"],
            to=data["to"],
            cc=data["cc"],
            subject=(data.get("subject") or "").strip(),
            body=data.get("body") or "",
            patient=data.get("patient"),
            in_reply_to=data.get("in_reply_to"),
            forward_of=data.get("forward_of"),
            forward_attachments=data.get("forwarded") or [],
            uploads=self.uploads,
        )


class PageComposeForm(ComposeForm):
    """The compose page's form: the API's fields, and the page's random value, so that the
    page sent twice sends one message (services.send_message)."""

    submission = SubmissionField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and not self.initial.get("submission"):
            self.initial["submission"] = new_submission()

    def draft(self) -> services.Draft:
        draft = super().draft()
        draft.submission = self.cleaned_data.get("submission") or ""
        return draft


def attachment_limits_text() -> str:
    count = max_attachments()
    return ngettext("Up to %(count)d file, %(size)s in total.", "Up to %(count)d files, %(size)s in total.", count) % {
        "count": count,
        "size": limit_size(max_message_bytes()),
    }
