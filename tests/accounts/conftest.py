from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from pli.accounts.models import Organisation, User
from pli.testing.accounts import make_organisation, make_user


@pytest.fixture(autouse=True)
def _fast_hasher(settings: Any) -> None:
    """Argon2id costs ~0.2 s per hash; tests that don't check the hasher itself use a fast one."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache(request: pytest.FixtureRequest) -> Iterator[None]:
    """Rate-limit counters live in the database cache; committed tests would share them."""
    if {"db", "transactional_db", "live_server"} & set(request.fixturenames):
        cache.clear()
    yield


@pytest.fixture
def organisation(db: None) -> Organisation:
    return make_organisation("Cabinet Alpha")


@pytest.fixture
def admin(organisation: Organisation) -> User:
    return make_user(organisation, role="admin", email="admin@alpha.example.org", first_name="Alice")


@pytest.fixture
def admin_client(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client
