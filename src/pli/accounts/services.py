"""Organisations, members, mailboxes and invitations: every change to them goes through here.

Each function is one transaction that validates, writes and audits. Input errors are raised
as ``django.core.exceptions.ValidationError`` keyed by field name (forms and commands show
them next to the field); a user acting outside their organisation gets ``PermissionDenied``.

``actor`` is the user doing the change, or None for the operator's commands and the demo
seed. Other apps mostly need :func:`mailboxes_for` and :func:`user_can_use_mailbox`.
"""

from __future__ import annotations

import datetime
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from allauth.account.models import EmailAddress
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.text import slugify
from django.utils.translation import gettext as _

from pli.accounts import validators
from pli.accounts.models import MIN_RETENTION_DAYS, Invitation, Mailbox, MailboxMember, Membership, Organisation, User
from pli.audit import services as audit
from pli.core.db import db_value, fetch
from pli.notify.email import deliverable

Role = Membership.Role

# --- Reading ----------------------------------------------------------------------------


def mailboxes_for(user: User) -> QuerySet[Mailbox]:
    """Every active mailbox ``user`` may read and send from: their personal one, and the
    shared mailboxes of their organisations that name them as a member."""
    if not user.is_authenticated or not user.is_active:
        return Mailbox.objects.none()
    shared = shared_mailbox_memberships(user).values("mailbox_id")
    return Mailbox.objects.filter(is_active=True).filter(Q(owner=user) | Q(pk__in=shared)).order_by("-kind", "address")


def mailbox_list(user: User) -> list[Mailbox]:
    """:func:`mailboxes_for`, as a list, from SQL compiled once (pli.core.db.fetch): every
    page's navigation and the API's list of mailboxes ask for it, and compiling the query
    cost the ORM more than running it."""
    if not user.is_authenticated or not user.is_active:
        return []
    pk = db_value(User, "id", user.pk)
    return fetch("accounts.mailbox_list", [pk, Mailbox.Kind.ORGANISATIONAL, pk, pk], lambda: mailboxes_for(user))


def shared_mailbox_memberships(user: User) -> QuerySet[MailboxMember]:
    """``user``'s places in shared mailboxes of the organisations they belong to."""
    return MailboxMember.objects.filter(
        user=user,
        mailbox__kind=Mailbox.Kind.ORGANISATIONAL,
        # Leaving an organisation removes its shared mailboxes, even if a row lingers.
        mailbox__organisation__memberships__user=user,
    )


def user_can_use_mailbox(user: User, mailbox: Mailbox) -> bool:
    return mailboxes_for(user).filter(pk=mailbox.pk).exists()


def organisations_for(user: User) -> QuerySet[Organisation]:
    return Organisation.objects.filter(memberships__user=user).order_by("name")


def administered_organisations(user: User) -> QuerySet[Organisation]:
    return Organisation.objects.filter(memberships__user=user, memberships__role=Role.ADMIN).order_by("name")


def is_admin(user: User | None, organisation: Organisation) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return Membership.objects.filter(user=user, organisation=organisation, role=Role.ADMIN).exists()


def _require_admin(actor: User | None, organisation: Organisation) -> None:
    """Services check authority themselves: a view that forgets must still not let an
    admin of one organisation change another. None is the operator (commands, seed)."""
    if actor is not None and not is_admin(actor, organisation):
        raise PermissionDenied("not an administrator of this organisation")


# --- Names and addresses ----------------------------------------------------------------


