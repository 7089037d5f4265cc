"""The ``Idempotency-Key`` request header on the creating API calls (IETF draft "The
Idempotency-Key HTTP Header Field").

An integrator whose connection dropped before it read the answer sends the request again
with the same key: the first request's result is answered again instead of a second
message or share (and a second SMS to the patient).

1. :func:`claim`, before the body is read: a key seen for the first time is recorded as in
   flight (its own short transaction, so other workers see it); one in flight elsewhere is
   a 409 at once, before any upload.
2. The view parses the request and computes its :func:`fingerprint`. If the key was
   already used, the same fingerprint replays the stored result, another one is a 422.
3. Otherwise the service calls :func:`complete` in the transaction that creates the
   object: key and object commit together or not at all. A request refused or failed
   before that :func:`release`\\ s its claim, so the client may correct it and retry.

Keys and requests are stored as keyed hashes only (the key is the client's choice and could
carry anything), under SECRET_KEY as the API tokens are (pli.api.services.token_digest).
"""

from __future__ import annotations

import datetime
import hmac
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework.response import Response

from pli.accounts.models import User
from pli.api.models import IdempotencyKey
from pli.audit import services as audit

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
_META = "HTTP_IDEMPOTENCY_KEY"
MAX_LENGTH = 255  # and in the schema (pli.api.schema.IDEMPOTENCY_KEY)
# The draft suggests 24 hours; the periodic job prunes what is older (prune_expired).
KEEP = datetime.timedelta(hours=24)
# A claim still in flight after this long belongs to a worker that died mid-request: an
# upload whose blobs are older than 30 minutes is refused at commit (MAX_PENDING_AGE), so no
# live request holds one longer. Taking it over is safe even if that is wrong: complete()
# only succeeds for the claim's own row.
IN_FLIGHT_LEASE = datetime.timedelta(minutes=30)
_KEY_SALT = "pli.api.idempotency.key"
_FINGERPRINT_SALT = "pli.api.idempotency.request"

MESSAGES = "messages"
SHARES = "shares"
RESENDS = "shares.resend"


