"""Organisations and members for tests and benchmarks, made through the real services.

Every page needs a signed-in user *with a second factor* (SecondFactorRequiredMiddleware
redirects the others to enrolment), so :func:`make_user` enrols an authenticator app with a
known secret by default; :func:`totp_code` gives its current code.

    org = make_organisation()
    doctor = make_user(org, role="practitioner")
    client.force_login(doctor)
"""

from __future__ import annotations

import itertools
from typing import Any

from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP

from pli.accounts import services
from pli.accounts.models import Organisation, User

TEST_PASSWORD = "correct horse battery staple"  # noqa: S105 - test accounts only
# A fixed RFC 4648 base32 secret: tests compute codes from it.
TEST_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105

_counter = itertools.count(1)


def make_organisation(name: str | None = None, **fields: Any) -> Organisation:
    return services.create_organisation(name=name or f"Cabinet {next(_counter)}", **fields)


def make_user(
    organisation: Organisation | None = None,
    *,
    role: str = "practitioner",
    email: str | None = None,
    first_name: str | None = None,
    last_name: str = "Testeur",
    password: str = TEST_PASSWORD,
    second_factor: bool = True,
    professional: services.Professional | None = None,
) -> User:
    number = next(_counter)
    user = services.create_user(
        email=email or f"user{number}@example.org",
        password=password,
        organisation=organisation or make_organisation(),
        role=role,
        first_name=first_name or f"Camille{number}",
        last_name=last_name,
        professional=professional,
    )
    if second_factor:
        enrol_totp(user)
    return user


def enrol_totp(user: User, secret: str = TEST_TOTP_SECRET) -> Authenticator:
    return TOTP.activate(user, secret).instance


def totp_code(secret: str = TEST_TOTP_SECRET, at: float | None = None) -> str:
    from pli.accounts.demo import current_totp_code

    return current_totp_code(secret, at)
