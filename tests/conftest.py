from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from pli.core import keys


@pytest.fixture(autouse=True)
def _fresh_keyring(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test gets its own master keys, so rotation in one test can't leak into another."""
    settings.PLI_KEYS_DIR = tmp_path_factory.mktemp("keys")
    keys.reset()
    yield
    keys.reset()


@pytest.fixture
def audit_unlocked(db: None) -> Iterator[None]:
    """Lift the append-only guard, as an attacker with database access would."""
    from pli.audit import guard

    with connection.cursor() as cursor:
        guard.drop(cursor, connection.vendor)
    yield
    with connection.cursor() as cursor:
        guard.create(cursor, connection.vendor)


@pytest.fixture(autouse=True)
def _audit_guard_and_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every database test starts with the append-only triggers in place. Transactional
    tests end with Django's flush, which the triggers would refuse: they are lifted for the
    flush only. (Tests ask for `db`/`transactional_db` as fixtures, not through the marker.)"""
    names = set(request.fixturenames)
    transactional = bool(names & {"transactional_db", "live_server"})
    if not transactional and "db" not in names:
        yield
        return
    from pli.audit import guard

    request.getfixturevalue("transactional_db" if transactional else "db")
    with connection.cursor() as cursor:
        guard.create(cursor, connection.vendor)
    yield
    if transactional:
        with connection.cursor() as cursor:
            guard.drop(cursor, connection.vendor)


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    return f"pli database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
