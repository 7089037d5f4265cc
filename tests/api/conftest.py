from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _fast_hasher(settings: Any) -> None:
    """Argon2id costs ~0.2 s per hash; these tests don't check the hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
