from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pli.messaging.uploads import blob_store


@pytest.fixture(autouse=True)
def _own_blob_dir(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Each test writes its blobs to a folder of its own, so counting them is meaningful."""
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    yield


def stored_blobs() -> list[str]:
    return list(blob_store().iter_ids())


def temp_files() -> list[Path]:
    directory = blob_store().temp_dir
    return list(directory.iterdir()) if directory.is_dir() else []


def assert_nothing_saved() -> None:
    """A refused send left no message, attachment, copy, blob or partial upload."""
    from pli.messaging.models import Attachment, Delivery, Message

    assert Message.objects.count() == 0
    assert Attachment.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert stored_blobs() == []
    assert temp_files() == []
