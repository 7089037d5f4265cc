"""What the server benchmarks share: a real `pli serve` on loopback, the `pli` command,
multipart bodies, percentiles, and the PostgreSQL half run under scripts/with-postgresql.sh."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MB = 1_000_000
ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
BIN = Path(sys.executable).parent
WORKERS = int(os.environ.get("PLI_BENCH_WORKERS") or 4)
THREADS = int(os.environ.get("PLI_BENCH_THREADS") or 2)

Figure = tuple[str, float, str]
_RUN_DIR = "PLI_BENCH_RUN_DIR"


def settle() -> None:
    """Write back what earlier phases left dirty before a timed phase: otherwise the kernel
    flushes it during the measurement (a gigabyte of shared documents, say) and every
    fsync'ed commit of the phase waits behind it."""
    os.sync()


def scratch_dir(prefix: str) -> Path:
    """A new directory for one measurement's data, removed when the whole run ends.

    Not removed at once: on this machine's ext4 (no journal), creating files stays slow for
    about 30 s after many were deleted, so a measurement following another's clean-up (the
    PostgreSQL half after the SQLite one) would pay for it. The run's directory is handed to
    child processes through the environment and removed by the process that made it.
    """
    root = os.environ.get(_RUN_DIR)
    if root is None:
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        root = tempfile.mkdtemp(dir=BENCH_DIR, prefix="run-")
        os.environ[_RUN_DIR] = root
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=prefix))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLI_", "DJANGO_"))}
    env.update(
        PLI_DATA_DIR=str(data_dir),
        PLI_ENV="development",
        PLI_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="benchmarks.messaging_settings",
        # This tree's code, also when the virtualenv's editable install points at another
        # checkout (an older commit's worktree run against the same .venv, to compare).
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    )
    if database_url:
        env["PLI_DATABASE_URL"] = database_url
    return env


def pli(env: dict[str, str], *args: str, marker: str = "") -> Any:
    result = subprocess.run(
        [str(BIN / "pli"), *args], env=env, capture_output=True, text=True, cwd=ROOT, check=False, timeout=3600
    )
    if result.returncode != 0:
        raise RuntimeError(f"pli {args[0]} failed: {result.stderr[-3000:]}")
    if not marker:
        return None
    line = next(line for line in result.stdout.splitlines() if line.startswith(marker))
    return json.loads(line[len(marker) :])


