"""Forms of the practitioner's share page and of the patient pages.

The share form's field names are the API's (``patient_given_name``… ``allow_reply``), so
the web page and the API validate alike; files arrive encrypted through
:mod:`pli.sharing.uploads` and are checked by the view.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from pli.accounts.models import Mailbox, User
from pli.core.forms import SubmissionField, new_submission, refuse_invisible_controls, refuse_repeated_fields
from pli.core.ins import birth_date_mismatch, contradicts_birth_date
from pli.messaging.search import INS, PATIENT_NAME, query_words
from pli.sharing import validation
from pli.sharing.models import Status
from pli.sharing.services import MAX_EXPIRY_DAYS, ShareError, ShareInput, sending_mailbox


class _ContactChecks(forms.Form):
    """How the patient's contacts are checked, when a share is made and when they are
    corrected (CorrectionForm): the same normalisation and refusals."""

    def clean_patient_mobile(self) -> str | None:
        raw = self.cleaned_data.get("patient_mobile") or ""
        return validation.normalise_patient_mobile(raw) if raw.strip() else None

    def clean_patient_email(self) -> str | None:
        raw = self.cleaned_data.get("patient_email") or ""
        return validation.normalise_email(raw) if raw.strip() else None

    def check_some_contact(self, data: dict[str, Any]) -> None:
        if (
            "patient_email" in data
            and "patient_mobile" in data
            and not data.get("patient_email")
            and not data.get("patient_mobile")
        ):
            message = _("Give the patient's mobile number or e-mail address (or both).")
            self.add_error("patient_mobile", ValidationError(message, code="no_contact"))
            self.add_error("patient_email", ValidationError(message, code="no_contact"))


class ShareForm(_ContactChecks):
    patient_family_name = forms.CharField(
        label=_("Family name"), max_length=150, validators=[refuse_invisible_controls]
    )
    patient_given_name = forms.CharField(
        label=_("Given name(s)"), max_length=150, validators=[refuse_invisible_controls]
    )
    patient_birth_date = forms.CharField(
        label=_("Birth date"),
        max_length=20,
        help_text=_("DD/MM/YYYY. The patient confirms it before seeing anything."),
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off", "placeholder": _("DD/MM/YYYY")}),
    )
    patient_ins = forms.CharField(
        label=_("INS (optional)"),
        max_length=30,
        required=False,
        help_text=_("15 characters: the NIR or NIA and its 2-digit key."),
    )
    patient_mobile = forms.CharField(
        label=_("Mobile phone"),
        max_length=40,
        required=False,
        help_text=_("The one-time code is sent here by SMS."),
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
    )
    patient_email = forms.CharField(
        label=_("E-mail address"),
        max_length=254,
        required=False,
        widget=forms.TextInput(attrs={"type": "email", "autocomplete": "off"}),
    )
    message = forms.CharField(
        label=_("Message to the patient (optional)"),
        max_length=5000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Shown only after the patient has confirmed their identity; never in the e-mail or SMS."),
    )
    expires_in_days = forms.IntegerField(
        label=_("Link valid for (days)"), min_value=1, max_value=MAX_EXPIRY_DAYS, required=False
    )
    allow_reply = forms.BooleanField(
        label=_("Allow the patient to reply with a message and files"), required=False, label_suffix=""
    )
    # Checked by services.create_share, which knows the mailboxes the practitioner works in.
    sender = forms.CharField(
        label=_("Sent from"),
        max_length=254,
        required=False,
        help_text=_("The patient's replies arrive in this mailbox, and its members follow the share."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Not remembered by the browser: a practice's computer is shared, and these name the
        # patient (the birth date and contacts already say so in their widgets).
        for name in ("patient_family_name", "patient_given_name", "patient_ins", "message"):
            self.fields[name].widget.attrs["autocomplete"] = "off"

    def clean_patient_birth_date(self) -> Any:
        return validation.parse_birth_date(self.cleaned_data["patient_birth_date"])

    def clean_patient_ins(self) -> str | None:
        raw = self.cleaned_data.get("patient_ins") or ""
        return validation.normalise_ins(raw) if raw.strip() else None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        refuse_repeated_fields(self)
        self.check_some_contact(data)
        ins, birth = data.get("patient_ins"), data.get("patient_birth_date")
        if ins and birth and contradicts_birth_date(ins, birth):
            self.add_error("patient_birth_date", birth_date_mismatch())
        return data

    def share_input(self) -> ShareInput:
        data = self.cleaned_data
        return ShareInput(
            given_name=data["patient_given_name"],
            family_name=data["patient_family_name"],
            birth_date=data["patient_birth_date"],
            email=data.get("patient_email"),
            mobile=data.get("patient_mobile"),
            ins=data.get("patient_ins"),
            message=data.get("message") or "",
            expires_in_days=data.get("expires_in_days"),
            allow_reply=bool(data.get("allow_reply")),
            sender=(data.get("sender") or "").strip(),
        )


NOT_YOUR_MAILBOX = _("You can send only from a mailbox you belong to.")
NO_DOCUMENT_NOR_MESSAGE = _("Add at least one document, or write a message.")


def sender_error(user: User, form: ShareForm) -> str:
    """Why the form's ``sender`` cannot send the share ("" when it can): said with the other
    fields' errors, before the documents are saved."""
    address = form.cleaned_data.get("sender") or ""
    if not address.strip():
        return ""  # their own mailbox, or none: never refused (nor looked up twice)
    try:
        sending_mailbox(user, address)
    except ShareError:
        return str(NOT_YOUR_MAILBOX)
    return ""


