from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from pli.api.scopes import DEFAULT_SCOPES, SCOPES
from pli.api.services import NAME_MAX_LENGTH


class TokenForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=NAME_MAX_LENGTH,
        help_text=_("What will use it, e.g. “Practice software, front desk”."),
    )
    scopes = forms.MultipleChoiceField(
        label=_("Allowed actions"),
        choices=list(SCOPES.items()),
        initial=list(DEFAULT_SCOPES),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": _("Choose at least one action.")},
    )
