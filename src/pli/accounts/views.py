"""Pages: the user's account, organisation administration, invitations, sessions.

Views parse, call one service, render. Organisation pages find the organisation among the
ones the user belongs to (404 otherwise: another organisation's existence isn't revealed)
and require the admin role (403).
"""

from __future__ import annotations

import csv
import datetime
import uuid
from collections.abc import Iterator
from typing import Any, cast

from allauth.account.internal.flows.reauthentication import reauthenticate_by_password
from allauth.account.utils import perform_login
from allauth.core.internal import ratelimit as allauth_ratelimit
from allauth.mfa.webauthn.views import RemoveWebAuthnView
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch
from django.forms import Form
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from pli.accounts import journal, ratelimits, services
from pli.accounts.adapter import MFAAdapter
from pli.accounts.forms import (
    PROFESSIONS,
    InvitationAcceptForm,
    InvitationForm,
    JournalFilterForm,
    OrganisationSettingsForm,
    RoleForm,
    SharedMailboxForm,
)
from pli.accounts.models import Invitation, Mailbox, Membership, Organisation, User
from pli.accounts.validators import RPPS_CHECKSUM_WARNING, rpps_checksum_fails
from pli.audit import services as audit
from pli.notify.sms import display_number


def _user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # LoginRequiredMiddleware lets no anonymous user here
        raise PermissionDenied
    return user


def _apply_errors(form: Form, error: ValidationError) -> None:
    """Put a service's field errors next to the form's fields (others at the top)."""
    if hasattr(error, "error_dict"):
        for name, errors in error.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, error)


def _posted(request: HttpRequest) -> Any:
    return request.POST if request.method == "POST" else None


# --- The user's own account -------------------------------------------------------------


@require_POST
def stay_signed_in(request: HttpRequest) -> HttpResponse:
    """« Rester connecté » under the warning that the session is about to end, and typing in
    a page's form (activity.js): a real request, so the session is saved and its idle
    expiry pushed back, as by any page. Nothing else is done or recorded."""
    return HttpResponse(status=204)


