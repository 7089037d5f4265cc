"""Response headers that Django's own settings don't cover."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# Nothing in Pli needs these browser features; denying them shrinks what injected content
# could do.
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=(), interest-cohort=()"
)


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


class TrustedProxyMiddleware:
    """Behind the operator's reverse proxy, the client is the last address in
    X-Forwarded-For that is not one of our proxies. Rate limits per address and the audit
    trail's "from where" depend on it. Without PLI_TRUSTED_PROXIES the header is ignored:
    any client could forge it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in settings.PLI_TRUSTED_PROXIES]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.proxies and self._trusted(request.META.get("REMOTE_ADDR", "")):
            hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
            for hop in reversed(hops):
                if not self._trusted(hop):
                    with contextlib.suppress(ValueError):  # a garbled hop leaves REMOTE_ADDR as is
                        request.META["REMOTE_ADDR"] = str(ipaddress.ip_address(hop))
                    break
        return self.get_response(request)
