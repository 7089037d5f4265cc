"""The per-token limit counts across periods and across concurrent requests."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import close_old_connections, connection
from django.test import Client

from pli.accounts.models import User
from pli.api import services, throttling
from pli.api.models import RateCounter
from pli.testing.accounts import make_user


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def user(db: None) -> User:
    return make_user()


@pytest.fixture
def limited(settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "3/min"}}


def test_parse_rate() -> None:
    assert throttling.parse_rate("600/min") == (600, 60)
    assert throttling.parse_rate("10/s") == (10, 1)
    assert throttling.parse_rate("100/hour") == (100, 3600)
    assert throttling.parse_rate("5/day") == (5, 86400)


def test_a_burst_straddling_two_periods_is_still_refused(
    user: User, limited: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = services.create_token(user, "integration")[1]
    client = Client()
    clock = [60 * 1000 + 59.5]  # the last half-second of a period
    monkeypatch.setattr(throttling, "_clock", lambda: clock[0])
    assert [client.get("/api/v1/me", **bearer(raw)).status_code for _ in range(3)] == [200, 200, 200]
    clock[0] += 1.0  # the next period has just begun: the previous one still weighs ~99%
    refused = client.get("/api/v1/me", **bearer(raw))
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    # Two periods on, the burst has aged out.
    clock[0] += 120
    assert client.get("/api/v1/me", **bearer(raw)).status_code == 200
    row = RateCounter.objects.get()
    assert (row.count, row.previous) == (1, 0)


def test_the_previous_period_weighs_less_as_it_ages(user: User, limited: None, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = services.create_token(user, "integration")[1]
    client = Client()
    clock = [60 * 2000 + 30.0]
    monkeypatch.setattr(throttling, "_clock", lambda: clock[0])
    assert [client.get("/api/v1/me", **bearer(raw)).status_code for _ in range(3)] == [200, 200, 200]
    # 45 s into the next period the 3 earlier requests weigh 3 * 0.25: two more fit.
    clock[0] += 75
    assert [client.get("/api/v1/me", **bearer(raw)).status_code for _ in range(3)] == [200, 200, 429]


def test_concurrent_requests_never_exceed_the_limit(
    transactional_db: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "10/hour"}}
    monkeypatch.setattr(throttling, "_clock", lambda: 3600 * 100 + 1.0)
    raw = services.create_token(make_user(), "integration")[1]
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        try:
            client = Client()
            barrier.wait()
            for _ in range(4):
                statuses.append(client.get("/api/v1/me", **bearer(raw)).status_code)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 24
    assert statuses.count(200) == 10
    assert statuses.count(429) == 14
    assert RateCounter.objects.get().count == 24


def test_the_counters_skip_the_write_ahead_log_on_postgresql(db: None) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT relpersistence FROM pg_class WHERE relname = 'pli_api_rate_counter'")
            assert cursor.fetchone() == ("u",)
        else:
            # SQLite has no such notion: the table is an ordinary one there.
            cursor.execute("SELECT name FROM sqlite_master WHERE name = 'pli_api_rate_counter'")
            assert cursor.fetchone() == ("pli_api_rate_counter",)


def test_a_retry_when_retry_after_says_is_accepted(user: User, limited: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that goes over the limit within one period and waits what Retry-After says
    is served: the end of the period is not enough when the period's requests still weigh
    over the limit at the start of the next one."""
    raw = services.create_token(user, "integration")[1]
    client = Client()
    clock = [60 * 3000 + 10.0]
    monkeypatch.setattr(throttling, "_clock", lambda: clock[0])
    assert [client.get("/api/v1/me", **bearer(raw)).status_code for _ in range(4)] == [200, 200, 200, 429]
    refused = client.get("/api/v1/me", **bearer(raw))
    assert refused.status_code == 429
    clock[0] += int(refused["Retry-After"])
    assert client.get("/api/v1/me", **bearer(raw)).status_code == 200


def test_retry_after_while_the_previous_period_ages(user: User, limited: None, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = services.create_token(user, "integration")[1]
    client = Client()
    clock = [60 * 4000 + 59.0]
    monkeypatch.setattr(throttling, "_clock", lambda: clock[0])
    assert [client.get("/api/v1/me", **bearer(raw)).status_code for _ in range(3)] == [200, 200, 200]
    clock[0] += 2.0
    refused = client.get("/api/v1/me", **bearer(raw))
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert wait < 59  # within this period, once the previous one weighs little enough
    clock[0] += wait
    assert client.get("/api/v1/me", **bearer(raw)).status_code == 200


def test_every_answer_says_where_the_token_stands(user: User, limited: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Software slows down before a 429 when it can see the limit coming."""
    raw = services.create_token(user, "integration")[1]
    client = Client()
    monkeypatch.setattr(throttling, "_clock", lambda: 60 * 1000 + 15.2)
    answers = [client.get("/api/v1/me", **bearer(raw)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    seen = [(a["RateLimit-Limit"], a["RateLimit-Remaining"], a["RateLimit-Reset"]) for a in answers]
    assert seen == [("3", "2", "45"), ("3", "1", "45"), ("3", "0", "45"), ("3", "0", "45")]
    # The error answers of a counted request say it too (a 404 here), not an anonymous one.
    assert client.get("/api/v1/shares/00000000-0000-0000-0000-000000000000", **bearer(raw)).has_header(
        "RateLimit-Remaining"
    )
    assert not Client().get("/api/v1/me").has_header("RateLimit-Remaining")
