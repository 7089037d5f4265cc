from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from pli.accounts.models import User
from pli.api import services
from pli.api.models import ApiToken
from pli.api.scopes import SCOPES
from pli.audit.models import AuditEvent
from pli.testing.accounts import make_user

TOKEN = re.compile(r"^pli_[A-Za-z0-9]{52}$")


@pytest.fixture
def user(db: None) -> User:
    return make_user(email="doc@example.org", first_name="Jeanne", last_name="Martin")


def test_created_token_is_shown_once_and_only_its_hash_is_stored(user: User) -> None:
    token, raw = services.create_token(user, "test")
    assert TOKEN.match(raw)
    assert token.prefix == raw[:12] and token.name == "test"
    assert token.scopes == list(SCOPES)
    assert token.digest != raw and len(token.digest) == 64
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert all(raw not in str(value) for value in stored.values())
    assert raw[12:] not in str(stored)
    # Not in any table, whatever its column.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM pli_api_token")
        assert raw not in repr(cursor.fetchall())
    assert services.authenticate_token(raw) == token
    assert not hasattr(token, "raw") and raw not in repr(token) and raw not in str(token)


def test_two_tokens_never_collide(user: User) -> None:
    raws = {services.create_token(user, f"t{n}")[1] for n in range(20)}
    assert len(raws) == 20


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "pli_",
        "pli_" + "a" * 51,
        "pli_" + "a" * 53,
        "xyz_" + "a" * 52,
        "pli_" + "-" * 52,
        "pli_" + "é" * 52,
        "pli_" + "A" * 52,
    ],
)
def test_wrong_tokens_are_refused(user: User, raw: str) -> None:
    services.create_token(user, "real")
    assert services.authenticate_token(raw) is None


def test_revoked_token_and_disabled_user_are_refused(user: User) -> None:
    token, raw = services.create_token(user, "test")
    _, other_raw = services.create_token(user, "other")
    services.revoke_token(user, token.pk)
    assert services.authenticate_token(raw) is None
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    services.revoke_token(user, token.pk)  # idempotent
    assert AuditEvent.objects.filter(action="api.token_revoked").count() == 1
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert services.authenticate_token(other_raw) is None


def test_a_user_cannot_revoke_someone_elses_token(user: User) -> None:
    intruder = make_user(email="other@example.org")
    token, raw = services.create_token(user, "test")
    with pytest.raises(ApiToken.DoesNotExist):
        services.revoke_token(intruder, token.pk)
    assert services.authenticate_token(raw) == token


def test_use_is_recorded_at_most_once_a_minute(user: User) -> None:
    token, raw = services.create_token(user, "test")
    assert token.last_used_at is None
    services.authenticate_token(raw)
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    services.authenticate_token(raw)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    assert AuditEvent.objects.filter(action="api.token_used", target_id=str(token.pk)).count() == 1
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    services.authenticate_token(raw)
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first  # type: ignore[operator]
    used = AuditEvent.objects.filter(action="api.token_used", target_id=str(token.pk))
    assert used.count() == 2 and used.first().actor_id == str(user.pk)  # type: ignore[union-attr]


def test_creation_is_audited_without_the_token(user: User) -> None:
    token, raw = services.create_token(user, "test", ["messages:read"])
    event = AuditEvent.objects.get(action="api.token_created")
    assert event.target_id == str(token.pk) and event.actor_id == str(user.pk)
    assert event.details == {"scopes": "messages:read"}
    assert raw not in str(AuditEvent.objects.values_list())


def test_tokens_survive_a_secret_key_rotation(user: User, settings: Any) -> None:
    token, raw = services.create_token(user, "test")
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    assert services.authenticate_token(raw) is None
    settings.SECRET_KEY_FALLBACKS = [old]
    assert services.authenticate_token(raw) == token