def _ascii_words(text: str) -> str:
    """'Élodie-Anne d'Arc' -> 'elodie-anne-d-arc': what a mailbox address can carry."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_text = ascii_text.replace("ß", "ss").replace("æ", "ae").replace("œ", "oe").replace("ø", "o")
    ascii_text = ascii_text.encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")


def _unused_address(local: str) -> str:
    domain = settings.PLI_MAIL_DOMAIN
    address = f"{local}@{domain}"
    suffix = 1
    while Mailbox.objects.filter(address=address).exists():
        suffix += 1
        address = f"{local}{suffix}@{domain}"
    return address


def personal_address_local_part(first_name: str, last_name: str) -> str:
    parts = [p for p in (_ascii_words(first_name)[:40], _ascii_words(last_name)[:40]) if p]
    return ".".join(parts) or "utilisateur"


def _create_mailbox(**fields: Any) -> Mailbox:
    """Insert with the first free address; a concurrent insert of the same address loses
    the race on the unique constraint and takes the next number."""
    local = fields.pop("local")
    for _attempt in range(20):
        address = _unused_address(local)
        try:
            with transaction.atomic():
                return Mailbox.objects.create(address=address, **fields)
        except IntegrityError:
            if Mailbox.objects.filter(address=address).exists():
                continue
            raise
    raise RuntimeError("could not find a free mailbox address")


def _unused_slug(name: str) -> str:
    base = slugify(_ascii_words(name))[:50].strip("-") or "organisation"
    slug = base
    suffix = 1
    while Organisation.objects.filter(slug=slug).exists():
        suffix += 1
        slug = f"{base}-{suffix}"
    return slug


# --- Organisations ----------------------------------------------------------------------


def _clean_name(value: str, field_name: str, label: str, max_length: int) -> str:
    cleaned = " ".join((value or "").split())
    if not cleaned:
        raise ValidationError({field_name: _("Required: %(label)s.") % {"label": label}})
    if len(cleaned) > max_length:
        raise ValidationError(
            {field_name: _("Too long: %(label)s (at most %(max)d characters).") % {"label": label, "max": max_length}}
        )
    return cleaned


def create_organisation(
    *,
    name: str,
    kind: str = Organisation.Kind.PRACTICE,
    finess: str | None = None,
    siret: str | None = None,
    city: str = "",
    is_demo: bool = False,
    allow_same_name: bool = True,
    actor: User | None = None,
    request: HttpRequest | None = None,
) -> Organisation:
    """A new organisation. Without ``allow_same_name``, one of the same name and city is
    refused, naming it (`pli createorg` run twice is a retried script, not a new practice)."""
    name = _clean_name(name, "name", _("organisation name"), 200)
    if kind not in Organisation.Kind.values:
        raise ValidationError({"kind": _("Unknown kind of organisation.")})
    errors: dict[str, list[Any]] = {}
    if finess:
        try:
            finess = validators.normalise_finess(finess)
        except ValidationError as exc:
            errors["finess"] = exc.error_list
    if siret:
        try:
            siret = validators.normalise_siret(siret)
        except ValidationError as exc:
            errors["siret"] = exc.error_list
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        if finess and Organisation.objects.filter(finess=finess).exists():
            raise ValidationError({"finess": _("An organisation with this FINESS number already exists.")})
        if siret and Organisation.objects.filter(siret=siret).exists():
            raise ValidationError({"siret": _("An organisation with this SIRET number already exists.")})
        same = Organisation.objects.filter(name__iexact=name, city__iexact=" ".join(city.split())).first()
        if same is not None and not allow_same_name:
            raise ValidationError(
                {
                    "name": _(
                        "An organisation of this name and city already exists (short name %(slug)s); "
                        "add --allow-same-name if this is another one."
                    )
                    % {"slug": same.slug}
                }
            )
        organisation = Organisation.objects.create(
            name=name,
            slug=_unused_slug(name),
            kind=kind,
            finess=finess or None,
            siret=siret or None,
            city=" ".join(city.split())[:120],
            is_demo=is_demo,
        )
        audit.record(
            "organisation.created",
            actor=actor,
            target=organisation,
            request=request,
            details={"demo": is_demo},
        )
    return organisation


# --- People -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Professional:
    """What a person says about their practice (all optional for assistants)."""

    profession: str = ""
    specialty: str = ""
    rpps: str | None = None
    adeli: str | None = None
    city: str = ""


def _clean_professional(pro: Professional) -> Professional:
    errors: dict[str, list[Any]] = {}
    rpps = adeli = None
    if pro.rpps:
        try:
            rpps = validators.normalise_rpps(pro.rpps)
        except ValidationError as exc:
            errors["rpps"] = exc.error_list
    if pro.adeli:
        try:
            adeli = validators.normalise_adeli(pro.adeli)
        except ValidationError as exc:
            errors["adeli"] = exc.error_list
    if rpps and adeli:
        errors["adeli"] = [ValidationError(_("Enter either an RPPS or an ADELI number, not both."))]
    if errors:
        raise ValidationError(errors)
    if rpps and User.objects.filter(rpps=rpps).exists():
        raise ValidationError({"rpps": _("Another account already uses this RPPS number.")})
    if adeli and User.objects.filter(adeli=adeli).exists():
        raise ValidationError({"adeli": _("Another account already uses this ADELI number.")})
    return Professional(
        profession=" ".join(pro.profession.split())[:80],
        specialty=" ".join(pro.specialty.split())[:120],
        rpps=rpps,
        adeli=adeli,
        city=" ".join(pro.city.split())[:120],
    )


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
        if not deliverable(email):  # an invitation could not be sent to it
            raise ValidationError("not deliverable")
    except ValidationError:
        raise ValidationError({"email": _("Enter a valid e-mail address.")}) from None
    return email


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ValidationError({"role": _("The role must be admin, practitioner or assistant.")})


def create_user(
    *,
    email: str,
    password: str,
    organisation: Organisation,
    role: str,
    first_name: str,
    last_name: str,
    professional: Professional | None = None,
    actor: User | None = None,
    request: HttpRequest | None = None,
) -> User:
    """A new account, member of ``organisation`` with ``role``, with its personal mailbox
    ``firstname.lastname@<PLI_MAIL_DOMAIN>``. The person must still enrol a second factor
    at first sign-in."""
    _require_admin(actor, organisation)
    email = normalise_email(email)
    _check_role(role)
    first_name = _clean_name(first_name, "first_name", _("first name"), 150)
    last_name = _clean_name(last_name, "last_name", _("last name"), 150)
    with transaction.atomic():
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError({"email": _("An account already uses this e-mail address.")})
        # Report every mistake at once, not one per attempt.
        errors: dict[str, list[ValidationError]] = {}
        try:
            pro = _clean_professional(professional or Professional())
        except ValidationError as exc:
            errors.update(exc.error_dict)
            pro = Professional()
        user = User(
            email=email,
            first_name=first_name,
            last_name=last_name,
            profession=pro.profession,
            specialty=pro.specialty,
            rpps=pro.rpps,
            adeli=pro.adeli,
            city=pro.city,
        )
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            errors["password"] = exc.error_list
        if errors:
            raise ValidationError(errors)
        user.set_password(password)
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:
            # Another account took the address or the number since the checks above (the
            # same person accepting two practices' invitations at once): refused as they are.
            if User.objects.filter(email__iexact=email).exists():
                raise ValidationError({"email": _("An account already uses this e-mail address.")}) from None
            _clean_professional(pro)
            raise
        # allauth's record of the address: proven by the invitation link or vouched for by
        # the operator, so marked verified (second-factor enrolment requires it).
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        Membership.objects.create(user=user, organisation=organisation, role=role)
        _create_mailbox(
            local=personal_address_local_part(first_name, last_name),
            name=user.display_name,
            kind=Mailbox.Kind.PERSONAL,
            organisation=organisation,
            owner=user,
        )
        audit.record(
            "user.created",
            actor=actor,
            target=user,
            request=request,
            details={"organisation": organisation.pk, "role": role},
        )
        audit.record(
            "membership.added",
            actor=actor,
            target=user,
            request=request,
            details={"organisation": organisation.pk, "role": role},
        )
    return user


def add_member(
    organisation: Organisation,
    user: User,
    role: str,
    *,
    actor: User | None = None,
    request: HttpRequest | None = None,
) -> Membership:
    """Make an existing account a member of another organisation."""
    _require_admin(actor, organisation)
    _check_role(role)
    with transaction.atomic():
        # The account's row locked first (FOR NO KEY UPDATE, as _lock_membership explains):
        # two invitations accepted at once join one after the other, and the second finds
        # the membership here instead of failing on its unique constraint at COMMIT.
        type(user).objects.select_for_update(no_key=True).filter(pk=user.pk).first()
        if Membership.objects.filter(user=user, organisation=organisation).exists():
            raise ValidationError({"email": _("This person is already a member of the organisation.")})
        membership = Membership.objects.create(user=user, organisation=organisation, role=role)
        # From the database, not the instance (which may predate a removal): an account
        # switched off when it lost its last organisation is switched on again.
        reactivated = type(user).objects.filter(pk=user.pk, is_active=False).update(is_active=True) > 0
        user.is_active = True
        # A personal mailbox left behind in an organisation the person is no longer in (they
        # were removed from their last one) comes back in this one, not in the old one.
        Mailbox.objects.filter(owner=user).exclude(organisation__memberships__user=user).update(
            organisation=organisation
        )
        Mailbox.objects.filter(owner=user).update(is_active=True)
        audit.record(
            "membership.added",
            actor=actor,
            target=user,
            request=request,
            # As membership.removed says ``deactivated``: the account and its mailbox are on again.
            details={"organisation": organisation.pk, "role": role, "reactivated": reactivated},
        )
    return membership


def _lock_membership(membership: Membership, *related: str) -> Membership:
    """The membership read again with ``related``, all locked until the transaction ends:
    the organisation's row too, so that two changes to its administrators are one after
    the other. FOR NO KEY UPDATE, not FOR UPDATE: a share, message or invitation committing
    meanwhile holds the audit trail's head and then takes a key-share lock on these rows
    (its foreign keys), which FOR UPDATE would refuse until this change, itself waiting for
    the head, ends: a deadlock."""
    return Membership.objects.select_for_update(no_key=True).select_related(*related).get(pk=membership.pk)


def _other_admins(membership: Membership) -> bool:
    return (
        Membership.objects.filter(organisation_id=membership.organisation_id, role=Role.ADMIN, user__is_active=True)
        .exclude(pk=membership.pk)
        .exists()
    )


def change_role(
    membership: Membership, role: str, *, actor: User | None = None, request: HttpRequest | None = None
) -> Membership:
    _check_role(role)
    with transaction.atomic():
        membership = _lock_membership(membership, "organisation")
        _require_admin(actor, membership.organisation)
        previous = membership.role
        if previous == role:
            return membership
        if previous == Role.ADMIN and not _other_admins(membership):
            raise ValidationError(
                {"role": _("An organisation needs at least one administrator: appoint another one first.")}
            )
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record(
            "membership.role_changed",
            actor=actor,
            target=membership.user,
            request=request,
            details={"organisation": membership.organisation_id, "from": previous, "to": role},
        )
    return membership


def remove_member(membership: Membership, *, actor: User | None = None, request: HttpRequest | None = None) -> None:
    """Remove someone from an organisation: they leave its shared mailboxes; an account
    left with no organisation is deactivated (kept for the audit trail, never deleted)."""
    with transaction.atomic():
        membership = _lock_membership(membership, "organisation", "user")
        organisation, user = membership.organisation, membership.user
        _require_admin(actor, organisation)
        if actor is not None and actor.pk == user.pk:
            raise ValidationError(_("You cannot remove yourself: ask another administrator."))
        if membership.role == Role.ADMIN and not _other_admins(membership):
            raise ValidationError(_("An organisation needs at least one administrator: appoint another one first."))
        left = list(
            MailboxMember.objects.filter(user=user, mailbox__organisation=organisation).select_related("mailbox")
        )
        MailboxMember.objects.filter(pk__in=[row.pk for row in left]).delete()
        membership.delete()
        remaining = Membership.objects.filter(user=user).select_related("organisation").order_by("created_at").first()
        personal = Mailbox.objects.filter(owner=user).first()
        if remaining is None:
            user.is_active = False
            user.save(update_fields=["is_active"])
            if personal is not None:
                personal.is_active = False
                personal.save(update_fields=["is_active"])
            _end_access(user, actor, request)
        elif personal is not None and personal.organisation_id == organisation.pk:
            personal.organisation = remaining.organisation
            personal.save(update_fields=["organisation"])
        audit.record(
            "membership.removed",
            actor=actor,
            target=user,
            request=request,
            details={"organisation": organisation.pk, "deactivated": remaining is None},
        )
        for row in left:
            _record_mailbox_access("mailbox.member_removed", row.mailbox, [user.pk], actor, request)


def _end_access(user: User, actor: User | None, request: HttpRequest | None) -> None:
    """An account switched off ends its sessions and revokes its API tokens. Switching off
    alone only suspends them, and a new invitation switches the account on again
    (add_member): a token left in the former practice's software, or a browser left signed
    in there, would then open the mailboxes of the organisation the person joined."""
    from pli.api.services import revoke_all_tokens

    # Done by the administrator, or by the operator's command (actor None): not by the person.
    revoke_all_tokens(user, "deactivated", request=request, actor=actor or ("system", ""))
    for session in UserSession.objects.filter(user=user):
        session.end()


# --- Shared mailboxes -------------------------------------------------------------------


def _check_members(organisation: Organisation, members: Iterable[User]) -> list[User]:
    members = list(dict.fromkeys(members))
    member_ids = set(
        Membership.objects.filter(organisation=organisation, user__in=members, user__is_active=True).values_list(
            "user_id", flat=True
        )
    )
    if any(user.pk not in member_ids for user in members):
        raise ValidationError({"members": _("Every member of a shared mailbox must belong to the organisation.")})
    return members


def _check_unique_mailbox_name(organisation: Organisation, name: str, *, exclude: Mailbox | None = None) -> None:
    """Two shared mailboxes « Secrétariat » in one practice were offered side by side in the
    directory, the empty one first, and letters went where nobody reads."""
    others = Mailbox.objects.filter(organisation=organisation, kind=Mailbox.Kind.ORGANISATIONAL, is_active=True)
    if exclude is not None:
        others = others.exclude(pk=exclude.pk)
    # « secretariat » beside « Secrétariat » is the same mailbox to whoever picks one.
    same = next((other for other in others.values_list("name", flat=True) if _folded(other) == _folded(name)), None)
    if same is not None:
        raise ValidationError(
            {"name": _("The organisation already has a shared mailbox named %(name)s.") % {"name": same}}
        )


def _folded(name: str) -> str:
    """A name without case or accents."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def create_shared_mailbox(
    organisation: Organisation,
    name: str,
    members: Iterable[User],
    *,
    local_part: str | None = None,
    actor: User | None = None,
    request: HttpRequest | None = None,
    submission: str = "",
) -> Mailbox:
    """A shared mailbox ``<name>.<org-slug>@<PLI_MAIL_DOMAIN>`` (e.g. secretariat.cabinet-x@…).
    The web form's ``submission`` already used in the organisation is the same form sent
    twice: the mailbox it made is returned, nothing else is done."""
    _require_admin(actor, organisation)
    name = _clean_name(name, "name", _("mailbox name"), 120)
    local = _ascii_words(local_part or name)[:40] or "boite"
    with transaction.atomic():
        if submission:
            # Two sent at once are one after the other (the organisation's row, as for
            # invite_member): the second finds the first's mailbox.
            Organisation.objects.select_for_update(no_key=True).filter(pk=organisation.pk).first()
            earlier = Mailbox.objects.filter(organisation=organisation, submission=submission).first()
            if earlier is not None:
                return earlier
        _check_unique_mailbox_name(organisation, name)
        checked = _check_members(organisation, members)
        mailbox = _create_mailbox(
            local=f"{local}.{organisation.slug}",
            name=name,
            kind=Mailbox.Kind.ORGANISATIONAL,
            organisation=organisation,
            owner=None,
            submission=submission,
        )
        MailboxMember.objects.bulk_create([MailboxMember(mailbox=mailbox, user=user) for user in checked])
        audit.record(
            "mailbox.created",
            actor=actor,
            target=mailbox,
            request=request,
            details={"organisation": organisation.pk, "members": len(checked)},
        )
        _record_mailbox_access("mailbox.member_added", mailbox, [user.pk for user in checked], actor, request)
    return mailbox


