"""Loaded by pytest with ``-p pli.testing.env`` before Django reads its settings: every test
run gets its own data dir (database, keys, blobs), so tests never touch ./var."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_data_dir = tempfile.mkdtemp(prefix="pli-test-")
atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)

os.environ["PLI_DATA_DIR"] = _data_dir
os.environ["PLI_TESTING"] = "1"
os.environ.setdefault("PLI_ENV", "development")
os.environ.setdefault("PLI_PUBLIC_URL", "http://127.0.0.1:8000")
# Reminders at any hour: tests run at any time of day with the real clock; the tests of the
# daytime window set it themselves.
os.environ["PLI_REMINDER_HOURS"] = "0-24"
for name in ("PLI_KEYS_DIR", "PLI_MASTER_KEY", "PLI_SECRET_KEY", "PLI_DEBUG"):
    os.environ.pop(name, None)
