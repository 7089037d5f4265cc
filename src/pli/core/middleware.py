"""Response headers that Django's own settings don't cover, and request framing it would
misread."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.utils.translation import gettext as _

from pli.core import charsets
from pli.core.logging import request_id_var

# Nothing in Pli needs these browser features; denying them shrinks what injected content
# could do.
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=(), interest-cohort=()"
)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]


def _trusted(address: str, proxies: _Networks) -> bool:
    """Whether ``address`` is one of the operator's reverse proxies (PLI_TRUSTED_PROXIES)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


class RequestIdMiddleware:
    """One id per request, in the response's X-Request-Id (the access log writes it) and in
    every application log line written meanwhile, so that an error is found beside its
    request. A well-formed id set by the operator's reverse proxy (from a trusted address,
    PLI_TRUSTED_PROXIES) is kept, so that its logs match too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in settings.PLI_TRUSTED_PROXIES]

    def _from_proxy(self, request: HttpRequest) -> str | None:
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        if not given or not _REQUEST_ID.fullmatch(given):
            return None
        return given if _trusted(request.META.get("REMOTE_ADDR", ""), self.proxies) else None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = self._from_proxy(request) or uuid.uuid4().hex[:16]
        # Kept until the response is finished (request_finished clears it): Django logs a
        # 4xx or 5xx after the middleware returns, and a download streams after it too.
        request_id_var.set(request_id)
        response = self.get_response(request)
        response.headers["X-Request-Id"] = request_id
        return response


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        # Pages may show health data: no browser or proxy cache may keep them. Static
        # assets are served by WhiteNoise before this middleware and keep their caching.
        if not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
            response.headers.setdefault("Pragma", "no-cache")
        return response


class MethodNotAllowedPageMiddleware:
    """An address opened by hand that only a button of a page sends to (« envoyer un nouveau
    code », « révoquer », a bookmarked reply step…) answered Django's empty 405: a blank page.
    It now says what happened and leads back (a patient to their link). The API's answers,
    which say it in JSON, are left alone."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 405
            and request.method == "GET"
            and not response.streaming
            and not response.content
            and not request.path_info.startswith("/api/")
        ):
            from pli.core.views import method_not_allowed

            return method_not_allowed(request, response.get("Allow", ""))
        return response


class TrustedProxyMiddleware:
    """Behind the operator's reverse proxy, the client is the last address in
    X-Forwarded-For that is not one of our proxies. Rate limits per address and the audit
    trail's "from where" depend on it. Without PLI_TRUSTED_PROXIES the header is ignored:
    any client could forge it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in settings.PLI_TRUSTED_PROXIES]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.proxies and _trusted(request.META.get("REMOTE_ADDR", ""), self.proxies):
            hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
            for hop in reversed(hops):
                if not _trusted(hop, self.proxies):
                    with contextlib.suppress(ValueError):  # a garbled hop leaves REMOTE_ADDR as is
                        request.META["REMOTE_ADDR"] = str(ipaddress.ip_address(hop))
                    break
        return self.get_response(request)


class ClientTimeoutMiddleware:
    """A client that stops sending (or reading) for PLI_CLIENT_TIMEOUT seconds is let go.

    Once a request has started, gunicorn's threads wait on the client's socket without a
    limit: an upload that stalls half-way (a phone losing its network, or someone doing it
    on purpose) held a thread for good, and a handful of them stopped the service. The
    timeout applies to each wait for bytes, in both directions, for this request only
    (gunicorn resets the socket for the next one); reads that time out end the request
    (see pli.messaging.uploads.TailRecorder and RequestFramingMiddleware).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sock = request.META.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(settings.PLI_CLIENT_TIMEOUT)
        return self.get_response(request)


def _refusal(request: HttpRequest, message: str, status: int) -> HttpResponse:
    if request.path.startswith("/api/"):
        # Written as DRF's renderer writes every other API answer: compact, UTF-8.
        return JsonResponse(
            {"detail": message}, status=status, json_dumps_params={"separators": (",", ":"), "ensure_ascii": False}
        )
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class RequestFramingMiddleware:
    """Refuses, in the user's language, request bodies Django would read wrongly or not at all:

    * a Content-Type header that cannot be parsed (see pli.core.wsgi);
    * a chunked body: without Content-Length Django reads no body at all, and a send came
      back as "sender required" although the client had sent it;
    * a compressed body (Content-Encoding): Django does not decompress it;

    and answers 400 when the client stopped sending its body (instead of a 500 logged as
    a server error).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if getattr(request, "unreadable_content_type", False):
            return _refusal(request, _("The request's Content-Type header could not be read."), 400)
        charset = (getattr(request, "content_params", None) or {}).get("charset")
        if charset and not charsets.supported(charset):
            # Django would decode the body with it ("idna" raised a 500, "utf-16" garbled),
            # or, with a name Python does not know, as UTF-8 without a word.
            return _refusal(request, _("The request's charset is not supported: send it in UTF-8."), 415)
        if charset and request.content_type == "application/x-www-form-urlencoded":
            # Django reads such a form in UTF-8 only (as RFC 1866 has it) and raises on any
            # charset not spelled "utf-8": "utf8" or "us-ascii" made a 500 in an API view.
            if charsets.codec_name(charset) in {"utf-8", "ascii"}:
                request.encoding = "utf-8"  # the same text, in the spelling Django expects
            else:
                return _refusal(
                    request,
                    _(
                        "A form sent as application/x-www-form-urlencoded must be in UTF-8 "
                        "(multipart/form-data may name another charset)."
                    ),
                    415,
                )
        meta = request.META
        media_type, separator, parameters = meta.get("CONTENT_TYPE", "").partition(";")
        if media_type != media_type.lower():
            # Media types are case-insensitive; Django's multipart parser only takes them in
            # lower case (the boundary, among the parameters, keeps its case).
            meta["CONTENT_TYPE"] = media_type.lower() + separator + parameters
        if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
            return _refusal(
                request, _("Send the request with a Content-Length header: chunked bodies are not accepted."), 411
            )
        if meta.get("HTTP_CONTENT_ENCODING", "identity").strip().lower() not in {"", "identity"}:
            return _refusal(request, _("Send the request's body uncompressed: Content-Encoding is not accepted."), 415)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, UnreadablePostError):
            return _refusal(request, _("The request's body could not be read to its end."), 400)
        return None