def _record_mailbox_access(
    action: str, mailbox: Mailbox, user_ids: Iterable[int], actor: User | None, request: HttpRequest | None
) -> None:
    """One event per person given or losing access to a shared mailbox, naming them: a
    count alone would not tell who could read its messages at a given time."""
    targets = [("accounts.user", str(pk)) for pk in sorted(user_ids)]
    audit.record_each(
        action,
        actor=actor,
        targets=targets,
        request=request,
        details={"mailbox": str(mailbox.pk), "organisation": mailbox.organisation_id},
    )


def update_shared_mailbox(
    mailbox: Mailbox,
    *,
    name: str,
    members: Iterable[User],
    actor: User | None = None,
    request: HttpRequest | None = None,
) -> Mailbox:
    """Rename a shared mailbox and set its members (its address never changes: people
    outside already write to it)."""
    if mailbox.kind != Mailbox.Kind.ORGANISATIONAL:
        raise ValidationError(_("Only shared mailboxes have members to manage."))
    name = _clean_name(name, "name", _("mailbox name"), 120)
    with transaction.atomic():
        # FOR NO KEY UPDATE: a send committing a copy to this mailbox holds the audit trail's
        # head and then takes a key-share lock on this row (its foreign key), which FOR
        # UPDATE would refuse until this edit, itself waiting for the head, ends: a deadlock.
        mailbox = Mailbox.objects.select_for_update(no_key=True).select_related("organisation").get(pk=mailbox.pk)
        _require_admin(actor, mailbox.organisation)
        if name.casefold() != mailbox.name.casefold():
            _check_unique_mailbox_name(mailbox.organisation, name, exclude=mailbox)
        wanted = {user.pk for user in _check_members(mailbox.organisation, members)}
        current = set(MailboxMember.objects.filter(mailbox=mailbox).values_list("user_id", flat=True))
        MailboxMember.objects.filter(mailbox=mailbox, user_id__in=current - wanted).delete()
        MailboxMember.objects.bulk_create([MailboxMember(mailbox=mailbox, user_id=pk) for pk in wanted - current])
        if name != mailbox.name:
            mailbox.name = name
            mailbox.save(update_fields=["name"])
            audit.record(
                "mailbox.renamed",
                actor=actor,
                target=mailbox,
                request=request,
                details={"organisation": mailbox.organisation_id},
            )
        if wanted != current:
            audit.record(
                "mailbox.members_changed",
                actor=actor,
                target=mailbox,
                request=request,
                details={"added": len(wanted - current), "removed": len(current - wanted)},
            )
        _record_mailbox_access("mailbox.member_added", mailbox, wanted - current, actor, request)
        _record_mailbox_access("mailbox.member_removed", mailbox, current - wanted, actor, request)
    return mailbox


