"""The demo organisation that `make run` seeds on an empty development database.

Built through the same services as real organisations. Its accounts have a known password
and an authenticator already enrolled, whose secret is printed so that a newcomer can add
it to an app, or ask `pli dev totp EMAIL` for the current code. Production never seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.conf import settings
from django.db import transaction

from pli.accounts import services
from pli.accounts.adapter import MFAAdapter, mfa_secret_key
from pli.accounts.models import Membership, Organisation, User
from pli.audit import services as audit

DEMO_PASSWORD = "demo-pli-tisane-42"  # noqa: S105 - development demo accounts only, printed on purpose
DEMO_ORGANISATION = "Cabinet de démonstration Pli"


@dataclass(frozen=True)
class DemoPerson:
    email: str
    first_name: str
    last_name: str
    role: str
    profession: str
    specialty: str = ""
    rpps: str | None = None


# RPPS numbers of valid format and checksum, not those of real people (10000… range).
PEOPLE = (
    DemoPerson(
        "jeanne.martin@example.org",
        "Jeanne",
        "Martin",
        Membership.Role.ADMIN,
        "Médecin",
        "Médecine générale",
        "10001234565",
    ),
    DemoPerson(
        "paul.durand@example.org",
        "Paul",
        "Durand",
        Membership.Role.PRACTITIONER,
        "Médecin",
        "Cardiologie",
        "10009876540",
    ),
    DemoPerson("claire.petit@example.org", "Claire", "Petit", Membership.Role.ASSISTANT, "Secrétaire médicale"),
)


@dataclass
class DemoAccount:
    email: str
    name: str
    role: str
    mailboxes: list[str] = field(default_factory=list)
    totp_secret: str = field(default="", repr=False)


@dataclass
class Demo:
    organisation: Organisation
    accounts: list[DemoAccount]
    created: bool
    password: str = field(default=DEMO_PASSWORD, repr=False)


def is_demo_user(user: User) -> bool:
    """Member of a demo organisation and of nothing else."""
    organisations = list(Organisation.objects.filter(memberships__user=user).values_list("is_demo", flat=True))
    return bool(organisations) and all(organisations)


def totp_secret(user: User) -> str | None:
    authenticator = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
    if authenticator is None:
        return None
    return str(MFAAdapter().decrypt(authenticator.data["secret"]))


def current_totp_code(secret: str, at: float | None = None) -> str:
    from allauth.mfa import app_settings

    counter = int(time.time() if at is None else at) // app_settings.TOTP_PERIOD
    return str(format_hotp_value(hotp_value(secret, counter)))


def seed_demo() -> Demo | None:
    """Seed once on an empty database; afterwards describe the existing demo. None in
    production, or when the database already holds real organisations."""
    if settings.PLI_ENV != "development":
        return None
    existing = Organisation.objects.filter(is_demo=True).order_by("created_at").first()
    if existing is not None:
        return _describe(existing, created=False)
    if Organisation.objects.exists():
        return None
    # Created outside the transaction: a key cached by this process must exist in the database.
    mfa_secret_key()
    with transaction.atomic():
        organisation = services.create_organisation(
            name=DEMO_ORGANISATION, kind=Organisation.Kind.PRACTICE, city="Lyon", is_demo=True
        )
        # A number from the range French regulation keeps for fiction (01 99 00 xx xx).
        organisation.phone = "+33199001234"
        organisation.save(update_fields=["phone"])
        users: dict[str, User] = {}
        for person in PEOPLE:
            user = services.create_user(
                email=person.email,
                password=DEMO_PASSWORD,
                organisation=organisation,
                role=person.role,
                first_name=person.first_name,
                last_name=person.last_name,
                professional=services.Professional(
                    profession=person.profession, specialty=person.specialty, rpps=person.rpps, city="Lyon"
                ),
            )
            _enrol_totp(user)
            users[person.email] = user
        services.create_shared_mailbox(
            organisation,
            "Secrétariat",
            [users["claire.petit@example.org"], users["paul.durand@example.org"]],
            local_part="secretariat",
        )
    return _describe(organisation, created=True)


def _enrol_totp(user: User) -> None:
    TOTP.activate(user, generate_totp_secret())
    audit.record(
        "auth.second_factor.added",
        actor=None,
        target=user,
        details={"type": Authenticator.Type.TOTP.value, "demo": True},
    )


def _describe(organisation: Organisation, *, created: bool) -> Demo:
    accounts = []
    memberships = Membership.objects.filter(organisation=organisation).select_related("user").order_by("created_at")
    for membership in memberships:
        user = membership.user
        accounts.append(
            DemoAccount(
                email=user.email,
                name=user.display_name,
                role=membership.role,
                mailboxes=list(services.mailboxes_for(user).values_list("address", flat=True)),
                totp_secret=totp_secret(user) or "",
            )
        )
    return Demo(organisation=organisation, accounts=accounts, created=created)


def format_demo(demo: Demo) -> str:
    lines = [
        "Demo organisation: " + demo.organisation.name + (" (just created)" if demo.created else ""),
        "Sign in with one of these accounts (development data only):",
        "",
    ]
    for account in demo.accounts:
        lines += [
            f"  {account.name} — {account.role}",
            f"    e-mail:      {account.email}",
            f"    password:    {demo.password}",
            f"    TOTP secret: {account.totp_secret}  (add it to an authenticator app,",
            f"                 or run: pli dev totp {account.email})",
            f"    mailboxes:   {', '.join(account.mailboxes)}",
            "",
        ]
    lines.append("Each code works once: for another sign-in, wait for the next one (30 s).")
    return "\n".join(lines) + "\n"
