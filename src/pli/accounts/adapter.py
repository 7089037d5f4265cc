"""django-allauth adapters: closed sign-up, global attempt limits, clear lockout messages,
TOTP secrets encrypted at rest, and a second factor that cannot be removed."""

from __future__ import annotations

import base64
import logging
import smtplib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from pli.accounts import ratelimits
from pli.audit import services as audit
from pli.core import keys
from pli.crypto import open_sealed, seal

logger = logging.getLogger(__name__)

SECOND_FACTOR_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)


# allauth's own texts about the second factor (flash messages, the security notices' subjects
# and lines), translated again in this app's catalogue, which Django reads before allauth's:
# allauth's French says « codes de récupération » where every Pli page says « codes de
# secours », and writes the ASCII apostrophe. Listed so that makemessages keeps them.
ALLAUTH_TEXTS = (
    gettext_noop("New Recovery Codes Generated"),
    gettext_noop("A new set of Two-Factor Authentication recovery codes has been generated."),
    gettext_noop("A new set of recovery codes has been generated."),
    gettext_noop("Authenticator App Activated"),
    gettext_noop("Authenticator App Deactivated"),
    gettext_noop("Authenticator app activated."),
    gettext_noop("Authenticator app deactivated."),
)


class _LockoutMessage:
    """Lazy: the wait depends on ACCOUNT_RATE_LIMITS, which tests may change."""

    def __str__(self) -> str:
        return str(
            _(
                "Too many failed attempts on this account: it is locked for %(minutes)d minutes. "
                "Wait, then try again; if you have forgotten your password, reset it, or contact "
                "your organisation's administrator."
            )
            % {"minutes": ratelimits.lockout_minutes()}
        )


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    error_messages = {
        **DefaultAccountAdapter.error_messages,
        "too_many_login_attempts": _LockoutMessage(),
        "too_many_attempts_instance": _(
            "Pli is receiving an unusual number of failed sign-in attempts and is slowing them down. "
            "Wait one minute, then try again."
        ),
        "account_inactive": _(
            "This account is deactivated. Contact your organisation's administrator to have it reactivated."
        ),
    }

    def get_reset_password_from_key_url(self, key: str) -> str:
        """The reset link on PLI_PUBLIC_URL, as every other link Pli sends. allauth builds it
        from the request's Host header: with an extra name in PLI_ALLOWED_HOSTS (``*``, say)
        anyone could have a victim's reset key mailed as a link to their own site."""
        link = urlsplit(str(super().get_reset_password_from_key_url(key)))
        return str(settings.PUBLIC_URL) + urlunsplit(("", "", link.path, link.query, ""))

    def get_reauthentication_methods(self, user: AbstractBaseUser) -> list[dict[str, Any]]:
        """The links to confirm it is you another way, in Pli's words: allauth's « Use
        authenticator app or code » did not say which code."""
        methods: list[dict[str, Any]] = super().get_reauthentication_methods(user)
        for method in methods:
            if method["id"] == "mfa_reauthenticate":
                method["description"] = _("Use your authenticator app or a recovery code")
        return methods

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Accounts come from invitations (pli.accounts.services) or operator commands only.
        return False

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            _record_locked(request, credentials.get("email"), "account_or_address_limit")
            raise
        usage = ratelimits.consume(request, "login_failed")
        if usage is None:
            self._rollback_login_failed_rl_usage()
            _record_locked(request, credentials.get("email"), "instance_limit")
            raise self.validation_error("too_many_attempts_instance")
        self._pli_global_usage: ratelimits.Usage | None = usage

    def _rollback_login_failed_rl_usage(self) -> None:
        # Called by allauth after a successful password check: only failures count.
        super()._rollback_login_failed_rl_usage()
        usage = getattr(self, "_pli_global_usage", None)
        if usage is not None:
            usage.rollback()
            self._pli_global_usage = None

    def reauthenticate(self, user: AbstractBaseUser, password: str) -> bool:
        """The password typed again by a signed-in user (before making an API token or
        changing a second factor): recorded as such, under that user. allauth checks it
        through a sign-in attempt, whose failure the login_failed receiver would otherwise
        write as an anonymous failed sign-in, and whose success it writes nowhere."""
        request = context.request
        request.pli_reauthentication = True
        try:
            ok = bool(super().reauthenticate(user, password))
        finally:
            request.pli_reauthentication = False
        audit.record(
            "auth.reauthentication",
            actor=user,
            target=user,
            request=request,
            outcome=audit.SUCCESS if ok else audit.FAILURE,
            details={"method": "password"},
        )
        return ok

    def set_password(self, user: AbstractBaseUser, password: str) -> None:
        """allauth's password change, reset and set: the API tokens are revoked here, with
        the request's address in the audit, rather than by the save (which has no request)."""
        from pli.accounts.models import User
        from pli.api.services import revoke_all_tokens

        user.set_password(password)
        # Taken before the save, so that the save's own revocation (without a request) does
        # not happen: the one below records where the change came from.
        new = isinstance(user, User) and user.take_new_password()
        user.save()
        if new and isinstance(user, User):
            revoke_all_tokens(user, "password", request=self.request)

    def render_mail(self, *args: Any, **kwargs: Any) -> EmailMessage:
        from pli.notify.email import message_id

        message: EmailMessage = super().render_mail(*args, **kwargs)
        # The instance's domain rather than this machine's name (see message_id).
        message.extra_headers.setdefault("Message-ID", message_id())
        return message

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        # A relay outage must not turn "reset my password" into an error page, nor reveal
        # through a different answer whether an e-mail was due.
        try:
            super().send_mail(template_prefix, email, context)
        except (OSError, smtplib.SMTPException) as exc:
            logger.warning("e-mail %s not sent: %s", template_prefix, exc.__class__.__name__)