class CorrectionForm(_ContactChecks):
    """The patient's birth date and contacts corrected on a share (a mistyped date, address
    or number), checked as the share form checks them. Only the fields given are changed:
    the page gives all three, the API may give one (``only_given``)."""

    patient_birth_date = ShareForm.base_fields["patient_birth_date"]
    patient_mobile = ShareForm.base_fields["patient_mobile"]
    patient_email = ShareForm.base_fields["patient_email"]

    def __init__(self, *args: Any, only_given: bool = False, ins: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ins = ins  # the share's, if known here (the service checks it again)
        if only_given and self.is_bound:
            for name in list(self.fields):
                if name not in self.data:
                    del self.fields[name]

    def clean_patient_birth_date(self) -> Any:
        return validation.parse_birth_date(self.cleaned_data["patient_birth_date"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        refuse_repeated_fields(self)
        self.check_some_contact(data)
        birth = data.get("patient_birth_date")
        if self._ins and birth and contradicts_birth_date(self._ins, birth):
            self.add_error("patient_birth_date", birth_date_mismatch())
        return data

    def corrections(self) -> dict[str, Any]:
        """The corrected values, by ShareInput's names (``birth_date``, ``email``, ``mobile``)."""
        return {name.removeprefix("patient_"): self.cleaned_data.get(name) for name in self.fields}


class PageShareForm(ShareForm):
    """The share page's form: the API's fields, and the page's random value, so that the
    page sent twice makes one share and sends the patient one link (services.create_share)."""

    submission = SubmissionField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and not self.initial.get("submission"):
            self.initial["submission"] = new_submission()

    def share_input(self) -> ShareInput:
        data = super().share_input()
        data.submission = self.cleaned_data.get("submission") or ""
        return data

    def offer_mailboxes(self, mailboxes: Sequence[Mailbox]) -> bool:
        """The page picks the mailbox the share is sent from in a list, shown only when the
        practitioner works in more than one (a secretariat's shared mailbox, say), or when the
        one sent was refused; with one, it is sent as it is (a secretary's only mailbox may be
        the shared one)."""
        refused = self.is_bound and "sender" in self.errors
        if len(mailboxes) < 2 and not refused:
            self.fields["sender"].widget = forms.HiddenInput()
            return False
        # By name: on a phone the address pushed it out of the field; the patient never sees it.
        self.fields["sender"].widget = forms.Select(choices=[(m.address, m.name) for m in mailboxes])
        return True


class BirthDateForm(forms.Form):
    birth_date = forms.CharField(
        label=_("Your birth date"),
        max_length=20,
        # A phone's numeric keypad may have no "/": the digits alone are accepted, and said so.
        help_text=_("For example 31/01/1980 (day/month/year), or the digits alone: 31011980."),
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "bday", "placeholder": _("DD/MM/YYYY")}),
        error_messages={"required": _("Enter your birth date.")},
    )

    def clean_birth_date(self) -> Any:
        return validation.parse_birth_date(self.cleaned_data["birth_date"])


# An SMS of a few segments; anything longer is not a message with a code in it.
CODE_PASTE_MAX = 500


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code received"),
        # Room for a whole pasted SMS, whose code clean_code picks out.
        max_length=CODE_PASTE_MAX,
        help_text=_("6 digits."),
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "one-time-code"}),
        error_messages={"required": _("Enter the code you received.")},
    )

    def clean_code(self) -> str:
        return validation.clean_code(self.cleaned_data["code"])


class ReplyForm(forms.Form):
    text = forms.CharField(
        label=_("Your message"),
        max_length=5000,
        required=False,
        # The browser stops the text at the limit (maxlength) without a word: said beforehand.
        help_text=_("5,000 characters at most."),
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    # New with each page shown: the same form sent twice is one reply (services.reply).
    submission = forms.RegexField(
        regex=r"\A[A-Za-z0-9_-]{16,64}\Z", required=False, widget=forms.HiddenInput(attrs={"autocomplete": "off"})
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["submission"] = secrets.token_urlsafe(24)


class ShareFilterForm(forms.Form):
    """The shares list's search: the patient (names, their first letters, or INS) and the
    status as the list shows it. Same names in the API's query string."""

    # Not remembered by the browser: a practice's computer is shared.
    q = forms.CharField(
        label=_("Patient name (or its first letters) or INS"),
        max_length=200,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    status = forms.ChoiceField(label=_("Status"), choices=[("", _("All")), *Status.choices], required=False)
    # The mailbox the shares were sent from (services.sending_mailbox), by its address: a
    # secretary's own shares apart from the secretariat's.
    sender = forms.CharField(label=_("Sent from"), max_length=254, required=False)

    def __init__(self, *args: Any, mailboxes: Sequence[Mailbox] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mailboxes = list(mailboxes)
        self.sender_mailbox: Mailbox | None = None

    def for_page(self) -> ShareFilterForm:
        """The page offers the mailboxes in a list, only to whoever works in more than one."""
        if len(self.mailboxes) < 2:
            del self.fields["sender"]
        else:
            choices = [("", _("All my mailboxes")), *((m.address, m.name) for m in self.mailboxes)]
            self.fields["sender"].widget = forms.Select(choices=choices)
        return self

    def clean_sender(self) -> str:
        address = (self.cleaned_data.get("sender") or "").strip().lower()
        if not address:
            return ""
        self.sender_mailbox = next((m for m in self.mailboxes if m.address.lower() == address), None)
        if self.sender_mailbox is None:
            raise ValidationError(_("Choose one of the mailboxes you work in."), code="not_member")
        return address

    def clean_q(self) -> str:
        value: str = self.cleaned_data.get("q") or ""
        if value.strip() and not query_words(value, (PATIENT_NAME, INS)):
            raise ValidationError(_("Type at least one word of two letters or more, or an INS."), code="no_word")
        return value
