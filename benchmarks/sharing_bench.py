"""Patient shares against a real server (`pli serve`, gunicorn, loopback) and a real worker.

* ``share_create_per_s``: 8 concurrent API clients create shares, each with one 1 MB PDF,
  an e-mail address and a mobile number (the link's e-mail is queued; the code will go by
  SMS), for a few seconds, while no worker runs (the notifications stay queued). Printed
  with it, per share: the CPU of the server's workers and of the clients, and the shares of
  the machine left idle and taken by the hypervisor (``share_create_*_cpu_ms``,
  ``share_create_machine_idle_pct``, ``share_create_machine_steal_pct``).
* ``share_open_p99_ms``: 20 concurrent patients each open shares the way a person does:
  the link page, the birth date, the one-time code, the document list. The figure is the
  99th percentile of those requests' latencies. Not counted: the time the code takes to
  arrive (written by ``pli worker`` to the SMS file outbox, which the patient reads) and a
  short, random "typing" pause before each form (0.2 to 0.6 s; the patients start within
  the first second), since people neither type instantly nor click in lockstep. They
  start once the server and the worker have settled (a worker just started spends a
  second or two of CPU importing and checking), after an untimed warm-up round of
  ``WARMUP_FLOWS`` patients, as on an instance that has been running for a while.
  ``share_open_flow_p99_ms`` adds a flow's four latencies up.
* ``share_download_mb_s``: a 50 MB PDF downloaded by its patient (best of five); compared
  with reading the same blob straight from the blob store in a separate process (best of
  five too): ``share_download_vs_blob_read_pct``, target ≥ 50 %. The median of the five
  downloads is printed too (``share_download_median_mb_s``), with the CPU, loopback, first
  byte and streaming figures described in benchmarks.messaging_bench
  (``share_download_*_cpu_ms``, ``share_loopback_mb_s``,
  ``share_download_first_byte_median_ms``, ``share_download_streaming_mb_s``).

Each figure is measured on SQLite and on PostgreSQL (``name[sqlite]``, ``name[postgresql]``);
the PostgreSQL half runs in a child process under scripts/with-postgresql.sh with fsync on.
The server uses benchmarks.messaging_settings (the API's per-token rate limit raised).
Units: 1 MB = 10**6 bytes.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BIN,
    MB,
    ROOT,
    CpuMeter,
    Figure,
    Server,
    blob_read_mb_s,
    create_database,
    loopback_mb_s,
    multipart,
    percentile,
    pli,
    postgresql_half,
    scratch_dir,
    server_env,
    settle,
    timed_downloads,
    wait_until_idle,
)

CLIENTS = 8
CREATE_SECONDS = float(os.environ.get("PLI_BENCH_SEND_SECONDS") or 10)
DOCUMENT = 1 * MB
PATIENTS = 20
FLOWS_PER_PATIENT = 4
WARMUP_FLOWS = 8
DOWNLOAD = 50 * MB

SETUP = """
import json, re
from pli.accounts.models import Mailbox, MailboxMember, Membership, Organisation, User
from pli.api.services import create_token
from pli.sharing import services
from pli.sharing.models import ShareNotification
from pli.sharing.uploads import PendingFile, share_blob_store
from pli.sharing.models import ShareDocument
from pli.crypto import new_data_key
import datetime, time, uuid
org = Organisation.objects.create(name="Cabinet du banc d'essai", slug="bench")
user = User.objects.create_user("bench@example.fr", None, first_name="Claire", last_name="Banc")
Membership.objects.create(user=user, organisation=org, role="practitioner")
box = Mailbox.objects.create(address="bench@pli.localhost", name="Claire Banc", kind="personal",
                             organisation=org, owner=user)
MailboxMember.objects.create(mailbox=box, user=user)
out = {"tokens": [create_token(user, f"bench {i}")[1] for i in range(8)], "shares": []}
pdf = b"%PDF-1.4\\n" + b"0" * 20000
for n in range(COUNT):
    doc_id = uuid.uuid4(); key = new_data_key()
    info = share_blob_store().put(doc_id.hex, [pdf], key, ShareDocument(id=doc_id).blob_aad("content"))
    pending = PendingFile(id=doc_id, key=key, name=f"bilan-{n}.pdf", content_type="application/pdf",
                          size=info.size, sha256=info.sha256, completed_at=time.monotonic())
    mobile = f"+336{10000000 + n:08d}"
    data = services.ShareInput(given_name="Élodie", family_name=f"Durand{n}", birth_date=datetime.date(1984, 2, 15),
                               email=None, mobile=mobile, message="Vos résultats")
    share = services.create_share(user, data, [pending])
    text = share.notifications.get(kind="link").text
    out["shares"].append({"token": re.search(r"/p/([A-Za-z0-9_-]{43})", text).group(1), "mobile": mobile})
