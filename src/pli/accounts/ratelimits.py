"""Instance-wide ("global") attempt limits, on top of allauth's per-address and per-account ones.

A password-spraying attack spreads its guesses over many accounts and many addresses, under
every per-account and per-address limit; only a limit on the whole instance slows it down.
The counters are allauth's (same sliding window, same cache), and the cache is the
database, so every server process counts against the same totals.

``settings.PLI_GLOBAL_RATE_LIMITS`` maps an action to ``"AMOUNT/PERIOD"`` (e.g. ``"300/m"``).
"""

from __future__ import annotations

from typing import Protocol

from allauth.core.internal import ratelimit as _allauth_ratelimit
from django.conf import settings
from django.http import HttpRequest

_GLOBAL_KEY = "instance"


class Usage(Protocol):
    def rollback(self) -> None: ...


def consume(request: HttpRequest, action: str, *, limit_get: bool = False) -> Usage | None:
    """Count one attempt of ``action``; None when the instance-wide limit is reached.

    The returned usage can be rolled back, so that only failed attempts count.
    """
    rate = settings.PLI_GLOBAL_RATE_LIMITS.get(action)
    usage: Usage | None = _allauth_ratelimit.consume(
        request,
        app="pli.global",
        action=action,
        config={action: f"{rate}/key"} if rate else {},
        key=_GLOBAL_KEY,
        limit_get=limit_get,
    )
    return usage


def lockout_minutes(action: str = "login_failed") -> int:
    """How long a user whose account is locked by allauth's per-account limit should wait."""
    rates = _allauth_ratelimit.get_rates(app="allauth.account", action=action)
    per_key = [rate for rate in rates if rate.per == "key"]
    seconds = max((rate.duration for rate in per_key), default=60)
    return max(1, round(seconds / 60))
