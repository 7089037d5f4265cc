"""Tags of the page shell (base.html)."""

from __future__ import annotations

from typing import Any

from django import forms, template
from django.core.exceptions import NON_FIELD_ERRORS

from pli.core.forms import focus_first_error

register = template.Library()


@register.simple_tag(takes_context=True)
def page_has_errors(context: template.Context) -> bool:
    """Whether a form on the page was refused (or the view says so with ``page_error``, for
    an error shown outside any form field).

    The page's title then starts with "Erreur :". A screen reader announces the title first
    when a refused form comes back as a new page; without it, nothing says that the sending
    failed until the person happens on the message (RGAA 11.10, the French State's design
    system does the same)."""
    values: list[Any] = list(context.flatten().values())
    return bool(context.get("page_error")) or any(
        isinstance(value, forms.BaseForm) and _refused(value) for value in values
    )


def _refused(form: forms.BaseForm) -> bool:
    # Only the errors the view already has: reading .errors of a bound form not validated
    # yet would validate it from the template, and some forms' validation acts (a sign-in
    # form's authenticates, a second factor's uses up the code). Unbound forms count too: a
    # refused upload comes back as an unbound form given its error (files cannot be resent).
    errors = getattr(form, "_errors", None)
    return bool(errors)


@register.simple_tag
def error_summary_focus(form: forms.BaseForm) -> str:
    """For a refused form's summary: give the first field in error the focus
    (``pli.core.forms.focus_first_error``), or, when only the form as a whole was refused
    (a wrong password), return `` autofocus`` for the summary itself. Used before the
    fields are rendered; like ``_refused`` it reads only the errors the view already has."""
    errors = getattr(form, "_errors", None) or {}
    if any(name != NON_FIELD_ERRORS for name in errors):
        focus_first_error(form)
        return ""
    return " autofocus" if errors else ""


UNDO_TAG_PREFIX = "undo-"


@register.filter
def undo_id(extra_tags: str) -> str:
    """The id of the moves a flash message's « Annuler » undoes (pli.messaging.views._moved
    tags the message ``undo undo-<id>``), or ""."""
    for tag in str(extra_tags or "").split():
        if tag.startswith(UNDO_TAG_PREFIX):
            return tag.removeprefix(UNDO_TAG_PREFIX)
    return ""
