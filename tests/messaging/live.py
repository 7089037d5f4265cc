"""A real Pli server (``pli serve``, gunicorn) in a subprocess, on its own data dir and
database, for tests that must crash it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

VENV_BIN = Path(sys.executable).parent
SETUP = """
import json
from pli.accounts.models import Mailbox, MailboxMember, Membership, Organisation, User
from pli.api.services import create_token
out = {}
for n in range(COUNT):
    org = Organisation.objects.create(name=f"Org {n}", slug=f"org-{n}")
    user = User.objects.create_user(f"user{n}@example.fr", None, first_name=f"User{n}")
    Membership.objects.create(user=user, organisation=org, role="practitioner")
    box = Mailbox.objects.create(address=f"user{n}@pli.localhost", name=f"User {n}", kind="personal",
                                 organisation=org, owner=user)
    MailboxMember.objects.create(mailbox=box, user=user)
    out[f"user{n}"] = {"address": box.address, "mailbox": str(box.pk), "token": create_token(user, "t")[1]}
print("SETUP" + json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLI_", "DJANGO_"))}
    env.update({"PLI_DATA_DIR": str(data_dir), "PLI_ENV": "development", "PLI_LOG_LEVEL": "WARNING"})
    if database_url:
        env["PLI_DATABASE_URL"] = database_url
    return env


def create_database(base_url: str) -> str:
    """A new, empty database on the test PostgreSQL server; returns its URL."""
    import psycopg

    parts = urlsplit(base_url)
    name = f"pli_live_{uuid.uuid4().hex[:10]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.strip("/")}" WITH (FORCE)')


def pli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "pli"), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"pli {' '.join(args)} failed: {result.stderr[-3000:]}")
    return result.stdout


@contextlib.contextmanager
def own_database() -> Iterator[str | None]:
    """On PostgreSQL, a database of its own for the server (dropped afterwards); None on
    SQLite, where the server's data dir holds its own."""
    from django.db import connection

    if connection.vendor != "postgresql":
        yield None
        return
    url = create_database(os.environ["PLI_DATABASE_URL"])
    try:
        yield url
    finally:
        drop_database(url)


def shell_json(env: dict[str, str], script: str, marker: str) -> dict[str, Any]:
    """Run ``script`` in ``pli shell``; it prints ``marker`` followed by a JSON object."""
    out = pli(env, "shell", "-c", script)
    line = next(line for line in out.splitlines() if line.startswith(marker))
    return dict(json.loads(line[len(marker) :]))


def setup_users(env: dict[str, str], count: int) -> dict[str, Any]:
    pli(env, "migrate", "--no-input", "--verbosity", "0")
    return shell_json(env, SETUP.replace("COUNT", str(count)), "SETUP")


# Makes every file of a blob store two hours old, so that the orphan clean-up judges them.
AGE_BLOBS = """
import os, time
from STORE_MODULE import STORE_FUNCTION as store
then = time.time() - 7200
for dirpath, _, names in os.walk(store().root):
    for name in names:
        os.utime(os.path.join(dirpath, name), (then, then))
"""


def age_blobs(env: dict[str, str], store: str) -> None:
    """Age the files of the blob store returned by ``store`` ("module.function")."""
    module, function = store.rsplit(".", 1)
    pli(env, "shell", "-c", AGE_BLOBS.replace("STORE_MODULE", module).replace("STORE_FUNCTION", function))


ClientLoop = Callable[["Server", dict[str, Any], int, threading.Event], None]


def kill_during(server: Server, users: dict[str, Any], client: ClientLoop, *, rounds: int, clients: int) -> None:
    """``rounds`` times: start the server, run ``clients`` threads of ``client`` against it,
    SIGKILL it after 1 to 3 s (at random), then let the clients see it gone."""
    rng = random.Random()
    for _round in range(rounds):
        server.start()
        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(server, users, i, stop), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(1.0, 3.0))
        server.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


class Server:
    def __init__(self, env: dict[str, str], log: Path, workers: int = 2, threads: int = 4) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.workers = workers
        self.threads = threads
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "pli"),
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
            ],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes master and workers
        )
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        """SIGKILL the whole group: no graceful shutdown, no cleanup, like a power cut for
        the processes (the kernel still writes what they had handed over)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None
