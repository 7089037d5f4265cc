"""Rate limit per token (``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_token"]``).

A sliding-window estimate over fixed periods: the requests of the current period plus
those of the previous one, weighted by how much of it still overlaps the window. The two
counts live in one database row per token (:class:`pli.api.models.RateCounter`), updated by
one atomic upsert per request (committed without waiting for the disk), so the limit holds
across every server process and host, and a burst straddling two periods is still caught.

Refused requests are counted too: a client that keeps hammering stays refused until it
slows down. Every answer to a token says where it stands (``RateLimit-Limit``,
``RateLimit-Remaining``, ``RateLimit-Reset``), so that software can slow down before a 429.
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.db import connection
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from pli.api.models import ApiToken, RateCounter
from pli.core.db import unsynced

_DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# SET expressions read the row as it was before the update, on SQLite and PostgreSQL alike.
_UPSERT = f"""
INSERT INTO {RateCounter._meta.db_table} (key, period, count, previous) VALUES (%s, %s, 1, 0)
ON CONFLICT (key) DO UPDATE SET
    previous = CASE
        WHEN {RateCounter._meta.db_table}.period = excluded.period THEN {RateCounter._meta.db_table}.previous
        WHEN {RateCounter._meta.db_table}.period = excluded.period - 1 THEN {RateCounter._meta.db_table}.count
        ELSE 0 END,
    count = CASE
        WHEN {RateCounter._meta.db_table}.period = excluded.period THEN {RateCounter._meta.db_table}.count + 1
        ELSE 1 END,
    period = excluded.period
RETURNING count, previous
"""  # noqa: S608 - the table name comes from the model; values are bound


_clock = time.time  # tests move it

# Where the request keeps what the throttle counted (limit, remaining, seconds to reset).
RATE_LIMIT = "pli_rate_limit"


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/min"`` → (600, 60): DRF's notation, the unit's first letter counts."""
    number, _, unit = rate.partition("/")
    return int(number), _DURATIONS[unit.strip()[0]]


def _retry_after(count: int, previous: int, into: float, duration: int, limit: int) -> float:
    """Seconds until one more request fits, if none comes meanwhile. Not merely the end of
    the period: the period's own requests then weigh fully as the previous period's."""
    if count + 1 <= limit:
        # Within this period, once the previous one has aged enough (it weighs, since the
        # request was refused).
        return (1 - (limit - count - 1) / previous) * duration - into
    # In the next period, where this one's count weighs less as it ages.
    return duration - into + max(0.0, (1 - (limit - 1) / count) * duration)


class TokenRateThrottle(BaseThrottle):
    scope = "api_token"

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True  # unauthenticated requests end in 401 before reaching a view
        # Read when used, not when the class is defined, so a settings change applies.
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if not rate:
            return True
        limit, duration = parse_rate(str(rate))
        now = _clock()
        period, into = divmod(now, duration)
        # The digest, not the id: ids of deleted tokens come back, digests never do.
        key = f"{self.scope}:{token.digest[:32]}"
        # In a transaction of its own (on SQLite it then queues with the other writers,
        # pli.core.sqlite3) whose commit does not wait for the disk: after a power cut the
        # last few requests may go uncounted, which no limit needs, and every API request
        # is spared a sync.
        with unsynced(), connection.cursor() as cursor:
            cursor.execute(_UPSERT, [key, int(period)])
            count, previous = cursor.fetchone()
        estimate = count + previous * (1 - into / duration)
        # For the answer's RateLimit-* headers (pli.api.strict): the limit, what is left of
        # it now, and the seconds until this period ends, when the count starts to age out.
        remaining = max(0, math.floor(limit - estimate))
        request._request.__dict__[RATE_LIMIT] = (limit, remaining, math.ceil(duration - into))
        if estimate <= limit:
            return True
        self._wait = max(1.0, math.floor(_retry_after(count, previous, into, duration, limit)) + 1)
        return False

    def wait(self) -> float | None:
        return self._wait
