"""Rate limit per token (``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_token"]``).

Counts live in Django's default cache, which settings.py makes a database cache shared by
every server process, so the limit holds across workers.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from pli.api.models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    scope = "api_token"

    def get_rate(self) -> str | None:
        # Read when used, not when the class is defined, so a settings change applies.
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        rate = rates.get(self.scope)
        return str(rate) if rate else None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = request.auth
        if not isinstance(token, ApiToken):
            return None  # unauthenticated requests end in 401 before reaching a view
        # The digest, not the id: ids of deleted tokens come back, digests never do.
        return self.cache_format % {"scope": self.scope, "ident": token.digest[:32]}
