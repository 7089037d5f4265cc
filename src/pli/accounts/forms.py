"""Forms: organisation administration, invitations, and allauth forms with instance-wide limits."""

from __future__ import annotations

from typing import Any, cast

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.forms import ChangePasswordForm as AllauthChangePasswordForm
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.forms import ResetPasswordForm as AllauthResetPasswordForm
from allauth.core import context
from allauth.mfa.adapter import get_adapter as get_mfa_adapter
from allauth.mfa.base.forms import AuthenticateForm, ReauthenticateForm
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.forms import ActivateTOTPForm as AllauthActivateTOTPForm
from allauth.mfa.totp.internal.auth import TOTP
from django import forms
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from pli.accounts import journal, ratelimits, validators
from pli.accounts.models import Membership, Organisation, User
from pli.audit import services as audit
from pli.core.forms import SubmissionField, check_date_range, new_submission

# Suggestions only (a datalist): the national directory has many more professions.
PROFESSIONS = (
    "Médecin",
    "Infirmier",
    "Pharmacien",
    "Sage-femme",
    "Masseur-kinésithérapeute",
    "Chirurgien-dentiste",
    "Biologiste",
    "Psychologue",
    "Orthophoniste",
    "Secrétaire médicale",
)


# --- allauth forms, with the instance-wide limits ---------------------------------------


class LoginForm(AllauthLoginForm):  # type: ignore[misc]
    """allauth puts the "forgotten password" link in the password's help text, which is
    rendered before the password input: Tab from the e-mail address landed on the link. The
    sign-in page shows the link after the password instead. Its label for the address
    (« Courriel ») is Pli's, as on every other page."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password"].help_text = ""
        self.fields["login"].label = _("E-mail address")
        self.fields["login"].widget.attrs["placeholder"] = _("E-mail address")


class ChangePasswordForm(AllauthChangePasswordForm):  # type: ignore[misc]
    """allauth checks the current password with check_password alone: outside the account's
    attempt limits (only its own 5 a minute) and the audit trail, a session left open made
    it a password oracle. It is checked as a reauthentication is (AccountAdapter), so that a
    wrong one counts towards the lockout and is recorded."""

    def clean_oldpassword(self) -> str:
        password: str = self.cleaned_data.get("oldpassword", "")
        if not get_account_adapter().reauthenticate(self.user, password):
            raise get_account_adapter().validation_error("enter_current_password")
        return password


class ResetPasswordForm(AllauthResetPasswordForm):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].label = _("E-mail address")  # not allauth's « Courriel »
        self.fields["email"].widget.attrs["placeholder"] = _("E-mail address")

    def clean_email(self) -> str:
        if ratelimits.consume(context.request, "reset_password") is None:
            raise ValidationError(
                _("Pli is receiving too many password reset requests. Wait one minute, then try again."),
                code="rate_limited",
            )
        email: str = super().clean_email()
        return email


class _InstanceLimitedCodeMixin:
    """Wrong second-factor codes count against an instance-wide limit (allauth already
    limits them per account and per address); right ones don't."""

    fields: dict[str, forms.Field]
    data: Any
    user: User
    reauthentication = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Digits keyboard on phones (recovery codes are digits too).
        self.fields["code"].widget.attrs.update(inputmode="numeric", autofocus=True)

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        # A refused code is typed again, not corrected (an authenticator shows a new one
        # every 30 s): left in the focused field, the next code joined its digits and was
        # refused too, counting towards the lockout.
        errors = getattr(self, "_errors", None)
        if errors and "code" in errors:
            data = self.data.copy()
            data["code"] = ""
            self.data = data

    def clean_code(self) -> str:
        usage = ratelimits.consume(context.request, "second_factor_failed")
        if usage is None:
            self._record_refused("instance_limit")
            raise ValidationError(
                _("Pli is receiving an unusual number of wrong codes and is slowing them down. Wait one minute."),
                code="rate_limited",
            )
        try:
            code: str = super().clean_code()  # type: ignore[misc]
        except ValidationError as exc:
            # allauth refuses a locked account's code without checking it, and without the
            # failure signal: recorded here, as a refused password is (AccountAdapter), so
            # that the trail shows someone holding the password still trying codes.
            if exc.code == "too_many_login_attempts":
                self._record_refused("account_or_address_limit")
            raise
        usage.rollback()
        return code

    def _record_refused(self, reason: str) -> None:
        request = context.request
        signed_in = bool(getattr(getattr(request, "user", None), "is_authenticated", False))
        audit.record(
            "auth.second_factor",
            actor=self.user if signed_in else ("anonymous", ""),
            target=self.user,
            request=request,
            outcome=audit.DENIED,
            details={"reason": reason, "reauthentication": self.reauthentication},
        )