def _record_locked(request: HttpRequest, email: Any, reason: str) -> None:
    from pli.accounts.models import User

    target = User.objects.filter(email__iexact=str(email or "")).first() if email else None
    if getattr(request, "pli_reauthentication", False):
        # A signed-in user's password typed again, refused by the limits (AccountAdapter.reauthenticate).
        audit.record(
            "auth.reauthentication",
            actor=request.user,
            target=target,
            request=request,
            outcome=audit.DENIED,
            details={"method": "password", "reason": reason},
        )
        return
    audit.record(
        "auth.login",
        actor=("anonymous", ""),
        target=target,
        request=request,
        outcome=audit.DENIED,
        details={"reason": reason},
    )


_SEALED_PREFIX = "pli1:"


def mfa_secret_key() -> bytes:
    return keys.purpose_key("mfa-secrets")


class MFAAdapter(DefaultMFAAdapter):  # type: ignore[misc]
    error_messages = {
        **DefaultMFAAdapter.error_messages,
        "cannot_delete_authenticator": _(
            "This is your only second factor, and Pli requires one: add another one (an "
            "authenticator app or a security key) before removing this one."
        ),
        "incorrect_code": _(
            "Incorrect or already used code: check it, or wait for the next one (a new code every 30 seconds)."
        ),
    }

    def encrypt(self, text: str) -> str:
        """TOTP secrets are sealed under an instance key wrapped by the master key: a copy of
        the database alone cannot produce codes."""
        sealed = seal(mfa_secret_key(), text.encode(), b"allauth.mfa")
        return _SEALED_PREFIX + base64.b64encode(sealed).decode("ascii")

    def decrypt(self, encrypted_text: str) -> str:
        if not encrypted_text.startswith(_SEALED_PREFIX):
            raise ValueError("second-factor secret is not sealed")
        sealed = base64.b64decode(encrypted_text[len(_SEALED_PREFIX) :])
        return open_sealed(mfa_secret_key(), sealed, b"allauth.mfa").decode()

    def can_delete_authenticator(self, authenticator: Authenticator) -> bool:
        if authenticator.type not in SECOND_FACTOR_TYPES:
            return True
        others = Authenticator.objects.filter(user_id=authenticator.user_id, type__in=SECOND_FACTOR_TYPES).exclude(
            pk=authenticator.pk
        )
        return bool(others.exists())

    def get_totp_label(self, user: AbstractBaseUser) -> str:
        return str(getattr(user, "email", "")) or str(user)

    def get_totp_issuer(self) -> str:
        return "Pli"


def has_second_factor(user: AbstractBaseUser) -> bool:
    return bool(Authenticator.objects.filter(user_id=user.pk, type__in=SECOND_FACTOR_TYPES).exists())