# The links themselves need not be sent, nor their jobs run when the worker starts: patients
# would find it busy with a backlog of jobs that a live instance never has.
ShareNotification.objects.update(state="cancelled")
from django_tasks_db.models import DBTaskResult
DBTaskResult.objects.all().delete()
print("SETUP" + json.dumps(out))
"""


_CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
_DOCUMENT_LINK = re.compile(rb"/p/[A-Za-z0-9_-]{43}/documents/([0-9a-f-]{36})/download")
_CODE = re.compile(r"Pli : (\d{6})|code: (\d{6})|#(\d{6})")


def _pdf(size: int) -> bytes:
    head = b"%PDF-1.4\n% Pli benchmark\n"
    return head + os.urandom(size - len(head))


def _share_fields(n: int) -> list[tuple[str, str]]:
    return [
        ("patient_given_name", "Élodie"),
        ("patient_family_name", f"Durand{n}"),
        ("patient_birth_date", "1984-02-15"),
        ("patient_email", f"patient{n}@example.org"),
        ("patient_mobile", "+33612345678"),
        ("message", "Voici vos résultats."),
    ]


def _bench_create(server: Server, tokens: list[str]) -> tuple[float, list[Figure]]:
    """Shares created per second, and where the CPU went while they were measured (per
    share)."""
    port = server.port
    body, content_type = multipart(_share_fields(0), [("documents", "bilan.pdf", _pdf(DOCUMENT))])
    counts = [0] * CLIENTS
    errors: list[str] = []
    gate = threading.Barrier(CLIENTS + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {tokens[index]}", "Content-Type": content_type}
        gate.wait()
        while time.perf_counter() < deadline[0]:
            conn.request("POST", "/api/v1/shares", body, headers)
            response = conn.getresponse()
            data = response.read()
            if response.status == 201:
                counts[index] += 1
            else:
                errors.append(f"{response.status} {data[:200]!r}")
                return
        conn.close()

    for timed in (False, True):  # a warm-up round, then the measured one
        counts[:] = [0] * CLIENTS
        gate.reset()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        deadline[0] = time.perf_counter() + (CREATE_SECONDS if timed else 1.5)
        with CpuMeter(server.workers()) as cpu:
            begin = time.perf_counter()
            gate.wait()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - begin
        if errors:
            raise RuntimeError(f"share creation failed: {errors[:3]}")
    return sum(counts) / elapsed, cpu.figures("share_create", max(1, sum(counts)))


class Browser:
    """A patient's browser over one keep-alive connection: cookies, CSRF token, timings."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            from urllib.parse import urlencode

            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = time.perf_counter()
        self.conn.request(method, path, body, headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response.status, data, elapsed


class CodeInbox:
    """Watches the SMS outbox (one reader for all patients, as a phone would be one per
    patient): the latest code and link per number, with the time they arrived."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.codes: dict[str, tuple[float, str]] = {}
        self.links: dict[str, str] = {}
        self._seen: set[str] = set()
        self._changed = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while self._running:
            try:
                entries = sorted(e.name for e in os.scandir(self.directory) if e.name.endswith(".json"))
            except FileNotFoundError:
                entries = []
            fresh = [name for name in entries if name not in self._seen]
            for name in fresh:
                self._seen.add(name)
                record = json.loads((self.directory / name).read_text())
                code = _CODE.search(record["text"])
                link = re.search(r"/p/([A-Za-z0-9_-]{43})", record["text"])
                with self._changed:
                    if code:
                        self.codes[record["to"]] = (time.time(), next(g for g in code.groups() if g))
                    if link:
                        self.links[record["to"]] = link.group(1)
                    self._changed.notify_all()
            time.sleep(0.02)

    def code(self, mobile: str, after: float, timeout: float = 60) -> str:
        with self._changed:
            if not self._changed.wait_for(lambda: self.codes.get(mobile, (0.0, ""))[0] > after, timeout=timeout):
                raise RuntimeError(f"no code arrived for {mobile}")
            return self.codes[mobile][1]

    def link(self, mobile: str, timeout: float = 60) -> str:
        with self._changed:
            if not self._changed.wait_for(lambda: mobile in self.links, timeout=timeout):
                raise RuntimeError(f"no link arrived for {mobile}")
            return self.links[mobile]

    def close(self) -> None:
        self._running = False
        self._thread.join()


def _bench_open(port: int, shares: list[dict[str, str]], inbox: CodeInbox) -> tuple[float, float]:
    """The measured patients, after a warm-up round of WARMUP_FLOWS patients at once on the
    last shares (untimed, as for share creation): every server thread has opened its
    database connection and touched the pages of its worker's memory, as on a live
    instance, before the first measured patient comes."""
    measured = PATIENTS * FLOWS_PER_PATIENT
    _open_round(port, shares[measured : measured + WARMUP_FLOWS], inbox, WARMUP_FLOWS, 1)
    steps, flows = _open_round(port, shares[:measured], inbox, PATIENTS, FLOWS_PER_PATIENT)
    return percentile(steps, 99), percentile(flows, 99)


def _open_round(
    port: int, shares: list[dict[str, str]], inbox: CodeInbox, patients: int, flows_per_patient: int
) -> tuple[list[float], list[float]]:
    steps: list[float] = []
    flows: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(patients)

    def patient(index: int) -> None:
        gate.wait()
        time.sleep(random.uniform(0, 1))
        try:
            flow(index)
        except Exception as exc:  # reported after the threads end
            errors.append(repr(exc))

    def flow(index: int) -> None:
        for round_ in range(flows_per_patient):
            share = shares[index * flows_per_patient + round_]
            browser = Browser(port)
            link = f"/p/{share['token']}"
            status, page, landing = browser.request("GET", link)
            match = _CSRF_INPUT.search(page)
            if status != 200 or match is None:
                errors.append(f"landing {status}")
                return
            csrf = match.group(1).decode()
            time.sleep(random.uniform(0.2, 0.6))
            asked = time.time()
            status, _, birth = browser.request("POST", link, {"csrfmiddlewaretoken": csrf, "birth_date": "15/02/1984"})
            if status != 303:
                errors.append(f"birth date {status}")
                return
            browser.conn.close()  # idle while the SMS arrives: the server may drop the connection
            code = inbox.code(share["mobile"], asked)
            time.sleep(random.uniform(0.2, 0.6))
            status, _, checked = browser.request("POST", f"{link}/code", {"csrfmiddlewaretoken": csrf, "code": code})
            if status != 303:
                errors.append(f"code {status}")
                return
            status, page, listed = browser.request("GET", f"{link}/documents")
            if status != 200 or not _DOCUMENT_LINK.search(page):
                errors.append(f"documents {status}")
                return
            browser.conn.close()
            with lock:
                steps.extend([landing, birth, checked, listed])
                flows.append(landing + birth + checked + listed)

    threads = [threading.Thread(target=patient, args=(i,)) for i in range(patients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"patient flow failed: {errors[:5]}")
    return steps, flows


def _bench_download(server: Server, env: dict[str, str], tokens: list[str], inbox: CodeInbox) -> list[Figure]:
    port = server.port
    content = _pdf(DOWNLOAD)
    # A mobile and no address: the link then comes by SMS, where the inbox reads it (with an
    # address it would go by e-mail, the code by SMS).
    fields = [(k, v) for k, v in _share_fields(1) if k not in ("patient_mobile", "patient_email")]
    fields.append(("patient_mobile", "+33699999999"))
    body, content_type = multipart(fields, [("documents", "scanner.pdf", content)])
    del content
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/api/v1/shares", body, {"Authorization": f"Bearer {tokens[0]}", "Content-Type": content_type})
    response = conn.getresponse()
    created = json.loads(response.read())
    conn.close()
    if response.status != 201:
        raise RuntimeError(f"upload failed: {response.status} {created}")
    del body
    # The link, as the patient gets it (by SMS, from the worker).
    token = inbox.link("+33699999999")
    browser = Browser(port)
    link = f"/p/{token}"
    _status, page, _ms = browser.request("GET", link)
    match = _CSRF_INPUT.search(page)
    if match is None:
        raise RuntimeError("the link page has no form")
    csrf = match.group(1).decode()
    asked = time.time()
    browser.request("POST", link, {"csrfmiddlewaretoken": csrf, "birth_date": "15/02/1984"})
    browser.conn.close()
    code = inbox.code("+33699999999", asked)
    browser.request("POST", f"{link}/code", {"csrfmiddlewaretoken": csrf, "code": code})
    _status, page, _ms = browser.request("GET", f"{link}/documents")
    found_document = _DOCUMENT_LINK.search(page)
    if found_document is None:
        raise RuntimeError("the patient does not see the document")
    document_id = found_document.group(1).decode()
    url = f"{link}/documents/{document_id}/download"
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}
    with CpuMeter(server.workers()) as cpu:
        downloads = timed_downloads(browser.conn, url, headers, DOWNLOAD)
    browser.conn.close()
    direct = blob_read_mb_s(
        env, "pli.sharing.models.ShareDocument", "pli.sharing.uploads.share_blob_store", document_id
    )
    loopback = loopback_mb_s(DOWNLOAD)
    rates = downloads.rates
    rate = max(rates)  # best of five, like the blob read it is compared with
    return [
        ("share_download_mb_s", rate, "MB/s"),
        ("share_download_median_mb_s", statistics.median(rates), "MB/s"),
        ("share_blob_read_mb_s", direct, "MB/s"),
        ("share_download_vs_blob_read_pct", 100 * rate / direct, "%"),
        *downloads.figures("share_download", direct),
        *cpu.figures("share_download", len(rates)),
        ("share_loopback_mb_s", loopback, "MB/s"),
        ("share_download_vs_loopback_pct", 100 * rate / loopback, "%"),
    ]


def measure(database_url: str | None) -> list[Figure]:
    data_dir = scratch_dir("sharing-")
    worker: subprocess.Popen[bytes] | None = None
    try:
        env = server_env(data_dir / "data", database_url)
        sms_dir = data_dir / "sms"
        env["PLI_SMS_URL"] = f"file://{sms_dir}"
        env["PLI_EMAIL_URL"] = f"file://{data_dir / 'email'}"
        pli(env, "migrate", "--no-input", "--verbosity", "0")
        count = PATIENTS * FLOWS_PER_PATIENT + WARMUP_FLOWS
        setup = pli(env, "shell", "-c", SETUP.replace("COUNT", str(count)), marker="SETUP")
        server = Server(env, data_dir / "server.log")
        server.start()
        with (data_dir / "worker.log").open("ab") as log:
            worker = subprocess.Popen([str(BIN / "pli"), "worker"], env=env, cwd=ROOT, stdout=log, stderr=log)
        inbox = CodeInbox(sms_dir)
        try:
            wait_until_idle([*server.workers(), worker.pid])
            settle()
            step_p99, flow_p99 = _bench_open(server.port, setup["shares"], inbox)
            settle()
            download = _bench_download(server, env, setup["tokens"], inbox)
            # Creation is measured with the worker stopped: the figure is the API's, with
            # the notifications queued; delivering them is the worker's (on another core or
            # machine in a real deployment) and has a figure of its own in the tests.
            worker.terminate()
            worker.wait(timeout=30)
            settle()
            created, create_cpu = _bench_create(server, setup["tokens"])
        finally:
            inbox.close()
            server.stop()
        return [
            ("share_create_per_s", created, "shares/s"),
            *create_cpu,
            ("share_open_p99_ms", step_p99, "ms"),
            ("share_open_flow_p99_ms", flow_p99, "ms"),
            *download,
        ]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)


def run() -> list[Figure]:
    figures = [(f"{name}[sqlite]", value, unit) for name, value, unit in measure(None)]
    figures += [
        (f"{name}[postgresql]", value, unit) for name, value, unit in postgresql_half("benchmarks.sharing_bench")
    ]
    return figures


def _print(figures: list[Any]) -> None:
    for name, value, unit in figures:
        print(f"{name} {value:.1f} {unit}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["postgresql"]:
        print(json.dumps(measure(create_database(os.environ["PLI_DATABASE_URL"]))))
    elif sys.argv[1:2] == ["sqlite"]:
        _print([(f"{name}[sqlite]", value, unit) for name, value, unit in measure(None)])
    else:
        _print(run())
