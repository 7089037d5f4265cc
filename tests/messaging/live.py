"""A real Pli server (``pli serve``, gunicorn) in a subprocess, on its own data dir and
database, for tests that must crash it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
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


def setup_users(env: dict[str, str], count: int) -> dict[str, Any]:
    pli(env, "migrate", "--no-input", "--verbosity", "0")
    out = pli(env, "shell", "-c", SETUP.replace("COUNT", str(count)))
    line = next(line for line in out.splitlines() if line.startswith("SETUP"))
    return dict(json.loads(line[len("SETUP") :]))


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