@pytest.mark.parametrize(
    "name,scopes,field",
    [
        ("", None, "name"),
        ("   ", None, "name"),
        ("x" * 101, None, "name"),
        ("nul\x00byte", None, "name"),
        ("ok", ["messages:delete"], "scopes"),
        ("ok", [], "scopes"),
    ],
)
def test_bad_token_requests_name_the_field(user: User, name: str, scopes: list[str] | None, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        services.create_token(user, name, scopes)
    assert field in caught.value.message_dict
    assert not ApiToken.objects.exists()


def test_scopes_are_kept_in_a_stable_order(user: User) -> None:
    token, _ = services.create_token(user, "t", ["shares:read", "messages:read"])
    assert token.scopes == ["messages:read", "shares:read"]
    assert token.has_scopes(["messages:read"]) and not token.has_scopes(["messages:send"])


def test_active_tokens_are_capped(user: User) -> None:
    for number in range(services.MAX_ACTIVE_TOKENS):
        services.create_token(user, f"t{number}")
    with pytest.raises(ValidationError, match=r"active tokens|jetons actifs"):
        services.create_token(user, "one too many")
    services.revoke_token(user, ApiToken.objects.filter(user=user).first().pk)  # type: ignore[union-attr]
    services.create_token(user, "room again")


# --- pli token create -----------------------------------------------------------------


def test_token_command_prints_a_working_token_on_its_last_line(user: User, client: Client) -> None:
    out = io.StringIO()
    call_command("token", "create", "--email", "DOC@example.org", "--name", "Logiciel", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    assert TOKEN.match(raw)
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json()["email"] == "doc@example.org"


def test_token_command_scopes(user: User) -> None:
    out = io.StringIO()
    call_command(
        "token", "create", "--email", user.email, "--name", "n", "--scopes", "messages:read,shares:read", stdout=out
    )
    assert ApiToken.objects.get().scopes == ["messages:read", "shares:read"]
    call_command("token", "create", "--email", user.email, "--name", "m", "--scopes", "messages:send", stdout=out)
    assert ApiToken.objects.get(name="m").scopes == ["messages:send"]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--email", "nobody@example.org", "--name", "n"],
            r"\A--email: no account with the e-mail address 'nobody@example.org' \(see `pli createuser`\)\Z",
        ),
        (["--email", "doc@example.org", "--name", " "], r"\A--name: (Give the token a name|Donnez un nom)"),
        (
            ["--email", "doc@example.org", "--name", "n", "--scopes", "everything"],
            r"\A--scopes: (Unknown scope|Portée.* inconnue)",
        ),
        (
            ["--email", "doc@example.org", "--name", "n", "--scopes", ","],
            r"\A--scopes: (Choose at least|Choisissez au)",
        ),
    ],
)
def test_token_command_errors(user: User, args: list[str], message: str) -> None:
    """Said as the other commands say it: the option at fault first (operators read it)."""
    with pytest.raises(CommandError, match=message):
        call_command("token", "create", *args, stdout=io.StringIO())
    assert not ApiToken.objects.exists()


def test_the_token_lookup_loads_token_and_user_as_the_orm_does(user: User) -> None:
    token, raw = services.create_token(user, "Logiciel", ["messages:read", "shares:read"])
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(days=1))
    found = services.authenticate_token(raw)
    assert found is not None
    expected = ApiToken.objects.select_related("user").get(pk=token.pk)
    for field in ApiToken._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    for field in User._meta.concrete_fields:
        assert getattr(found.user, field.attname) == getattr(expected.user, field.attname), field.name
    assert found.scopes == ["messages:read", "shares:read"]
    assert found.created_at.tzinfo is not None and found.user.is_active is True
    # The instance is a saved one: updating it touches its row, not a new one.
    assert not found._state.adding


def test_a_token_made_as_ones_letter_commits_is_no_error(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GP made a second token (for new software) just as her practice software's letter,
    sent with the first, committed: on PostgreSQL the send held the audit trail's head and,
    at COMMIT, checked its author's foreign key (a key-share lock on her user row), while the
    token's creation held that row FOR UPDATE and waited for the head: one of them failed
    with a 500."""
    from interleave import while_committing
    from messaging.factories import personal_mailbox, practitioner
    from pli.messaging.models import Message

    alice, bob = practitioner(), practitioner()
    _token, raw = services.create_token(alice, "logiciel")
    join = while_committing(
        monkeypatch, "message.send", lambda: services.create_token(alice, "second"), "api.token_created"
    )
    response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").post(
        "/api/v1/messages",
        {"sender": personal_mailbox(alice).address, "to": [personal_mailbox(bob).address], "subject": "S"},
    )
    assert join() == []
    assert response.status_code == 201, response.content
    assert Message.objects.count() == 1 and ApiToken.objects.filter(user=alice).count() == 2
