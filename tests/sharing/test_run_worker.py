"""`pli run` (what `make run` calls) starts the background worker beside the web server,
and stops it when the server stops."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_pli_run_starts_and_stops_the_worker(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLI_DATABASE")}
    env.update(PLI_DATA_DIR=str(tmp_path / "data"), PLI_ENV="development", PLI_TESTING="0")
    log = (tmp_path / "run.log").open("w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "pli.cli", "run", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    worker = None
    try:
        deadline = time.monotonic() + 60
        database = tmp_path / "data" / "pli.sqlite3"
        done = 0
        while time.monotonic() < deadline:
            workers = [p for p in _children(server.pid) if " worker" in _cmdline(p)]
            if workers:
                worker = workers[0]
            if worker and database.exists():
                with sqlite3.connect(database) as db:
                    try:
                        done = db.execute(
                            "SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status='SUCCESSFUL'"
                        ).fetchone()[0]
                    except sqlite3.OperationalError:
                        done = 0
                if done:
                    break
            time.sleep(0.3)
        assert worker is not None, "no worker process beside the server"
        assert done >= 1, "the worker ran no job (the periodic job starts with it)"
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=40)
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived the server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
