"""How Pli talks to PostgreSQL: parameters bound by the server, frequent statements
prepared (pli/settings.py), unless the operator says otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.db import connection

_PRINT_OPTIONS = "import json; from pli import settings; print(json.dumps(settings.DATABASES['default']['OPTIONS']))"


def _options(tmp_path: Path, url: str, **extra: str) -> dict[str, Any]:
    """The database options the settings derive, in a fresh interpreter: settings are read
    once per process. Nothing connects to the URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLI_")}
    env.update(PLI_DATA_DIR=str(tmp_path), PLI_DATABASE_URL=url, **extra)
    result = subprocess.run(
        [sys.executable, "-c", _PRINT_OPTIONS], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_postgresql_binds_on_the_server_and_prepares_frequent_statements(tmp_path: Path) -> None:
    url = "postgresql://pli@127.0.0.1:5432/pli"
    assert _options(tmp_path, url) == {"server_side_binding": True, "prepare_threshold": 5}
    # Behind a pooler that loses prepared statements between transactions.
    assert _options(tmp_path, url, PLI_DATABASE_PREPARED_STATEMENTS="off") == {"server_side_binding": True}
    # The URL's own options win.
    assert _options(tmp_path, url + "?server_side_binding=false&prepare_threshold=10") == {
        "server_side_binding": False,
        "prepare_threshold": 10,
    }


def test_statements_a_connection_keeps_running_are_prepared(db: None) -> None:
    statement = "SELECT count(*) FROM pli_data_key WHERE key_version = %s"
    with connection.cursor() as cursor:
        for _ in range(6):
            cursor.execute(statement, [1])
        if connection.vendor == "postgresql":
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row[0] for row in cursor.fetchall()]
            assert statement.replace("%s", "$1") in prepared
        else:
            # SQLite has no such options (Python's sqlite3 caches compiled statements itself);
            # sqlite3.connect would refuse them.
            assert not {"server_side_binding", "prepare_threshold"} & set(connection.settings_dict["OPTIONS"])


def test_a_commit_is_durable_when_it_returns(db: None) -> None:
    """A 2xx means committed and durable. With SQLite's WAL, ``synchronous=NORMAL`` lets the
    last commits roll back after a power cut or a crash of the machine: a message answered
    201 could vanish, and one deleted for good could come back without its attachments
    (their blobs are unlinked, and the unlinking made durable, once the commit returns).
    ``FULL`` syncs the WAL at every commit; PostgreSQL does so by default."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA synchronous")
            assert cursor.fetchone()[0] == 2  # FULL
        else:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] != "off"
