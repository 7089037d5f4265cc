"""Authentication events written to the audit trail (allauth's and Django's signals)."""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from django.contrib.auth import signals as auth_signals
from django.http import HttpRequest

from pli.audit import services as audit


def _request(kwargs: dict[str, Any]) -> HttpRequest | None:
    request = kwargs.get("request")
    # Django's test client logs in with a bare HttpRequest; a real one has META.
    return request if isinstance(request, HttpRequest) else None


def on_logged_in(sender: Any, user: Any, **kwargs: Any) -> None:
    audit.record("auth.login", actor=user, target=user, request=_request(kwargs))


def on_logged_out(sender: Any, user: Any = None, **kwargs: Any) -> None:
    if user is None:
        return
    audit.record("auth.logout", actor=user, target=user, request=_request(kwargs))


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    from pli.accounts.models import User

    if getattr(request, "pli_reauthentication", False):
        return  # a signed-in user's password typed again: AccountAdapter.reauthenticate records it
    email = str(credentials.get("email") or credentials.get("username") or "")
    target = User.objects.filter(email__iexact=email).first() if email else None
    audit.record(
        "auth.login",
        actor=("anonymous", ""),
        target=target,
        request=request if isinstance(request, HttpRequest) else None,
        outcome=audit.FAILURE,
        details={"reason": "bad_credentials" if target else "unknown_account"},
    )


def on_password_event(action: str) -> Any:
    def receiver(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
        # (The API tokens were revoked as the password was saved: AccountAdapter.set_password.)
        audit.record(action, actor=user, target=user, request=_request({"request": request}))

    return receiver


def on_user_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """post_save of User: a password set since the last save revokes the API tokens.
    Changing or resetting one's password is the remedy for a stolen account: tokens made
    meanwhile must not survive it, whichever way the password was saved (`pli
    changepassword`, the admin; allauth's pages revoke them with the request's address)."""
    if instance.take_new_password():
        from pli.api.services import revoke_all_tokens

        revoke_all_tokens(instance, "password")


def on_authenticator_added(
    sender: Any, request: Any = None, user: Any = None, authenticator: Any = None, **kw: Any
) -> None:
    audit.record(
        "auth.second_factor.added",
        actor=user,
        target=user,
        request=_request({"request": request}),
        details={"type": str(authenticator.type)},
    )


def on_authenticator_removed(
    sender: Any, request: Any = None, user: Any = None, authenticator: Any = None, **kw: Any
) -> None:
    audit.record(
        "auth.second_factor.removed",
        actor=user,
        target=user,
        request=_request({"request": request}),
        details={"type": str(authenticator.type)},
    )


def on_authenticator_reset(
    sender: Any, request: Any = None, user: Any = None, authenticator: Any = None, **kw: Any
) -> None:
    audit.record(
        "auth.second_factor.reset",
        actor=user,
        target=user,
        request=_request({"request": request}),
        details={"type": str(authenticator.type)},
    )


def on_authenticator_used(
    sender: Any, request: Any = None, user: Any = None, authenticator: Any = None, **kw: Any
) -> None:
    audit.record(
        "auth.second_factor",
        actor=user,
        target=user,
        request=_request({"request": request}),
        details={"type": str(authenticator.type), "reauthentication": bool(kw.get("reauthenticated"))},
    )


def on_second_factor_failed(
    sender: Any, request: Any = None, user: Any = None, authenticator: Any = None, **kw: Any
) -> None:
    audit.record(
        "auth.second_factor",
        actor=("anonymous", "") if not getattr(getattr(request, "user", None), "is_authenticated", False) else user,
        target=user,
        request=_request({"request": request}),
        outcome=audit.FAILURE,
        details={"type": str(authenticator.type), "reauthentication": bool(kw.get("reauthentication"))},
    )


def connect() -> None:
    from django.db.models.signals import post_save

    from pli.accounts.middleware import record_sign_in
    from pli.accounts.models import User

    post_save.connect(on_user_saved, sender=User, dispatch_uid="pli.accounts.password_revokes_tokens")
    auth_signals.user_logged_in.connect(on_logged_in, dispatch_uid="pli.audit.login")
    auth_signals.user_logged_in.connect(record_sign_in, dispatch_uid="pli.session.signed_in_at")
    auth_signals.user_logged_out.connect(on_logged_out, dispatch_uid="pli.audit.logout")
    auth_signals.user_login_failed.connect(on_login_failed, dispatch_uid="pli.audit.login_failed")
    account_signals.password_changed.connect(
        on_password_event("auth.password.changed"), dispatch_uid="pli.audit.password_changed", weak=False
    )
    account_signals.password_set.connect(
        on_password_event("auth.password.set"), dispatch_uid="pli.audit.password_set", weak=False
    )
    account_signals.password_reset.connect(
        on_password_event("auth.password.reset"), dispatch_uid="pli.audit.password_reset", weak=False
    )
    mfa_signals.authenticator_added.connect(on_authenticator_added, dispatch_uid="pli.audit.mfa_added")
    mfa_signals.authenticator_removed.connect(on_authenticator_removed, dispatch_uid="pli.audit.mfa_removed")
    mfa_signals.authenticator_reset.connect(on_authenticator_reset, dispatch_uid="pli.audit.mfa_reset")
    mfa_signals.authenticator_used.connect(on_authenticator_used, dispatch_uid="pli.audit.mfa_used")
    mfa_signals.authentication_failed.connect(on_second_factor_failed, dispatch_uid="pli.audit.mfa_failed")
