from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _own_outboxes(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Each test has its own blob store and SMS folder, so what they hold is this test's."""
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    settings.PLI_SMS_URL = f"file://{tmp_path / 'sms'}"
    yield
    # A channel paused after a slow failure (pli.sharing.notifications) stays in its test.
    from pli.sharing import notifications

    notifications._paused_until.clear()