class ActivateTOTPForm(AllauthActivateTOTPForm):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["code"].widget.attrs.update(inputmode="numeric")

    def clean_code(self) -> str:
        code: str = super().clean_code()
        # allauth checks the enrolment code without spending it; spend it, so that the code
        # typed to enrol can't also sign in during its validity window. Already spent: the
        # same form sent twice at once (a double click), whose first is saving the factor;
        # the second would fail on the one-TOTP-per-account constraint (a 500).
        if not TOTP(Authenticator(user_id=self.user.pk, type=Authenticator.Type.TOTP))._mark_code_used(code):
            raise get_mfa_adapter().validation_error("incorrect_code")
        return code


class SecondFactorForm(_InstanceLimitedCodeMixin, AuthenticateForm):  # type: ignore[misc]
    pass


class SecondFactorReauthenticateForm(_InstanceLimitedCodeMixin, ReauthenticateForm):  # type: ignore[misc]
    reauthentication = True


# --- Organisation administration -------------------------------------------------------


class InvitationForm(forms.Form):
    email = forms.EmailField(label=_("E-mail address"), max_length=254)
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices, initial=Membership.Role.PRACTITIONER)
    first_name = forms.CharField(label=_("First name"), max_length=150, required=False)
    last_name = forms.CharField(label=_("Last name"), max_length=150, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].widget.attrs.update(autocomplete="off")
        self.fields["first_name"].help_text = _("Optional: the person can correct it.")


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices)


class MemberChoiceField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: User) -> str:
        return f"{obj.display_name} ({obj.email})"


class SharedMailboxForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120, help_text=_("For example “Secrétariat” or “Cardiology”."))
    members = MemberChoiceField(
        label=_("Members"),
        queryset=User.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("The people who read and send from this mailbox."),
    )

    # A new mailbox's form sent twice (a double click) makes one mailbox (the edit page ignores it).
    submission = SubmissionField()

    def __init__(self, *args: Any, organisation: Organisation, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and not self.initial.get("submission"):
            self.initial["submission"] = new_submission()
        members = cast(MemberChoiceField, self.fields["members"])
        members.queryset = User.objects.filter(memberships__organisation=organisation, is_active=True).order_by(
            "last_name", "first_name"
        )


class OrganisationSettingsForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200, help_text=_("Shown to patients in e-mails and SMS."))
    share_expiry_days = forms.IntegerField(
        label=_("Patient links valid for (days)"),
        min_value=1,
        max_value=90,
        help_text=_("The default for new patient shares; the practitioner may choose another, up to 90 days."),
    )
    retention_days = forms.IntegerField(
        label=_("Keep messages and ended patient shares for (days)"),
        min_value=30,
        max_value=36500,
        required=False,
        help_text=_(
            "Empty: kept until their users delete them. Otherwise, messages older than this go to the trash, "
            "and patient shares ended longer ago are deleted."
        ),
    )
    phone = forms.CharField(
        label=_("Telephone number for patients"),
        max_length=30,
        required=False,
        help_text=_(
            "Shown to patients on their secure page (never in e-mails or SMS), so that they can call you "
            "when a link is locked, expired or withdrawn."
        ),
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "tel"}),
    )
    # Asked for only when the period is shortened (organisation_settings): saved at once,
    # it sent the older letters to the trash within minutes, to be deleted for good after it.
    # The period confirmed, in days: another typed since is asked about again.
    confirm_retention = forms.IntegerField(required=False, widget=forms.HiddenInput())


