"""Small helpers shared by the forms of several apps."""

from __future__ import annotations

import datetime
import re
import secrets
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

# Django's label suffix, which Pli's own catalogue translates (it comes first): French puts a
# non-breaking space before « : », and Django's French has a plain one, with which the colon
# of a label could wrap onto a line of its own. Named here so that makemessages keeps it.
LABEL_SUFFIX = gettext_noop(":")

# Control characters, and the marks that change the direction text is shown in: in a name
# they only serve to make it display as something else.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def contains_invisible_controls(value: str) -> bool:
    return _INVISIBLE.search(value) is not None


def refuse_invisible_controls(value: str) -> None:
    """A validator for people's names."""
    if contains_invisible_controls(value):
        raise ValidationError(
            _("This name contains an invisible control character (a text direction mark, say): type it again."),
            code="control",
        )


# Widgets that take several values of one name (``to=a&to=b``, several files).
_MULTIPLE = (forms.SelectMultiple, forms.MultipleHiddenInput)


def refuse_repeated_fields(form: forms.BaseForm, multiple: tuple[str, ...] = ()) -> None:
    """Add an error to every single-value field the request gives more than once.

    Django keeps the last of the values and drops the others without a word: an integration
    that sends ``sender`` twice, or ``allow_reply=true`` then ``allow_reply=false``, would
    have one of them silently ignored. ``multiple`` names the fields (beyond the widgets
    made for it) that take a list.
    """
    getlist = getattr(form.data, "getlist", None)
    if not callable(getlist):
        return
    for name, field in form.fields.items():
        widget = field.widget
        if name in multiple or isinstance(widget, _MULTIPLE) or getattr(widget, "allow_multiple_selected", False):
            continue
        if len(getlist(form.add_prefix(name))) > 1:
            # Whatever else was found wrong with the kept value is beside the point.
            form.errors.pop(name, None)
            form.add_error(
                name, ValidationError(_("This field is given more than once: send it once."), code="repeated")
            )


def check_date_range(form: forms.BaseForm, data: dict[str, Any], start: str, end: str) -> None:
    """A search's ``start`` and ``end`` date fields: each within years a person means (an
    input of type date lets 0001 or 275760 through), and the end not before the start."""
    earliest, latest = datetime.date(1900, 1, 1), datetime.date(2999, 12, 31)
    for name in (start, end):
        value = data.get(name)
        if isinstance(value, datetime.date) and not earliest <= value <= latest:
            form.add_error(name, _("Choose a date between 1900 and 2999."))
    first, last = data.get(start), data.get(end)
    if isinstance(first, datetime.date) and isinstance(last, datetime.date) and first > last:
        form.add_error(end, _("The end date is before the start date."))


def focus_first_error(form: forms.BaseForm) -> None:
    """Give the first field in error the ``autofocus`` attribute.

    A refused form comes back as a new page, with the focus on the page itself: the person
    has to find the field again, and a screen reader announces nothing useful. Focused, the
    field is read with its label and its error (``aria-describedby``), and can be typed in
    at once. No script needed: the patient pages have none.
    """
    if not form.is_bound or not form.errors:
        return
    for name, field in form.fields.items():
        if name in form.errors and not field.widget.is_hidden:
            field.widget.attrs["autofocus"] = True
            return


_SUBMISSION = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")


class SubmissionField(forms.CharField):
    """A web form's random value, new with each page shown (:func:`new_submission`): the
    same form sent twice (a double click, a page sent again after a slow answer) is then
    known as such and makes one message or one share. A value not of the page's making is
    read as none: it only loses the sender that protection."""

    def __init__(self, **kwargs: Any) -> None:
        # Not restored by the browser (Firefox refills even hidden fields on Back or reload):
        # the page's next form, however it was shown, is another one.
        widget = forms.HiddenInput(attrs={"autocomplete": "off"})
        super().__init__(required=False, max_length=None, widget=widget, **kwargs)

    def clean(self, value: Any) -> str:
        text = super().clean(value)
        return text if _SUBMISSION.match(text) else ""


def new_submission() -> str:
    return secrets.token_urlsafe(24)