# --- Policies ---------------------------------------------------------------------------

# A patient link is valid 1 to 90 days (pli.sharing: MAX_EXPIRY_DAYS).
MAX_SHARE_EXPIRY_DAYS = 90
# Retention: never under a month (MIN_RETENTION_DAYS), never over a century.
MAX_RETENTION_DAYS = 36500


def update_organisation_settings(
    organisation: Organisation,
    *,
    name: str,
    share_expiry_days: int,
    retention_days: int | None,
    phone: str | None = None,
    actor: User | None = None,
    request: HttpRequest | None = None,
) -> Organisation:
    """The organisation's name and policies (product.md: the admin sets expiry and
    retention): how long a new patient link is valid by default, and how long messages and
    ended patient shares are kept (None: until their users delete them); and the telephone
    number patients are given to call (None: unchanged, "": none)."""
    name = _clean_name(name, "name", _("organisation name"), 200)
    try:
        phone = None if phone is None else validators.normalise_phone(phone)
    except ValidationError as exc:
        raise ValidationError({"phone": exc.messages}) from None
    if not 1 <= share_expiry_days <= MAX_SHARE_EXPIRY_DAYS:
        raise ValidationError({"share_expiry_days": _("Between 1 and 90 days.")})
    if retention_days is not None and not MIN_RETENTION_DAYS <= retention_days <= MAX_RETENTION_DAYS:
        raise ValidationError({"retention_days": _("Between 30 and 36,500 days, or empty to keep everything.")})
    with transaction.atomic():
        # FOR NO KEY UPDATE: memberships, mailboxes and shares committing meanwhile point to
        # this row (see update_shared_mailbox).
        organisation = Organisation.objects.select_for_update(no_key=True).get(pk=organisation.pk)
        _require_admin(actor, organisation)
        wanted: dict[str, Any] = {
            "name": name,
            "share_expiry_days": share_expiry_days,
            "retention_days": retention_days,
        }
        if phone is not None:
            wanted["phone"] = phone
        changed = [field for field, value in wanted.items() if getattr(organisation, field) != value]
        if changed:
            for field in changed:
                setattr(organisation, field, wanted[field])
            organisation.save(update_fields=changed)
            audit.record(
                "organisation.settings_changed",
                actor=actor,
                target=organisation,
                request=request,
                details={
                    "changed": ",".join(changed),
                    "share_expiry_days": share_expiry_days,
                    "retention_days": retention_days or 0,
                },
            )
    return organisation