def vm(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure, in kB."""
    match = re.search(rf"^{field}:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [str(BIN / "pli"), "serve", "--port", str(self.port), "--threads", str(THREADS)]
        if WORKERS:
            cmd += ["--workers", str(WORKERS)]
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                cmd, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200 and len(self.workers()) >= 1:
                    time.sleep(1)  # let every worker finish booting
                    return
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def workers(self) -> list[int]:
        if self.process is None:
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, content in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        parts += [head, content, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def create_database(base_url: str) -> str:
    import psycopg

    parts = urlsplit(base_url)
    name = f"pli_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


_BLOB_READ = """
import json, time
from {module} import {model}
from {store_module} import {store}
obj = {model}.objects.select_related("data_key").get(pk="{object_id}")
store = {store}()
times = []
for _ in range(5):
    start = time.perf_counter()
    total = 0
    with store.open(obj.blob_id, obj.data_encryption_key(), obj.blob_aad("content")) as reader:
        for piece in reader:
            total += len(piece)
    times.append(time.perf_counter() - start)
assert total == obj.size
print("READ" + json.dumps({{"seconds": min(times), "bytes": total}}))
"""


def blob_read_mb_s(env: dict[str, str], model: str, store: str, object_id: str) -> float:
    """Best of five reads (and decryptions) of an object's blob straight from its store, in a
    separate process: what a download is compared with. ``model`` and ``store`` are dotted
    paths (``pli.messaging.models.Attachment``, ``pli.messaging.uploads.blob_store``)."""
    module, _, model_name = model.rpartition(".")
    store_module, _, store_name = store.rpartition(".")
    script = _BLOB_READ.format(
        module=module, model=model_name, store_module=store_module, store=store_name, object_id=object_id
    )
    read = pli(env, "shell", "-c", script, marker="READ")
    return float(read["bytes"] / read["seconds"] / MB)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def wait_until_idle(pids: list[int], quiet: float = 0.5, timeout: float = 60) -> None:
    """Wait until the processes ``pids`` have used (almost) no CPU for ``quiet`` seconds: a
    worker just started is still importing, checking and scheduling its periodic jobs, work
    that a live instance did long before its patients arrived."""
    deadline = time.monotonic() + timeout
    last = sum(_process_cpu_s(pid) for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        used = sum(_process_cpu_s(pid) for pid in pids)
        if used - last < 0.02 * quiet:
            return
        last = used
    raise RuntimeError("the server or the worker did not settle")


def _machine_ticks() -> tuple[int, int, int]:
    """(idle, steal, total) CPU ticks of the whole machine since boot."""
    with open("/proc/stat") as handle:
        ticks = [int(value) for value in handle.readline().split()[1:]]
    # idle + iowait; steal is the time the hypervisor gave this machine's CPUs to others;
    # guest time is within user.
    return ticks[3] + ticks[4], ticks[7], sum(ticks[:8])


class CpuMeter:
    """Where the CPU went during a timed phase: the server's workers, this (client)
    process, how much of the machine stayed idle and how much the hypervisor took away
    (steal). A download that leaves cores idle is held back by hand-overs between threads
    and processes, not by the work itself; a phase that lost a third of the machine to
    steal measured the host, not Pli (the same commit's sends/s moved from about 50 to 140
    within an hour, with steal at 35-50 % during the low runs). The server's CPU is its gunicorn
    workers' alone: PostgreSQL's own processes are not in it."""

    def __init__(self, server_pids: list[int]) -> None:
        self._pids = server_pids

    def __enter__(self) -> CpuMeter:
        self._server = sum(_process_cpu_s(pid) for pid in self._pids)
        self._client = sum(os.times()[:2])
        self._idle, self._steal, self._total = _machine_ticks()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server_s = sum(_process_cpu_s(pid) for pid in self._pids) - self._server
        self.client_s = sum(os.times()[:2]) - self._client
        idle, steal, total = _machine_ticks()
        self.idle_pct = 100 * (idle - self._idle) / max(1, total - self._total)
        self.steal_pct = 100 * (steal - self._steal) / max(1, total - self._total)

    def figures(self, prefix: str, count: int) -> list[Figure]:
        return [
            (f"{prefix}_server_cpu_ms", 1000 * self.server_s / count, "ms"),
            (f"{prefix}_client_cpu_ms", 1000 * self.client_s / count, "ms"),
            (f"{prefix}_machine_idle_pct", self.idle_pct, "%"),
            (f"{prefix}_machine_steal_pct", self.steal_pct, "%"),
        ]


@dataclass
class Downloads:
    """What :func:`timed_downloads` measured, one entry per download: MB/s from the request
    to the last byte; the time to the first byte of the body (the server's work before it
    may send anything: authentication, access checks, the audit record's synced commit);
    and MB/s of the streaming alone (the bytes after the first read, over the time after
    it)."""

    rates: list[float]
    first_byte_ms: list[float]
    streaming: list[float]

    def figures(self, prefix: str, blob_read: float) -> list[Figure]:
        """The median time to the first byte, and the best streaming rate alone, also
        against the blob read (``blob_read``, MB/s)."""
        streaming = max(self.streaming)
        return [
            (f"{prefix}_first_byte_median_ms", statistics.median(self.first_byte_ms), "ms"),
            (f"{prefix}_streaming_mb_s", streaming, "MB/s"),
            (f"{prefix}_streaming_vs_blob_read_pct", 100 * streaming / blob_read, "%"),
        ]


def timed_downloads(
    conn: http.client.HTTPConnection, url: str, headers: dict[str, str], size: int, rounds: int = 5
) -> Downloads:
    """``rounds`` downloads of ``url`` (``size`` bytes each) one after the other on the
    keep-alive ``conn``, each read into one reused 1 MiB buffer, as an efficient client
    does."""
    buffer = memoryview(bytearray(1 << 20))
    measured = Downloads([], [], [])
    for _ in range(rounds):
        start = time.perf_counter()
        conn.request("GET", url, headers=headers)
        response = conn.getresponse()
        total = head = response.readinto(buffer)
        first = time.perf_counter()
        while True:
            count = response.readinto(buffer)
            if not count:
                break
            total += count
        end = time.perf_counter()
        if response.status != 200 or total != size:
            raise RuntimeError(f"download failed: {response.status}, {total} bytes")
        measured.rates.append(size / (end - start) / MB)
        measured.first_byte_ms.append(1000 * (first - start))
        measured.streaming.append((size - head) / (end - first) / MB)
    return measured


_LOOPBACK_SENDER = """
import socket, sys
size, segment = int(sys.argv[1]), 1 << 20
data = bytes(range(256)) * (segment // 256)
with socket.create_server(("127.0.0.1", 0)) as server:
    print(server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    while conn.recv(1):
        left = size
        while left:
            view = memoryview(data)[: min(segment, left)]
            conn.sendall(view)
            left -= len(view)
"""


def loopback_mb_s(size: int, rounds: int = 5) -> float:
    """Best of ``rounds`` transfers of ``size`` bytes over loopback TCP between two Python
    processes, the sender sending ready-made bytes 1 MiB at a time and the receiver reading
    as the benchmarks' clients do: the most any download can reach on this machine with
    this client, before the server does any work of its own."""
    sender = subprocess.Popen([sys.executable, "-c", _LOOPBACK_SENDER, str(size)], stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout is not None  # noqa: S101 -- stdout=PIPE
        port = int(sender.stdout.readline())
        buffer = memoryview(bytearray(1 << 20))
        best = 0.0
        with socket.create_connection(("127.0.0.1", port)) as conn:
            for _ in range(rounds):
                start = time.perf_counter()
                conn.sendall(b"g")
                received = 0
                while received < size:
                    count = conn.recv_into(buffer, min(len(buffer), size - received))
                    if not count:
                        raise RuntimeError("loopback sender went away")
                    received += count
                best = max(best, size / (time.perf_counter() - start) / MB)
        return best
    finally:
        sender.kill()
        sender.wait()


def postgresql_half(module: str) -> list[Figure]:
    """``python -m <module> postgresql`` in a fresh PostgreSQL cluster with fsync on (so that
    commits are really durable); its last output line is the figures as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLI_DATABASE")}
    env["PLI_TEST_PG_FSYNC"] = "on"
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [str(ROOT / "scripts" / "with-postgresql.sh"), sys.executable, "-m", module, "postgresql"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"PostgreSQL half failed: {result.stderr[-3000:]}")
    line = result.stdout.strip().splitlines()[-1]
    return [(name, value, unit) for name, value, unit in json.loads(line)]