class InvitationAcceptForm(forms.Form):
    first_name = forms.CharField(label=_("First name"), max_length=150)
    last_name = forms.CharField(label=_("Last name"), max_length=150)
    profession = forms.CharField(label=_("Profession"), max_length=80, required=False)
    specialty = forms.CharField(label=_("Specialty"), max_length=120, required=False)
    rpps = forms.CharField(
        label=_("RPPS number"),
        max_length=20,
        required=False,
        help_text=_("11 digits, on your professional card (CPS)."),
    )
    adeli = forms.CharField(
        label=_("ADELI number"),
        max_length=20,
        required=False,
        help_text=_("9 digits, only if you have no RPPS number."),
    )
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("Password (again)"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, email: str, role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email
        # A practitioner must give a professional number; an administrator may (many are
        # practitioners too); an assistant has none.
        self.practitioner = role == Membership.Role.PRACTITIONER
        self.fields["password1"].help_text = password_validation.password_validators_help_text_html()
        self.fields["profession"].widget.attrs["list"] = "professions"
        if self.practitioner:
            self.fields["profession"].required = True
        elif role == Membership.Role.ASSISTANT:
            for name in ("rpps", "adeli", "specialty"):
                del self.fields[name]
        for name in ("rpps", "adeli"):
            if name in self.fields:
                self.fields[name].widget.attrs.update(inputmode="numeric", autocomplete="off")

    def clean_rpps(self) -> str | None:
        value = self.cleaned_data.get("rpps") or ""
        return validators.normalise_rpps(value) if value.strip() else None

    def clean_adeli(self) -> str | None:
        value = self.cleaned_data.get("adeli") or ""
        return validators.normalise_adeli(value) if value.strip() else None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "rpps" in self.fields and not self.errors.get("rpps") and not self.errors.get("adeli"):
            if self.practitioner and not data.get("rpps") and not data.get("adeli"):
                self.add_error("rpps", _("Enter your RPPS number (or, failing that, your ADELI number)."))
            elif data.get("rpps") and data.get("adeli"):
                self.add_error("adeli", _("Enter either an RPPS or an ADELI number, not both."))
        password1, password2 = data.get("password1"), data.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", _("The two passwords differ."))
        elif password1:
            candidate = User(
                email=self.email, first_name=data.get("first_name", ""), last_name=data.get("last_name", "")
            )
            try:
                password_validation.validate_password(password1, candidate)
            except ValidationError as exc:
                self.add_error("password1", exc)
        return data


class JournalFilterForm(forms.Form):
    """The access journal's filters (in the page's address: none of them is health data)."""

    member = forms.TypedChoiceField(label=_("Member"), coerce=int, empty_value=None, required=False)
    kind = forms.ChoiceField(label=_("Kind of action"), required=False)
    since = forms.DateField(
        label=pgettext_lazy("date range", "From"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    until = forms.DateField(
        label=pgettext_lazy("date range", "To"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def __init__(self, *args: Any, organisation: Organisation, kinds: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        memberships = Membership.objects.filter(organisation=organisation).select_related("user")
        people = sorted((m.user for m in memberships), key=lambda u: (u.last_name.lower(), u.first_name.lower()))
        member_field = cast(forms.ChoiceField, self.fields["member"])
        former = sorted(journal.former_members(organisation), key=lambda u: (u.last_name.lower(), u.first_name.lower()))
        member_field.choices = [
            ("", _("Everyone")),
            *((str(u.pk), u.display_name) for u in people),
            *((str(u.pk), _("%(name)s (former member)") % {"name": u.display_name}) for u in former),
        ]
        kind_field = cast(forms.ChoiceField, self.fields["kind"])
        kind_field.choices = [("", _("Every action")), *kinds]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        check_date_range(self, data, "since", "until")
        return data