# --- Sessions -----------------------------------------------------------------------------


def end_sessions(user: User, sessions: Iterable[UserSession], *, request: HttpRequest | None = None) -> int:
    """End some of ``user``'s signed-in sessions (allauth.usersessions rows)."""
    ended = 0
    with transaction.atomic():
        for session in sessions:
            if session.user_id != user.pk:
                raise PermissionDenied("not your session")
            session.end()
            ended += 1
        audit.record("auth.sessions.ended", actor=user, target=user, request=request, details={"count": ended})
    return ended


# --- Invitations ------------------------------------------------------------------------


class InvitationProblem(Exception):
    """The link can't be used; ``code`` is unknown, expired, used or revoked."""

    def __init__(self, code: str, invitation: Invitation | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.invitation = invitation


def _token_hash(token: str, secret: str | None = None) -> str:
    # Keyed, so that a copy of the table can't be matched against guessed tokens, and
    # fixed-length hex for the unique index.
    return salted_hmac("pli.accounts.invitation", token, secret=secret, algorithm="sha256").hexdigest()


def _token_hashes(token: str) -> list[str]:
    """The token's hash under the secret key and each earlier one still accepted
    (PLI_SECRET_KEY_FALLBACKS): an invitation sent before the key changed still opens."""
    return [_token_hash(token, secret) for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]]