class Refused(Exception):
    """The request is answered at once: ``status`` and ``body``. The two 409s also carry a
    ``code`` a program can test (their ``detail`` is for people, in their language), and the
    one worth retrying a ``Retry-After``."""

    def __init__(self, status: int, message: str, *, code: str = "", retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {HEADER: [message]} if status == 400 else {"detail": message}
        if code:
            self.body["code"] = code
        self.retry_after = retry_after

    def response(self) -> Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return Response(self.body, status=self.status, headers=headers)


class Conflict(Exception):
    """Raised by :func:`complete` in the creating transaction: the claim was taken over."""


@dataclass
class Claim:
    """A key this request holds: ``used`` is the row of a first request that succeeded."""

    row: IdempotencyKey
    used: bool
    secret: str = field(repr=False)  # SECRET_KEY or a fallback


def _secrets() -> list[str]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


def _hmac(salt: str, value: str, secret: str) -> str:
    return salted_hmac(salt, value, secret=secret, algorithm="sha256").hexdigest()


def requested_key(request: HttpRequest) -> str | None:
    """The header's value, None without one; Refused (400) when it is not 1 to 255
    printable ASCII characters."""
    if _META not in request.META:
        return None
    value = str(request.META[_META])
    # WSGI hands headers over as Latin-1: any byte beyond ASCII shows here as such.
    if not 1 <= len(value) <= MAX_LENGTH or not all(" " <= char <= "~" for char in value):
        raise Refused(
            400,
            _("The Idempotency-Key header must be 1 to %(max)d printable ASCII characters.") % {"max": MAX_LENGTH},
        )
    return value


def in_flight() -> Refused:
    return Refused(
        409,
        _("A request with this Idempotency-Key is still being processed; retry once it has been answered."),
        code="in_progress",
        retry_after=1,
    )


def claim(user: User, endpoint: str, key: str) -> Claim:
    """The key's row for this request: a new in-flight one, or the one of a first request
    that succeeded (less than KEEP ago). Refused (409) if another request holds it."""
    now = timezone.now()
    subject = f"{user.pk}\x00{endpoint}\x00{key}"
    digests = {_hmac(_KEY_SALT, subject, secret): secret for secret in _secrets()}
    try:
        with transaction.atomic():
            rows = list(IdempotencyKey.objects.filter(user=user, endpoint=endpoint, digest__in=list(digests)))
            for row in rows:
                if row.object_id is not None and row.created_at > now - KEEP:
                    return Claim(row, used=True, secret=digests[row.digest])
                if row.object_id is None and row.created_at > now - IN_FLIGHT_LEASE:
                    raise in_flight()
            # Expired, or left in flight by a worker that died: the key is free again.
            IdempotencyKey.objects.filter(pk__in=[row.pk for row in rows]).delete()
            row = IdempotencyKey.objects.create(
                user=user, endpoint=endpoint, digest=_hmac(_KEY_SALT, subject, settings.SECRET_KEY), created_at=now
            )
    except IntegrityError:
        # Another worker claimed it between our read and our insert (PostgreSQL).
        raise in_flight() from None
    return Claim(row, used=False, secret=settings.SECRET_KEY)


def guarded(request: HttpRequest, user: User, endpoint: str, create: Callable[[Claim | None], Response]) -> Response:
    """Answer a creating call under its Idempotency-Key, if it has one: ``create`` gets the
    claim (None without a key) and the claim is released unless ``create`` used it."""
    try:
        key = requested_key(request)
        held = claim(user, endpoint, key) if key is not None else None
    except Refused as exc:
        return exc.response()
    try:
        return create(held)
    finally:
        if held is not None:
            release(held)


def before_creating(
    request: Request, held: Claim | None, data: Any, files: Any, replay: Callable[[Claim, str], Response]
) -> tuple[Response | None, Callable[[uuid.UUID], None]]:
    """Once a creating call's body is read: with a key already used, the first request's
    answer (``replay``, given the claim and this request's fingerprint), and nothing is created; otherwise
    None and the callback the service runs in its creating transaction: the token is read
    again for a long request (pli.api.authentication.on_created), then the key is tied to
    the new object."""
    from pli.api import authentication

    completing = None
    if held is not None:
        request_fingerprint = fingerprint(held, data, files)
        if held.used:
            return replay(held, request_fingerprint), authentication.on_created(request, None)
        completing = partial(complete, held, request_fingerprint=request_fingerprint)
    return None, authentication.on_created(request, completing)


def release(held: Claim) -> None:
    """Give back an in-flight claim whose request created nothing (refused, failed)."""
    if held.used:
        return
    try:
        IdempotencyKey.objects.filter(pk=held.row.pk, object_id__isnull=True).delete()
    except DatabaseError:
        # The request is failing with the database (the error on its way out says so); the
        # claim is free again once IN_FLIGHT_LEASE has passed.
        logger.warning("an Idempotency-Key claim could not be released")


def fingerprint(held: Claim, data: Any, files: Any) -> str:
    """A keyed hash of the request: every text field (sorted by name, values in the order
    sent) and, per file field, each file's name and SHA-256 (computed by the upload as it
    streamed in). Keyed: a plain hash of a patient's name and birth date could be found again
    by trying candidates."""
    fields = sorted((name, list(values)) for name, values in data.lists())
    uploads = sorted(
        (name, [[f.pending.name, f.pending.sha256] for f in values if hasattr(f, "pending")])
        for name, values in files.lists()
    )
    canonical = json.dumps({"fields": fields, "files": uploads}, ensure_ascii=True, separators=(",", ":"))
    return _hmac(_FINGERPRINT_SALT, canonical, held.secret)


def check_same_request(held: Claim, request_fingerprint: str) -> None:
    """Refused (422) unless this request is the first one's again."""
    if hmac.compare_digest(held.row.fingerprint, request_fingerprint):
        return
    raise Refused(
        422,
        _(
            "This Idempotency-Key was already used for a different request: "
            "use a new key for a new request, or send exactly the same request again."
        ),
    )


def complete(held: Claim, object_id: uuid.UUID, *, request_fingerprint: str) -> None:
    """Tie the key to what the request created, in the creating transaction (which the
    caller holds). Conflict if the claim is no longer this request's."""
    # Read (and locked on PostgreSQL) before the update: a fetch also works in psycopg's
    # pipeline mode, where an update's row count is not known yet.
    mine = IdempotencyKey.objects.select_for_update().filter(pk=held.row.pk, object_id__isnull=True)
    if not list(mine.values_list("pk", flat=True)):
        raise Conflict
    now = timezone.now()
    mine.update(object_id=object_id, fingerprint=request_fingerprint, created_at=now)
    held.row.object_id, held.row.fingerprint, held.row.created_at = object_id, request_fingerprint, now


def gone() -> Refused:
    return Refused(
        409,
        _("This Idempotency-Key was used for a request whose result no longer exists: use a new key."),
        code="result_gone",
    )


def record_replay(user: User, endpoint: str, target: Any, request: HttpRequest | None) -> None:
    """A retry answered from the first request's result: audited as such, not as a send."""
    with transaction.atomic():
        audit.record(
            "api.idempotent_replay", actor=user, target=target, request=request, details={"endpoint": endpoint}
        )


def prune_expired(now: datetime.datetime | None = None) -> int:
    """Remove the keys older than KEEP (and claims left in flight by a dead worker)."""
    now = now or timezone.now()
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=now - KEEP).delete()
    return deleted
