"""Test data for messaging: organisations, practitioners with their personal mailbox,
shared mailboxes, and a signed-in web client (second factor enrolled)."""

from __future__ import annotations

import datetime
import itertools
import uuid
from typing import Any

import factory
from allauth.mfa.models import Authenticator
from django.test import Client

from pli.accounts.models import Mailbox, MailboxMember, Membership, Organisation, User

_counter = itertools.count(1)
DOMAIN = "pli.localhost"


class OrganisationFactory(factory.django.DjangoModelFactory):  # type: ignore[misc]
    class Meta:
        model = Organisation

    name = factory.Sequence(lambda n: f"Cabinet {n}")
    slug = factory.Sequence(lambda n: f"cabinet-{n}")


class UserFactory(factory.django.DjangoModelFactory):  # type: ignore[misc]
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.fr")
    first_name = factory.Sequence(lambda n: f"Camille{n}")
    last_name = "Martin"
    profession = "Médecin"


def practitioner(organisation: Organisation | None = None, *, role: str = Membership.Role.PRACTITIONER) -> User:
    """A user, member of ``organisation``, with a personal mailbox (its owner reads it; no
    member row, as accounts.services.create_user makes it)."""
    organisation = organisation or OrganisationFactory()
    user = UserFactory()
    Membership.objects.create(user=user, organisation=organisation, role=role)
    n = next(_counter)
    Mailbox.objects.create(
        address=f"{user.first_name.lower()}.{n}@{DOMAIN}",
        name=user.display_name,
        kind=Mailbox.Kind.PERSONAL,
        organisation=organisation,
        owner=user,
    )
    return user


def personal_mailbox(user: User) -> Mailbox:
    return Mailbox.objects.get(owner=user)


def shared_mailbox(organisation: Organisation, members: list[User], name: str = "Secrétariat") -> Mailbox:
    mailbox = Mailbox.objects.create(
        address=f"secretariat.{next(_counter)}@{DOMAIN}",
        name=name,
        kind=Mailbox.Kind.ORGANISATIONAL,
        organisation=organisation,
    )
    for member in members:
        MailboxMember.objects.create(mailbox=mailbox, user=member)
    return mailbox


def enrol_second_factor(user: User) -> None:
    """Pli requires a second factor before any page; tests sign in as an enrolled user."""
    Authenticator.objects.get_or_create(
        user=user, type=Authenticator.Type.TOTP, defaults={"data": {"secret": "JBSWY3DPEHPK3PXP"}}
    )


def web_client(user: User) -> Client:
    enrol_second_factor(user)
    client = Client()
    client.force_login(user)
    return client


def valid_ins(prefix: str = "2840299123456") -> str:
    """A NIR with its correct key (13 characters + 2-digit key)."""
    from stdnum.fr import nir

    return prefix + nir.calc_check_digits(prefix)


def patient_fields(**overrides: Any) -> dict[str, str]:
    fields = {
        "patient_ins": valid_ins(),
        "patient_family_name": "Durand",
        "patient_given_names": "Élodie Marie",
        "patient_birth_date": "1984-02-15",
        "patient_sex": "F",
    }
    fields.update(overrides)
    return fields


def unique_marker(label: str) -> str:
    return f"{label}{uuid.uuid4().hex[:12]}"


def today() -> datetime.date:
    return datetime.date.today()


def api_client(user: User, scopes: list[str] | None = None) -> Client:
    """A client that sends ``Authorization: Bearer`` with a fresh token of ``user``."""
    from pli.api.services import create_token

    _token, raw = create_token(user, "test", scopes)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
