"""Personal API tokens, stored only as keyed hashes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100)
    # The first characters of the token ("pli_Ab12Cd34"): enough to tell tokens apart in a
    # list, far too few to guess the rest (see pli.api.services for the arithmetic).
    prefix = models.CharField(_("prefix"), max_length=16)
    # HMAC-SHA256 of the whole token, keyed from SECRET_KEY (pli.api.services.token_digest).
    # The token itself is never stored: a copy of the database cannot be replayed.
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(_("scopes"), default=list)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    # Minute resolution: updated at most once a minute (pli.api.services.USE_RECORD_INTERVAL).
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        db_table = "pli_api_token"
        ordering = ["-created_at", "-id"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scopes(self, scopes: list[str] | tuple[str, ...]) -> bool:
        return all(scope in self.scopes for scope in scopes)


class RateCounter(models.Model):
    """Requests per token in the current and the previous period (pli.api.throttling).

    One row per token and scope, updated by a single upsert per request: cheaper than the
    cache's read-modify-write of a request history, and atomic across server processes.
    """

    key = models.CharField(max_length=80, primary_key=True)
    period = models.BigIntegerField()
    count = models.IntegerField()
    previous = models.IntegerField()

    class Meta:
        db_table = "pli_api_rate_counter"

    def __str__(self) -> str:
        return f"{self.key}: {self.count} in period {self.period}"


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a user sent to a creating endpoint (pli.api.idempotency).

    Nothing the client chose is stored readable: the key is kept as an HMAC (of the user,
    the endpoint and the key) and the request as an HMAC of its fields and of its files'
    SHA-256. ``object_id`` is null while the first request is in flight; it is set, in the
    transaction that creates the message or share, to what that request created.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    endpoint = models.CharField(max_length=20)
    digest = models.CharField(max_length=64)
    fingerprint = models.CharField(max_length=64, blank=True)
    object_id = models.UUIDField(null=True, blank=True)
    # When the first request claimed the key; then when it committed (the 24 hours run from there).
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "pli_api_idempotency_key"
        constraints = [
            models.UniqueConstraint(fields=["user", "endpoint", "digest"], name="pli_api_idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} key of user {self.user_id}"