@dataclass
class InvitationSent:
    invitation: Invitation
    token: str = field(repr=False)
    # The invitation still pending for the same address, which this one replaced.
    replaced: Invitation | None = None
    # Set after commit: False when the relay refused the e-mail (the admin can resend).
    delivered: bool | None = None


def invitation_url(token: str) -> str:
    return settings.PUBLIC_URL + reverse("accounts:invitation", args=[token])


def invite_member(
    organisation: Organisation,
    *,
    email: str,
    role: str,
    first_name: str = "",
    last_name: str = "",
    actor: User | None = None,
    request: HttpRequest | None = None,
) -> InvitationSent:
    """Invite someone by e-mail; a new invitation to the same address replaces the pending one
    (returned as ``replaced``, so that the administrator is told; names left blank are taken
    from it rather than lost)."""
    _require_admin(actor, organisation)
    email = normalise_email(email)
    _check_role(role)
    token = secrets.token_urlsafe(32)  # 256 bits
    with transaction.atomic():
        # The organisation's row locked first (FOR NO KEY UPDATE, as _lock_membership
        # explains): two administrators inviting the same address at once take turns, and
        # the second replaces the first's invitation instead of leaving both pending.
        Organisation.objects.select_for_update(no_key=True).filter(pk=organisation.pk).first()
        if Membership.objects.filter(organisation=organisation, user__email__iexact=email).exists():
            raise ValidationError({"email": _("This person is already a member of the organisation.")})
        now = timezone.now()
        pending = Invitation.objects.filter(
            organisation=organisation,
            email=email,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
        )
        previous = pending.order_by("-created_at").first()
        replaced = pending.update(revoked_at=now)
        first_name, last_name = " ".join(first_name.split()), " ".join(last_name.split())
        if previous is not None and not (first_name or last_name):
            first_name, last_name = previous.first_name, previous.last_name
        invitation = Invitation.objects.create(
            organisation=organisation,
            email=email,
            role=role,
            first_name=first_name[:150],
            last_name=last_name[:150],
            token_hash=_token_hash(token),
            invited_by=actor,
            expires_at=now + datetime.timedelta(days=settings.PLI_INVITATION_DAYS),
        )
        audit.record(
            "invitation.sent",
            actor=actor,
            target=invitation,
            request=request,
            details={"organisation": organisation.pk, "role": role, "replaced": replaced},
        )
        result = InvitationSent(invitation=invitation, token=token, replaced=previous)
        transaction.on_commit(lambda: _deliver_invitation(result, actor))
    return result


