"""Small helpers shared by the forms of several apps."""

from __future__ import annotations

from django import forms


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
        if name in form.errors:
            field.widget.attrs["autofocus"] = True
            return
