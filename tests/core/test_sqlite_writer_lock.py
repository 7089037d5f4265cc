"""pli.core.sqlite3: SQLite transactions queue on a kernel lock before BEGIN IMMEDIATE."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pli.core.sqlite3.base import DatabaseWrapper


@pytest.fixture(autouse=True)
def _own_databases(django_db_blocker: Any) -> Iterator[None]:
    """These tests open their own SQLite files, not the test database."""
    with django_db_blocker.unblock():
        yield


def _wrapper(path: Path) -> Any:
    settings = {
        "ENGINE": "pli.core.sqlite3",
        "NAME": str(path),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"},
        "ATOMIC_REQUESTS": False,
        "AUTOCOMMIT": True,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "TIME_ZONE": None,
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "TEST": {},
    }
    return DatabaseWrapper(settings, alias=f"writer-lock-{id(settings)}")


def _lock_is_free(path: Path) -> bool:
    fd = os.open(f"{path}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _begin(db: Any) -> None:
    db.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)


@pytest.mark.parametrize("ending", ["commit", "rollback", "close"])
def test_the_lock_is_held_from_begin_to_the_end_of_the_transaction(tmp_path: Path, ending: str) -> None:
    path = tmp_path / "db.sqlite3"
    db = _wrapper(path)
    db.ensure_connection()
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE t (n INTEGER)")
    assert _lock_is_free(path)
    _begin(db)
    with db.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")
    assert not _lock_is_free(path)
    if ending == "commit":
        db.commit()
    elif ending == "rollback":
        db.rollback()
    else:
        db.close()
    assert _lock_is_free(path)
    db.close()


def test_concurrent_writers_all_succeed_in_turn(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    setup = _wrapper(path)
    with setup.cursor() as cursor:
        cursor.execute("CREATE TABLE counter (n INTEGER)")
        cursor.execute("INSERT INTO counter VALUES (0)")
    setup.close()
    errors: list[BaseException] = []

    def writer() -> None:
        db = _wrapper(path)
        try:
            for _ in range(50):
                _begin(db)
                with db.cursor() as cursor:
                    cursor.execute("SELECT n FROM counter")
                    (n,) = cursor.fetchone()
                    cursor.execute("UPDATE counter SET n = %s", [n + 1])
                db.commit()
                db.set_autocommit(True)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    check = _wrapper(path)
    with check.cursor() as cursor:
        cursor.execute("SELECT n FROM counter")
        assert cursor.fetchone() == (200,)
    check.close()
