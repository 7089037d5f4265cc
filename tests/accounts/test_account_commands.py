"""Operator commands (`pli createorg`, `pli createuser`, `pli dev totp`) and the demo seed."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from pli.accounts import demo
from pli.accounts.models import Mailbox, Membership, Organisation, User
from pli.testing.accounts import make_organisation, make_user


def run(*args: str, stdin: str = "") -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command(*args, stdout=out, stderr=err)
    finally:
        sys.stdin = old_stdin
    return out.getvalue(), err.getvalue()


def test_createorg_prints_the_slug_last(db: None) -> None:
    out, _ = run("createorg", "--name", "Cabinet du Port", "--siret", "732 829 320 00074")
    assert out.strip().splitlines()[-1] == "cabinet-du-port"
    assert Organisation.objects.get(slug="cabinet-du-port").siret == "73282932000074"
    out, _ = run("createorg", "--name", "Cabinet du Port", "--finess", "750000001", "--allow-same-name")
    assert out.strip().splitlines()[-1] == "cabinet-du-port-2"


def test_createorg_run_twice_does_not_make_a_second_organisation(db: None) -> None:
    """A provisioning script retried printed « cabinet-medical-des-lilas-2 » and exit 0."""
    run("createorg", "--name", "Cabinet médical des Lilas", "--city", "Lyon")
    with pytest.raises(CommandError) as refused:
        run("createorg", "--name", "cabinet  médical des lilas", "--city", "lyon")
    assert "existe déjà (nom court cabinet-medical-des-lilas)" in str(refused.value)
    assert Organisation.objects.count() == 1
    # Another city is another practice; so is one the operator says is.
    run("createorg", "--name", "Cabinet médical des Lilas", "--city", "Nantes")
    run("createorg", "--name", "Cabinet médical des Lilas", "--city", "Lyon", "--allow-same-name")
    assert Organisation.objects.count() == 3


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--name", "X", "--finess", "12"], "--finess: Le numéro FINESS doit comporter exactement 9 chiffres"),
        (["--name", "X", "--siret", "73282932000075"], "--siret"),
        (["--name", "  "], "--name"),
    ],
)
def test_createorg_refuses_bad_input(db: None, args: list[str], fragment: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        run("createorg", *args)
    assert fragment in str(excinfo.value)
    assert not Organisation.objects.exists()


def test_createorg_refuses_both_identifiers(db: None) -> None:
    with pytest.raises(CommandError):
        run("createorg", "--name", "X", "--finess", "750000001", "--siret", "73282932000074")


def test_createuser_creates_a_member_with_a_mailbox(db: None) -> None:
    make_organisation("Cabinet du Port")
    out, err = run(
        "createuser", "--email", "Jean.Dupont@example.org", "--password", "une phrase tranquille",
        "--org", "cabinet-du-port", "--role", "practitioner", "--first-name", "Jean", "--last-name", "Dupont",
        "--rpps", "10001234565", "--profession", "Médecin",
    )  # fmt: skip
    assert out.strip().splitlines()[-1] == "jean.dupont@example.org"
    assert err == ""
    user = User.objects.get(email="jean.dupont@example.org")
    assert user.check_password("une phrase tranquille") and user.profession == "Médecin"
    assert Membership.objects.get(user=user).role == "practitioner"
    assert Mailbox.objects.get(owner=user).address == "jean.dupont@pli.localhost"
    # No second factor yet: the first sign-in leads to enrolment.
    assert not Authenticator.objects.filter(user=user).exists()


def test_createuser_reads_the_password_from_stdin(db: None) -> None:
    make_organisation("Cabinet du Port")
    run(
        "createuser", "--email", "a@example.org", "--password", "-", "--org", "cabinet-du-port",
        "--role", "assistant", "--first-name", "A", "--last-name", "B", stdin="un secret bien garde\n",
    )  # fmt: skip
    assert User.objects.get(email="a@example.org").check_password("un secret bien garde")


def test_createuser_warns_on_rpps_checksum(db: None) -> None:
    make_organisation("Cabinet du Port")
    _, err = run(
        "createuser", "--email", "a@example.org", "--password", "une phrase tranquille", "--org", "cabinet-du-port",
        "--role", "practitioner", "--first-name", "A", "--last-name", "B", "--rpps", "12345678901",
    )  # fmt: skip
    assert "warning: --rpps" in err
    assert User.objects.get(email="a@example.org").rpps == "12345678901"


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"--org": "nowhere"}, "--org"),
        ({"--email": "not-an-email"}, "--email"),
        ({"--password": "court"}, "--password"),
        ({"--rpps": "123"}, "--rpps"),
        ({"--first-name": " "}, "--first-name"),
    ],
)
def test_createuser_refuses_bad_input_and_writes_nothing(db: None, overrides: dict[str, str], fragment: str) -> None:
    make_organisation("Cabinet du Port")
    options = {
        "--email": "a@example.org", "--password": "une phrase tranquille", "--org": "cabinet-du-port",
        "--role": "practitioner", "--first-name": "A", "--last-name": "B",
    }  # fmt: skip
    options.update(overrides)
    args = [item for pair in options.items() for item in pair]
    with pytest.raises(CommandError) as excinfo:
        run("createuser", *args)
    assert fragment in str(excinfo.value)
    assert not User.objects.exists() and not Mailbox.objects.exists()


def test_createuser_refuses_duplicate_email(db: None) -> None:
    organisation = make_organisation("Cabinet du Port")
    make_user(organisation, email="a@example.org")
    with pytest.raises(CommandError) as excinfo:
        run(
            "createuser", "--email", "A@example.org", "--password", "une phrase tranquille", "--org",
            organisation.slug, "--role", "assistant", "--first-name", "A", "--last-name", "B",
        )  # fmt: skip
    assert "--email: Un compte utilise déjà cette adresse e-mail" in str(excinfo.value)


def test_commands_exit_non_zero_with_one_clear_line(tmp_path: Any) -> None:
    """Through the real `pli` entry point: message on stderr, exit status 1, no traceback."""
    env = {"PLI_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PLI_ENV": "development"}
    pli = [sys.executable, "-c", "from pli.cli import main; main()"]
    # The identifier is checked before the database is touched: no migration needed.
    result = subprocess.run(
        [*pli, "createorg", "--name", "X", "--finess", "abc"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "que des chiffres" in result.stderr and "Traceback" not in result.stderr


# --- Demo ------------------------------------------------------------------------------


def test_demo_is_seeded_once_through_the_services(db: None) -> None:
    seeded = demo.seed_demo()
    assert seeded is not None and seeded.created
    organisation = Organisation.objects.get()
    assert organisation.is_demo
    roles = sorted(Membership.objects.values_list("role", flat=True))
    assert roles == ["admin", "assistant", "practitioner"]
    practitioners = User.objects.exclude(rpps=None)
    assert practitioners.count() == 2
    secretariat = Mailbox.objects.get(kind="organisational")
    assert secretariat.name == "Secrétariat"
    members = set(secretariat.members.values_list("email", flat=True))
    assert members == {"claire.petit@example.org", "paul.durand@example.org"}
    text = demo.format_demo(seeded)
    for account in seeded.accounts:
        assert account.email in text and account.totp_secret in text and len(account.totp_secret) == 32
    assert demo.DEMO_PASSWORD in text
    again = demo.seed_demo()
    assert again is not None and not again.created
    assert Organisation.objects.count() == 1 and User.objects.count() == 3
    assert [a.totp_secret for a in again.accounts] == [a.totp_secret for a in seeded.accounts]


def test_demo_accounts_sign_in_with_the_printed_secret(db: None) -> None:
    seeded = demo.seed_demo()
    assert seeded is not None
    account = seeded.accounts[0]
    client = Client()
    client.post("/login/", {"login": account.email, "password": demo.DEMO_PASSWORD})
    code = demo.current_totp_code(account.totp_secret)
    assert client.post("/account/2fa/authenticate/", {"code": code})["Location"] == "/"


def test_demo_is_not_seeded_into_a_database_with_organisations(db: None) -> None:
    make_organisation("Vraie clinique")
    assert demo.seed_demo() is None
    assert not Organisation.objects.filter(is_demo=True).exists()


def test_production_never_seeds(db: None, settings: Any) -> None:
    settings.PLI_ENV = "production"
    assert demo.seed_demo() is None
    assert not Organisation.objects.exists()


def test_totp_secrets_are_encrypted_at_rest(db: None) -> None:
    seeded = demo.seed_demo()
    assert seeded is not None
    stored = Authenticator.objects.filter(type="totp").values_list("data", flat=True)
    for data, account in zip(stored, seeded.accounts, strict=True):
        assert data["secret"].startswith("pli1:")
        assert account.totp_secret not in data["secret"]


def test_dev_totp_prints_the_current_code(db: None) -> None:
    seeded = demo.seed_demo()
    assert seeded is not None
    account = seeded.accounts[1]
    before = time.time()
    out, _ = run("dev", "totp", account.email)
    # The 30 s window may turn over while the command runs.
    assert out.strip() in {demo.current_totp_code(account.totp_secret, at) for at in (before, time.time())}


def test_dev_totp_refuses_non_demo_accounts_and_production(db: None, settings: Any) -> None:
    demo.seed_demo()
    real = make_user(make_organisation("Vraie clinique"), email="real@example.org")
    with pytest.raises(CommandError, match="demo"):
        run("dev", "totp", real.email)
    with pytest.raises(CommandError, match="no account"):
        run("dev", "totp", "ghost@example.org")
    settings.PLI_ENV = "production"
    with pytest.raises(CommandError, match="development"):
        run("dev", "totp", "paul.durand@example.org")
