"""Creating, checking and revoking personal API tokens.

A token is ``pli_`` followed by 52 random characters from a 62-letter alphabet (about 309
bits). The first 8 of them are kept in clear as the displayed prefix; the 44 others (about
262 bits) stay secret. Only an HMAC-SHA256 of the whole token is stored.
"""

from __future__ import annotations

import hmac
import secrets
import string
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from pli.accounts.models import User
from pli.api.models import ApiToken
from pli.api.scopes import DEFAULT_SCOPES, SCOPES
from pli.audit import services as audit
from pli.core.db import fetch

TOKEN_PREFIX = "pli_"  # noqa: S105 — a public marker that makes tokens recognisable, not a secret
_ALPHABET = string.ascii_letters + string.digits  # no "-" or "_": a double-click selects it whole
_RANDOM_LENGTH = 52
_SHOWN_LENGTH = 8
TOKEN_LENGTH = len(TOKEN_PREFIX) + _RANDOM_LENGTH
MAX_ACTIVE_TOKENS = 50
NAME_MAX_LENGTH = 100
# "api.token_used" is recorded (and last_used_at moved) at most once a minute per token: an
# integration polling every few seconds would otherwise bury the trail in identical lines
# and serialise every API request on the audit chain's lock. What a request reads or
# changes is audited by the service doing it, so no access goes untraced.
USE_RECORD_INTERVAL = timedelta(minutes=1)
# Django's salted_hmac derives the HMAC key from SECRET_KEY and this salt (SHA-256 of both),
# so the token hashes share nothing with sessions, signing or password reset keys.
_HMAC_SALT = "pli.api.token"


def token_digest(raw: str, secret: str | None = None) -> str:
    """HMAC-SHA256 of the token under a key derived from SECRET_KEY (salted_hmac)."""
    return salted_hmac(_HMAC_SALT, raw, secret=secret, algorithm="sha256").hexdigest()


def _well_formed(raw: str) -> bool:
    body = raw[len(TOKEN_PREFIX) :]
    return len(raw) == TOKEN_LENGTH and raw.startswith(TOKEN_PREFIX) and all(char in _ALPHABET for char in body)


def _clean_scopes(scopes: list[str] | tuple[str, ...] | None) -> list[str]:
    if scopes is None:
        return list(DEFAULT_SCOPES)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValidationError(
            {
                "scopes": _("Unknown scope(s): %(unknown)s. Choose among: %(known)s.")
                % {"unknown": ", ".join(unknown), "known": ", ".join(SCOPES)}
            }
        )
    if not scopes:
        raise ValidationError({"scopes": _("Choose at least one scope.")})
    return [scope for scope in SCOPES if scope in scopes]


def create_token(
    user: User, name: str, scopes: list[str] | tuple[str, ...] | None = None, *, request: HttpRequest | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns it with its plaintext, which is never seen again."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": _("Give the token a name, e.g. the software that will use it.")})
    if "\x00" in name:
        raise ValidationError({"name": _("The name contains a character that is not allowed.")})
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError(
            {"name": _("The name is too long (%(max)d characters at most).") % {"max": NAME_MAX_LENGTH}}
        )
    clean_scopes = _clean_scopes(scopes)
    if not user.is_active:
        raise ValidationError(_("This account is disabled."))
    raw = TOKEN_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    with transaction.atomic():
        # Lock the user's row so two concurrent creations can't both pass the cap. FOR NO KEY
        # UPDATE: the user's own send or reading committing meanwhile holds the audit trail's
        # head and then takes a key-share lock on this row (its foreign keys), which FOR
        # UPDATE would refuse until this creation, itself waiting for the head, ends.
        User.objects.select_for_update(no_key=True).filter(pk=user.pk).first()
        if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_TOKENS:
            raise ValidationError(
                _("You already have %(max)d active tokens: revoke one you no longer use.") % {"max": MAX_ACTIVE_TOKENS}
            )
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=raw[: len(TOKEN_PREFIX) + _SHOWN_LENGTH],
            digest=token_digest(raw),
            scopes=clean_scopes,
        )
        audit.record(
            "api.token_created", actor=user, target=token, request=request, details={"scopes": " ".join(clean_scopes)}
        )
    return token, raw


def revoke_token(user: User, token_id: int, *, request: HttpRequest | None = None) -> ApiToken:
    """Revoke one of ``user``'s tokens (idempotent). Raises ApiToken.DoesNotExist for
    anyone else's token: the caller answers 404, revealing nothing."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token_id, user=user)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            audit.record("api.token_revoked", actor=user, target=token, request=request)
    return token


def revoke_all_tokens(
    user: User, reason: str, *, request: HttpRequest | None = None, actor: User | tuple[str, str] | None = None
) -> int:
    """Revoke every active token of ``user`` (their password changed or was reset: a token
    made from a stolen session must not outlive the usual remedy; or their account was
    switched off). ``actor`` is who did it when not ``user`` (an audit actor; None: ``user``)."""
    with transaction.atomic():
        tokens = list(ApiToken.objects.select_for_update().filter(user=user, revoked_at__isnull=True))
        now = timezone.now()
        for token in tokens:
            token.revoked_at = now
            token.save(update_fields=["revoked_at"])
            audit.record(
                "api.token_revoked", actor=actor or user, target=token, request=request, details={"reason": reason}
            )
    return len(tokens)


def authenticate_token(raw: str, *, request: HttpRequest | None = None) -> ApiToken | None:
    """The active token matching ``raw`` (with its user loaded), or None.

    The database is searched by digest, which is an HMAC of the presented value: timing
    differences of that lookup say nothing about stored tokens. The final comparison is
    constant-time all the same. Tokens hashed under a retired SECRET_KEY (listed in
    SECRET_KEY_FALLBACKS) keep working.
    """
    if not isinstance(raw, str) or not _well_formed(raw):
        return None
    secrets_in_use = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    digests = [token_digest(raw, secret) for secret in secrets_in_use]
    token = _token_by_digest(digests)
    if token is None or not any(hmac.compare_digest(token.digest, digest) for digest in digests):
        return None
    if token.revoked_at is not None or not token.user.is_active:
        return None
    _record_use(token, request)
    return token


def _token_by_digest(digests: list[str]) -> ApiToken | None:
    """The token (with its user) whose digest is one of ``digests``: every API request
    runs this lookup, so its SQL is compiled once (pli.core.db.fetch)."""
    found = fetch(
        "api.token_by_digest",
        digests,
        lambda: ApiToken.objects.select_related("user").filter(digest__in=digests).order_by()[:1],
    )
    return found[0] if found else None


def _record_use(token: ApiToken, request: HttpRequest | None) -> None:
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < USE_RECORD_INTERVAL:
        return
    with transaction.atomic():
        # Conditional update: of concurrent requests, exactly one records the use.
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - USE_RECORD_INTERVAL)
        fresh = ApiToken.objects.filter(stale, pk=token.pk)
        if fresh.update(last_used_at=now):
            token.last_used_at = now
            audit.record("api.token_used", actor=token.user, target=token, request=request)


def tokens_of(user: User) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user=user))