def _deliver_invitation(result: InvitationSent, inviter: User | None) -> None:
    from pli.notify.email import send_templated

    invitation = result.invitation
    # The invitee's language is unknown: French, the instance's language.
    with translation.override(settings.LANGUAGE_CODE):
        result.delivered = send_templated(
            to=invitation.email,
            template_prefix="accounts/email/invitation",
            context={
                "invitation": invitation,
                "organisation": invitation.organisation,
                "inviter": inviter.display_name if inviter else "",
                "url": invitation_url(result.token),
                "expires_at": invitation.expires_at,
            },
        )


def find_invitation(token: str) -> Invitation:
    """The pending invitation behind ``token``; raises InvitationProblem otherwise. Reads only."""
    if not token or len(token) > 100:
        raise InvitationProblem("unknown")
    invitation = Invitation.objects.select_related("organisation").filter(token_hash__in=_token_hashes(token)).first()
    if invitation is None:
        raise InvitationProblem("unknown")
    if invitation.accepted_at is not None:
        raise InvitationProblem("used", invitation)
    if invitation.revoked_at is not None:
        raise InvitationProblem("revoked", invitation)
    if invitation.expires_at <= timezone.now():
        raise InvitationProblem("expired", invitation)
    return invitation


def record_refused_invitation(problem: InvitationProblem, request: HttpRequest | None) -> None:
    audit.record(
        "invitation.refused",
        actor=("anonymous", ""),
        target=problem.invitation,
        request=request,
        outcome=audit.DENIED,
        details={"reason": problem.code},
    )