@require_http_methods(["GET"])
def profile(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    memberships = Membership.objects.filter(user=user).select_related("organisation").order_by("organisation__name")
    return render(
        request,
        "accounts/profile.html",
        {
            "memberships": memberships,
            "mailboxes": services.mailboxes_for(user).select_related("organisation"),
            "new_mail_minutes": settings.PLI_NEW_MAIL_EMAIL_MINUTES,
        },
    )


@require_POST
def new_mail_setting(request: HttpRequest) -> HttpResponse:
    """Whether the person is e-mailed (without any content) when messages arrive."""
    user = _user(request)
    wanted = request.POST.get("new_mail_email") == "on"
    if wanted != user.new_mail_email:
        with transaction.atomic():
            User.objects.filter(pk=user.pk).update(new_mail_email=wanted)
            audit.record("account.new_mail_email", actor=user, target=user, request=request, details={"on": wanted})
    messages.success(
        request,
        _("You will be e-mailed when messages arrive.")
        if wanted
        else _("You will no longer be e-mailed when messages arrive."),
    )
    return redirect("accounts:profile")


@never_cache
@require_http_methods(["GET", "POST"])
def sessions(request: HttpRequest) -> HttpResponse:
    """The user's signed-in sessions (allauth.usersessions), each of which can be ended."""
    user = _user(request)
    current_key = request.session.session_key
    active = sorted(UserSession.objects.purge_and_list(user), key=lambda s: s.last_seen_at, reverse=True)
    if request.method == "POST":
        chosen = request.POST.get("session", "")
        if chosen == "others":
            ending = [s for s in active if s.session_key != current_key]
        else:
            ending = [s for s in active if str(s.pk) == chosen and s.session_key != current_key]
            if not ending:
                messages.error(request, _("This session no longer exists."))
                return redirect("usersessions_list")
        services.end_sessions(user, ending, request=request)
        messages.success(request, _("Session ended.") if len(ending) == 1 else _("Other sessions ended."))
        return redirect("usersessions_list")
    return render(request, "usersessions/usersession_list.html", {"sessions": active, "current_key": current_key})


class RemoveSecurityKeyView(RemoveWebAuthnView):  # type: ignore[misc]
    """allauth's removal page, refusing to remove the last second factor (allauth checks
    that for the authenticator app only)."""

    def form_valid(self, form: Form) -> HttpResponse:
        authenticator = self.get_object()
        if not MFAAdapter().can_delete_authenticator(authenticator):
            messages.error(self.request, str(MFAAdapter.error_messages["cannot_delete_authenticator"]))
            return redirect("mfa_list_webauthn")
        response: HttpResponse = super().form_valid(form)
        return response


remove_security_key = RemoveSecurityKeyView.as_view()


# --- Organisation administration --------------------------------------------------------


def _organisation_for_admin(request: HttpRequest, slug: str) -> Organisation:
    user = _user(request)
    organisation = get_object_or_404(Organisation, slug=slug, memberships__user=user)
    if not services.is_admin(user, organisation):
        raise PermissionDenied
    return organisation


@require_http_methods(["GET"])
def organisations(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    administered = list(services.administered_organisations(user))
    if len(administered) == 1:
        return redirect("accounts:members", slug=administered[0].slug)
    return render(request, "accounts/organisations.html", {"organisations": administered})


@require_http_methods(["GET"])
def members(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    memberships = (
        Membership.objects.filter(organisation=organisation)
        .select_related("user")
        .order_by("user__last_name", "user__first_name")
    )
    pending = Invitation.objects.filter(
        organisation=organisation, accepted_at__isnull=True, revoked_at__isnull=True
    ).order_by("-created_at")
    return render(
        request,
        "accounts/members.html",
        {"organisation": organisation, "memberships": memberships, "invitations": pending, "now": timezone.now()},
    )


@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    form = InvitationForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            sent = services.invite_member(organisation, actor=_user(request), request=request, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            if sent.delivered is False:
                messages.warning(
                    request,
                    _(
                        "The invitation was created but the e-mail to %(email)s could not be sent. "
                        "Try resending it later."
                    )
                    % {"email": sent.invitation.email},
                )
            else:
                messages.success(request, _("Invitation sent to %(email)s.") % {"email": sent.invitation.email})
            if sent.replaced is not None:
                # Inviting the same address again (the role left at its default, say)
                # silently replaced the pending invitation and its role.
                replaced = {
                    "date": date_format(timezone.localtime(sent.replaced.created_at), "SHORT_DATE_FORMAT"),
                    "old_role": Membership.Role(sent.replaced.role).label,
                    "role": Membership.Role(sent.invitation.role).label,
                }
                if sent.replaced.role == sent.invitation.role:
                    text = _("It replaces the invitation sent on %(date)s, whose link no longer works.")
                else:
                    text = _(
                        "It replaces the invitation sent on %(date)s (role: %(old_role)s), whose link no longer "
                        "works; the role is now: %(role)s."
                    )
                messages.info(request, text % replaced)
            return redirect("accounts:members", slug=organisation.slug)
    status = 400 if form.errors else 200
    return render(request, "accounts/invite.html", {"organisation": organisation, "form": form}, status=status)


@require_POST
def resend_invitation(request: HttpRequest, slug: str, invitation_id: uuid.UUID) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    invitation = get_object_or_404(Invitation, pk=invitation_id, organisation=organisation)
    if invitation.accepted_at is not None:
        raise Http404
    try:
        sent = services.invite_member(
            organisation,
            email=invitation.email,
            role=invitation.role,
            first_name=invitation.first_name,
            last_name=invitation.last_name,
            actor=_user(request),
            request=request,
        )
    except ValidationError as exc:
        # The person became a member meanwhile (`pli createuser`), say: told, not a 500.
        for message in exc.messages:
            messages.error(request, message)
        return redirect("accounts:members", slug=organisation.slug)
    if sent.delivered is False:
        messages.warning(request, _("The e-mail to %(email)s could not be sent.") % {"email": invitation.email})
    else:
        messages.success(request, _("Invitation sent again to %(email)s.") % {"email": invitation.email})
    return redirect("accounts:members", slug=organisation.slug)


@require_POST
def revoke_invitation(request: HttpRequest, slug: str, invitation_id: uuid.UUID) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    invitation = get_object_or_404(Invitation, pk=invitation_id, organisation=organisation)
    services.revoke_invitation(invitation, actor=_user(request), request=request)
    messages.success(request, _("The invitation to %(email)s is cancelled.") % {"email": invitation.email})
    return redirect("accounts:members", slug=organisation.slug)


@require_http_methods(["GET", "POST"])
def member(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), pk=membership_id, organisation=organisation
    )
    form = RoleForm(_posted(request), initial={"role": membership.role})
    if request.method == "POST" and form.is_valid():
        try:
            services.change_role(membership, form.cleaned_data["role"], actor=_user(request), request=request)
        except ValidationError as exc:
            _apply_errors(form, exc)
        except Membership.DoesNotExist:
            # Removed meanwhile (by another administrator, or they left): nothing to change.
            messages.error(
                request,
                _("%(name)s is no longer a member of the organisation: the role was not changed.")
                % {"name": membership.user.display_name},
            )
            return redirect("accounts:members", slug=organisation.slug)
        else:
            messages.success(request, _("Role updated."))
            if not services.is_admin(_user(request), organisation):
                # Stepped down: the organisation's pages are no longer theirs.
                return redirect("accounts:profile")
            return redirect("accounts:members", slug=organisation.slug)
    shared = Mailbox.objects.filter(organisation=organisation, members=membership.user, is_active=True)
    return render(
        request,
        "accounts/member.html",
        {"organisation": organisation, "membership": membership, "form": form, "shared_mailboxes": shared},
        status=400 if form.errors else 200,
    )


@require_POST
def remove_member(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), pk=membership_id, organisation=organisation
    )
    try:
        services.remove_member(membership, actor=_user(request), request=request)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect("accounts:member", slug=organisation.slug, membership_id=membership.pk)
    except Membership.DoesNotExist:
        # Removed meanwhile (a second click, or another administrator): done all the same.
        pass
    messages.success(
        request, _("%(name)s is no longer a member of the organisation.") % {"name": membership.user.display_name}
    )
    return redirect("accounts:members", slug=organisation.slug)


@require_http_methods(["GET"])
def mailboxes(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    shared = (
        Mailbox.objects.filter(organisation=organisation, kind=Mailbox.Kind.ORGANISATIONAL, is_active=True)
        .prefetch_related(Prefetch("members", queryset=User.objects.order_by("last_name", "first_name")))
        .order_by("name")
    )
    return render(request, "accounts/mailboxes.html", {"organisation": organisation, "mailboxes": shared})


@require_http_methods(["GET", "POST"])
def mailbox_create(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    form = SharedMailboxForm(_posted(request), organisation=organisation)
    if request.method == "POST" and form.is_valid():
        try:
            mailbox = services.create_shared_mailbox(
                organisation,
                form.cleaned_data["name"],
                form.cleaned_data["members"],
                actor=_user(request),
                request=request,
                submission=form.cleaned_data["submission"],
            )
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, _("Shared mailbox %(address)s created.") % {"address": mailbox.address})
            return redirect("accounts:mailboxes", slug=organisation.slug)
    return render(
        request,
        "accounts/mailbox_form.html",
        {"organisation": organisation, "form": form, "mailbox": None},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def mailbox_edit(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    mailbox = get_object_or_404(
        Mailbox, pk=mailbox_id, organisation=organisation, kind=Mailbox.Kind.ORGANISATIONAL, is_active=True
    )
    initial = {"name": mailbox.name, "members": list(mailbox.members.all())}
    form = SharedMailboxForm(_posted(request), organisation=organisation, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_shared_mailbox(
                mailbox,
                name=form.cleaned_data["name"],
                members=form.cleaned_data["members"],
                actor=_user(request),
                request=request,
            )
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, _("Shared mailbox updated."))
            return redirect("accounts:mailboxes", slug=organisation.slug)
    return render(
        request,
        "accounts/mailbox_form.html",
        {"organisation": organisation, "form": form, "mailbox": mailbox},
        status=400 if form.errors else 200,
    )


def _retention_confirmed(form: OrganisationSettingsForm, organisation: Organisation) -> bool:
    """A shorter retention sends every older letter of the organisation to the trash at the
    next run, deleted for good after it: said, with how many, and confirmed first."""
    from pli.messaging.models import Delivery, Folder

    days = form.cleaned_data["retention_days"]
    current = organisation.retention_days
    if days is None or (current is not None and days >= current) or form.cleaned_data["confirm_retention"] == days:
        return True
    older = timezone.now() - datetime.timedelta(days=days)
    count = (
        Delivery.objects.filter(mailbox__organisation=organisation, sent_at__lt=older)
        .exclude(folder=Folder.TRASH)
        .values("message_id")
        .distinct()
        .count()
    )
    if not count:
        return True
    form.add_error(
        "retention_days",
        ngettext(
            "%(count)s message older than %(days)s days will go to the trash within minutes, and be deleted for good "
            "%(trash)s days later. Save again to confirm.",
            "%(count)s messages older than %(days)s days will go to the trash within minutes, and be deleted for good "
            "%(trash)s days later. Save again to confirm.",
            count,
        )
        % {"count": count, "days": days, "trash": settings.PLI_TRASH_DAYS},
    )
    # Sent with the form this time: saving it again as it stands is the confirmation.
    posted = cast(QueryDict, form.data).copy()
    posted["confirm_retention"] = str(days)
    form.data = posted
    return False


@require_http_methods(["GET", "POST"])
def organisation_settings(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = _organisation_for_admin(request, slug)
    initial = {
        "name": organisation.name,
        "share_expiry_days": organisation.share_expiry_days,
        "retention_days": organisation.retention_days,
        "phone": display_number(organisation.phone) if organisation.phone else "",
    }
    form = OrganisationSettingsForm(_posted(request), initial=initial)
    if request.method == "POST" and form.is_valid() and not _retention_confirmed(form, organisation):
        pass  # the form again, saying what the shorter period will send to the trash
    elif request.method == "POST" and form.is_valid():
        try:
            services.update_organisation_settings(
                organisation,
                name=form.cleaned_data["name"],
                share_expiry_days=form.cleaned_data["share_expiry_days"],
                retention_days=form.cleaned_data["retention_days"],
                phone=form.cleaned_data["phone"],
                actor=_user(request),
                request=request,
            )
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, _("Settings saved."))
            return redirect("accounts:settings", slug=organisation.slug)
    return render(
        request,
        "accounts/settings.html",
        {"organisation": organisation, "form": form, "trash_days": settings.PLI_TRASH_DAYS},
        status=400 if form.errors else 200,
    )


# --- Invitation links (public) ------------------------------------------------------------

_PROBLEM_STATUS = {"unknown": 404, "expired": 410, "used": 410, "revoked": 410, "account_exists": 409}


def _invitation_refused(request: HttpRequest, problem: services.InvitationProblem) -> HttpResponse:
    services.record_refused_invitation(problem, request)
    return render(
        request,
        "accounts/invitation_invalid.html",
        {"problem": problem.code},
        status=_PROBLEM_STATUS.get(problem.code, 400),
    )


@login_not_required
def too_many_requests(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "429.html", status=429)


@login_not_required
@never_cache
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponseBase:
    """GET shows the invitation and its form, and changes nothing (mail scanners open
    links); POST accepts it, once."""
    # Opening the link counts too: each refused token is written to the audit trail.
    limited = (
        not allauth_ratelimit.consume(request, app="allauth.account", action="pli_invitation", limit_get=True)
        or ratelimits.consume(request, "invitation", limit_get=True) is None
    )
    if limited:
        return too_many_requests(request)
    try:
        found = services.find_invitation(token)
    except services.InvitationProblem as problem:
        return _invitation_refused(request, problem)
    existing = services.existing_account_for(found)
    if existing is not None:
        return _invitation_for_existing_account(request, token, found, existing)
    if request.user.is_authenticated:
        # Someone else is signed in on this browser: accepting would mix two accounts.
        return render(request, "accounts/invitation_signed_in.html", {"invitation": found}, status=409)
    form = InvitationAcceptForm(
        _posted(request),
        email=found.email,
        role=found.role,
        initial={"first_name": found.first_name, "last_name": found.last_name},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = services.accept_invitation(
                token,
                password=data["password1"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                professional=services.Professional(
                    profession=data.get("profession", ""),
                    specialty=data.get("specialty", ""),
                    rpps=data.get("rpps"),
                    adeli=data.get("adeli"),
                ),
                request=request,
            )
        except services.InvitationProblem as problem:
            return _invitation_refused(request, problem)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            return _sign_in_new_member(request, user)
    return render(
        request,
        "accounts/invitation_accept.html",
        {"invitation": found, "form": form, "professions": PROFESSIONS},
        status=400 if form.errors else 200,
    )


def _invitation_for_existing_account(
    request: HttpRequest, token: str, found: Invitation, existing: User
) -> HttpResponse:
    signed_in_as_invitee = request.user.is_authenticated and request.user.pk == existing.pk
    # An account switched off when its owner left their last organisation cannot sign in,
    # so "sign in, then open the link again" would be a dead end. The link, sent to the
    # account's address and used once, switches it on again with the new membership (as it
    # would create an account); it signs nobody in: that still takes the account's password
    # and second factor. Not while someone else is signed in on this browser.
    rejoining = not existing.is_active and not request.user.is_authenticated
    if request.method == "POST" and (signed_in_as_invitee or rejoining):
        try:
            services.accept_invitation_as(token, existing, request=request)
        except services.InvitationProblem as problem:
            return _invitation_refused(request, problem)
        except ValidationError as exc:
            for message in exc.messages:
                messages.error(request, message)
            return redirect("accounts:profile")
        if rejoining:
            messages.success(
                request,
                _("You are a member of %(name)s again. Sign in with your password and your second factor.")
                % {"name": found.organisation.name},
            )
            return redirect("account_login")
        messages.success(request, _("You are now a member of %(name)s.") % {"name": found.organisation.name})
        return redirect("accounts:profile")
    return render(
        request,
        "accounts/invitation_existing.html",
        {"invitation": found, "signed_in_as_invitee": signed_in_as_invitee, "rejoining": rejoining},
        status=200 if request.method == "GET" else 403,
    )


def _sign_in_new_member(request: HttpRequest, user: User) -> HttpResponseBase:
    if user.rpps and rpps_checksum_fails(user.rpps):
        messages.warning(request, str(RPPS_CHECKSUM_WARNING))
    response: HttpResponseBase = perform_login(
        request, user, email_verification="none", redirect_url=reverse("mfa_index")
    )
    if request.user.is_authenticated:
        # The password was chosen a moment ago through a single-use link sent to the
        # address: that counts as the recent password check allauth asks before a second
        # factor can be added.
        reauthenticate_by_password(request)
    messages.info(request, _("Your account is ready. One last step: protect it with a second factor."))
    return response if isinstance(response, HttpResponseRedirect) else redirect("mfa_index")


# --- The access journal -----------------------------------------------------------------


def _journal_filters(request: HttpRequest, organisation: Organisation) -> tuple[JournalFilterForm, journal.Filters]:
    kinds = [(code, str(label)) for code, (label, _actions) in journal.KINDS.items()]
    form = JournalFilterForm(request.GET or None, organisation=organisation, kinds=kinds)
    if not form.is_valid():
        return form, journal.Filters()
    data = form.cleaned_data
    return form, journal.Filters(
        member=data.get("member"), kind=data.get("kind") or "", since=data.get("since"), until=data.get("until")
    )


def _filter_details(filters: journal.Filters) -> dict[str, Any]:
    return {
        "member": filters.member,
        "kind": filters.kind or None,
        "since": filters.since.isoformat() if filters.since else None,
        "until": filters.until.isoformat() if filters.until else None,
    }


@never_cache
@require_http_methods(["GET"])
def audit_journal(request: HttpRequest, slug: str) -> HttpResponse:
    """« Journal des accès »: who read what, when, from where, for the organisation's
    administrators. Seeing it is itself recorded."""
    organisation = _organisation_for_admin(request, slug)
    form, filters = _journal_filters(request, organisation)
    try:
        before = int(request.GET["before"]) if request.GET.get("before") else None
    except ValueError:
        before = None
    found, next_before = journal.page(organisation, filters, before)
    audit.record(
        "organisation.journal_viewed",
        actor=_user(request),
        target=organisation,
        request=request,
        details=_filter_details(filters),
    )
    query = request.GET.copy()
    query.pop("before", None)
    return render(
        request,
        "accounts/audit.html",
        {
            "organisation": organisation,
            "form": form,
            "rows": journal.rows(found),
            "next_before": next_before,
            "is_first_page": before is None,
            "query": query.urlencode(),
        },
        status=400 if form.errors else 200,
    )


_CSV_HEADERS = (
    _lazy("Date and time"),
    _lazy("Who"),
    _lazy("Action"),
    _lazy("On"),
    _lazy("IP address"),
    _lazy("Outcome"),
    _lazy("On (by name)"),
)


def _spreadsheet_safe(value: str) -> str:
    """A name that begins like a formula is shown as text by a spreadsheet, not run."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


class _Echo:
    def write(self, value: str) -> str:
        return value


@never_cache
@require_http_methods(["GET"])
def audit_export(request: HttpRequest, slug: str) -> HttpResponseBase:
    """The filtered journal as CSV (UTF-8 with a BOM, so that Excel reads the accents),
    streamed: the trail can be long."""
    organisation = _organisation_for_admin(request, slug)
    form, filters = _journal_filters(request, organisation)
    if form.errors:
        return redirect(reverse("accounts:audit", kwargs={"slug": organisation.slug}) + "?" + request.GET.urlencode())
    audit.record(
        "organisation.journal_exported",
        actor=_user(request),
        target=organisation,
        request=request,
        details=_filter_details(filters),
    )
    writer = csv.writer(_Echo(), delimiter=";")
    language = translation.get_language()

    def lines() -> Iterator[str]:
        # Streamed after the view has returned: the language is set again for the labels.
        with translation.override(language):
            yield "\ufeff" + writer.writerow([str(h) for h in _CSV_HEADERS])
            for row in journal.all_rows(organisation, filters):
                values = [
                    row.at.strftime("%d/%m/%Y %H:%M:%S"),
                    row.who,
                    row.what,
                    row.on_full,
                    row.ip,
                    row.outcome,
                    # Last, so that the columns before keep their places for existing sheets.
                    row.on_named,
                ]
                yield writer.writerow([_spreadsheet_safe(v) for v in values])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="journal-{organisation.slug}-{stamp}.csv"'
    return response
