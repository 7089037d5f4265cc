from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _fast_hasher(settings: Any) -> None:
    """Argon2id costs ~0.2 s per hash; these tests don't check the hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _own_blob_dir(settings: Any, tmp_path: Path) -> None:
    """Each test writes its blobs to a folder of its own, so counting them is meaningful
    whatever ran before (a test elsewhere may leave blobs in the shared one)."""
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
