"""The shell pages: home, health check, and error pages that reveal nothing."""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from pli import __version__
from pli.core import keys

logger = logging.getLogger(__name__)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    # A professional opens Pli to read their mail, as with any webmail.
    return redirect("messaging:home")


@login_not_required
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Ready when the database answers and the master keys load; no detail on failure.
    Also says whether the data directory's disk runs low, without failing for it."""
    checks = {"database": "ok", "keys": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        checks["database"] = "error"
        logger.error("health check: the database does not answer (%s)", type(exc).__name__)
    try:
        refusal = keys.keyring().refusal
        if refusal is not None:
            # A key file unreadable (its permissions, a copy under way): the cause, not
            # its consequence (the newest version's data keys not opened).
            checks["keys"] = "error"
            logger.error("health check: %s", refusal)
        # The keys must load, and open the data keys they wrapped (a wrong key loads fine).
        elif checks["database"] == "ok" and not keys.keyring_checked():
            checks["keys"] = "error"
            logger.error("health check: the master keys do not open every data key (run `pli keys status`)")
        keys.keyring()
    except DatabaseError as exc:
        # Reading the data keys failed, not the keys: a database without Pli's tables.
        checks["database"] = "error"
        logger.error("health check: the database cannot be read (%s); has `pli migrate` run?", type(exc).__name__)
    except Exception as exc:
        checks["keys"] = "error"
        logger.error("health check: the master keys do not load (%s)", type(exc).__name__)
    ok = all(value == "ok" for value in checks.values())
    disk = _disk_check()
    status = "error" if not ok else "degraded" if disk != "ok" else "ok"
    body: dict[str, str] = {"status": status, "version": __version__, **checks, "disk": disk}
    if settings.PLI_ENV != "production":
        # So that a monitor notices an instance started without PLI_ENV=production.
        body["mode"] = settings.PLI_ENV
    # A low disk keeps 200: the instance still serves reading and small sends, and a load
    # balancer must not take it out; a monitor alerts on "degraded".
    response = JsonResponse(body, status=200 if ok else 503)
    if request.method == "HEAD":
        # A monitor's HEAD gets the status alone: with the body, gunicorn dropped it and
        # logged a warning at every probe.
        response.content = b""
    return response


# Whether the last check in this process found the disk low, so that the warning is logged
# when it becomes low rather than at every probe.
_disk_was_low = False


def _disk_check() -> str:
    """ "ok", "low" (less than PLI_DISK_MIN_FREE_MB free where blobs and, on SQLite, the
    database are written) or "error" (the directory cannot be examined)."""
    global _disk_was_low
    try:
        free = shutil.disk_usage(settings.DATA_DIR).free
    except OSError as exc:
        logger.error("health check: cannot examine the data directory's disk (%s)", type(exc).__name__)
        return "error"
    low = free < settings.PLI_DISK_MIN_FREE_MB * 10**6
    if low and not _disk_was_low:
        logger.warning(
            "health check: %d MB free on the data directory's disk, under PLI_DISK_MIN_FREE_MB (%d): "
            "uploads will fail with 507 once it is full",
            free // 10**6,
            settings.PLI_DISK_MIN_FREE_MB,
        )
    _disk_was_low = low
    return "low" if low else "ok"


_PATIENT_PATH = re.compile(r"^/p/([^/]+)")


def _error(request: HttpRequest, template: str, status: int) -> HttpResponse:
    context: dict[str, Any] = {"with_nav": status in (403, 404)}
    # A patient who lands on an error page (an expired form, a mistyped address) goes back
    # to their link, which leads to wherever they are, rather than to the professionals'
    # sign-in page at "/". The token is the one already in the address bar.
    match = _PATIENT_PATH.match(request.path_info)
    if match is not None:
        with contextlib.suppress(NoReverseMatch):
            context["error_home"] = reverse("sharing:patient_landing", args=[match.group(1)])
    return render(request, template, context, status=status)


@login_not_required
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, "core/errors/400.html", 400)


@login_not_required
def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, "core/errors/403.html", 403)


@login_not_required
def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, "core/errors/404.html", 404)


def method_not_allowed(request: HttpRequest, allow: str) -> HttpResponse:
    """A page for an address that only a form's button sends to (Django's 405 is blank)."""
    response = _error(request, "core/errors/405.html", 405)
    response["Allow"] = allow
    return response


@login_not_required
def storage_full(request: HttpRequest) -> HttpResponse:
    """A page that failed for a full disk (pli.core.storage): 507, saying so."""
    from pli.core import storage

    return _error(request, "core/errors/507.html", storage.INSUFFICIENT_STORAGE)


def content_unavailable_message() -> str:
    return _(
        "The content of this file cannot be read on the server: it cannot be downloaded for now. "
        "Tell the administrator of your Pli instance."
    )


def content_unavailable(request: HttpRequest) -> HttpResponse:
    """A file whose stored content cannot be read (its blob missing or unreadable): a 500 that
    says so, rather than the generic page's "try again in a moment"; a patient is sent to
    the practice. The cause is logged by whoever found it."""
    return _error(request, "core/errors/content_unavailable.html", 500)


@login_not_required
def server_error(request: HttpRequest) -> HttpResponse:
    # Rendered without the request context: a failing context processor must not turn the
    # error page into a second error.
    from django.template import loader

    from pli.core import outage

    # Called while the request's exception is handled: the database out of reach is no bug.
    failure = sys.exc_info()[1]
    if failure is not None and outage.is_unavailable(failure):
        outage.log_unavailable(failure)
        page = loader.get_template(outage.PAGE).render({"keys": outage.keys_refused(failure)})
        response = HttpResponse(page, status=outage.SERVICE_UNAVAILABLE)
        response["Retry-After"] = str(outage.RETRY_AFTER)
        return response
    return HttpResponse(loader.get_template("core/errors/500.html").render(), status=500)


@login_not_required
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    response = _error(request, "core/errors/csrf.html", 403)
    # Told apart from other refusals by the upload forms' script, which then fetches the
    # token a new sign-in (in another tab) gave and sends again (pli/upload-form.js).
    response["X-Pli-Csrf-Failure"] = "1"
    return response