def existing_account_for(invitation: Invitation) -> User | None:
    return User.objects.filter(email__iexact=invitation.email).first()


def accept_invitation(
    token: str,
    *,
    password: str,
    first_name: str,
    last_name: str,
    professional: Professional | None = None,
    request: HttpRequest | None = None,
) -> User:
    """Create the invitee's account from a pending invitation, exactly once."""
    with transaction.atomic():
        invitation = _lock_pending(token)
        if existing_account_for(invitation) is not None:
            raise InvitationProblem("account_exists", invitation)
        user = create_user(
            email=invitation.email,
            password=password,
            organisation=invitation.organisation,
            role=invitation.role,
            first_name=first_name,
            last_name=last_name,
            professional=professional,
            request=request,
        )
        _mark_accepted(invitation, user, request)
    return user


def accept_invitation_as(token: str, user: User, *, request: HttpRequest | None = None) -> Membership:
    """An existing account (signed in, same e-mail address) joins the inviting organisation."""
    with transaction.atomic():
        invitation = _lock_pending(token)
        if user.email.lower() != invitation.email.lower():
            raise InvitationProblem("other_account", invitation)
        membership = add_member(invitation.organisation, user, invitation.role, request=request)
        _mark_accepted(invitation, user, request)
    return membership


def _lock_pending(token: str) -> Invitation:
    # Re-read under a row lock: two simultaneous submissions can't both accept.
    invitation = find_invitation(token)
    Invitation.objects.select_for_update().filter(pk=invitation.pk).first()
    return find_invitation(token)


def _mark_accepted(invitation: Invitation, user: User, request: HttpRequest | None) -> None:
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit.record(
        "invitation.accepted",
        actor=user,
        target=invitation,
        request=request,
        details={"organisation": invitation.organisation_id, "role": invitation.role},
    )


def revoke_invitation(invitation: Invitation, *, actor: User | None = None, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        # FOR NO KEY UPDATE, as _lock_membership explains.
        invitation = (
            Invitation.objects.select_for_update(no_key=True).select_related("organisation").get(pk=invitation.pk)
        )
        _require_admin(actor, invitation.organisation)
        if invitation.accepted_at is not None or invitation.revoked_at is not None:
            return
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit.record(
            "invitation.revoked",
            actor=actor,
            target=invitation,
            request=request,
            details={"organisation": invitation.organisation_id},
        )
