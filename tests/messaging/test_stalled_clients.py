"""A client that stops half-way is let go after PLI_CLIENT_TIMEOUT seconds: a real `pli serve`
with one thread, so that a thread held for good would leave nobody to answer the next
request."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from messaging.live import Server, server_env, setup_users

TIMEOUT = 2


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Server, dict[str, Any], Path]]:
    env = {**server_env(tmp_path / "data", None), "PLI_CLIENT_TIMEOUT": str(TIMEOUT)}
    users = setup_users(env, 2)
    server = Server(env, tmp_path / "server.log", workers=1, threads=1)
    server.start()
    try:
        yield server, users, tmp_path / "data"
    finally:
        server.stop()


def _answered_within(server: Server, seconds: float) -> float:
    """How long until the (only) thread answers another request."""
    start = time.monotonic()
    response = requests.get(f"{server.url}/healthz", timeout=seconds)
    assert response.status_code == 200
    return time.monotonic() - start


def test_an_upload_that_stalls_is_refused_and_frees_its_thread(live: tuple[Server, dict[str, Any], Path]) -> None:
    server, users, data_dir = live
    sender, recipient = users["user0"], users["user1"]
    # A long boundary: "--B" turns up in 1.5 MB of random bytes about one time in ten, and a
    # boundary inside a file's data is refused at once (400), with no upload to stall.
    boundary = f"pli-{uuid.uuid4().hex}"
    part = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="sender"\r\n\r\n'
        f"{sender['address']}\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="to"\r\n\r\n'
        f"{recipient['address']}\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="attachments"; filename="cr.pdf"\r\n\r\n'
        "%PDF-1.4 "
    ).encode()
    head = (
        "POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {sender['token']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 3000000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as stalled:
        stalled.sendall(head + part + os.urandom(1_500_000))
        # The upload has started: a temporary blob is being written (waited for, not slept
        # on: a loaded machine may take longer than half a second to get there).
        temporary = data_dir / "blobs" / "messages" / "tmp"
        deadline = time.monotonic() + 10
        while not (temporary.is_dir() and list(temporary.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(temporary.iterdir())
        # The one thread is busy with the stalled upload until the timeout lets it go.
        assert _answered_within(server, TIMEOUT + 10) >= TIMEOUT - 1
        stalled.settimeout(10)
        reply = stalled.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert "cessé d" in reply.decode(errors="replace")
    assert list(temporary.iterdir()) == []
    log = server.log.read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log


def test_a_download_nobody_reads_frees_its_thread(live: tuple[Server, dict[str, Any], Path]) -> None:
    server, users, _data_dir = live
    sender, recipient = users["user0"], users["user1"]
    content = os.urandom(1 << 20) * 40  # beyond what the sockets' buffers hold
    created = requests.post(
        f"{server.url}/api/v1/messages",
        data={"sender": sender["address"], "to": recipient["address"], "subject": "Scanner"},
        files={"attachments": ("scanner.dcm", content)},
        headers={"Authorization": f"Bearer {sender['token']}"},
        timeout=60,
    ).json()
    url = f"/api/v1/messages/{created['id']}/attachments/{created['attachments'][0]['id']}"
    with socket.create_connection(("127.0.0.1", server.port)) as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        reader.sendall(
            f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {recipient['token']}\r\n\r\n".encode()
        )
        assert reader.recv(100).startswith(b"HTTP/1.1 200")
        # The client reads no further: the server's sending waits, then gives up.
        assert _answered_within(server, TIMEOUT + 10) >= TIMEOUT - 1
    log = server.log.read_text()
    assert "PLI_CLIENT_TIMEOUT" in log and "Traceback" not in log


def test_a_request_that_stalls_in_its_headers_frees_its_thread(live: tuple[Server, dict[str, Any], Path]) -> None:
    """gunicorn reads the request line and headers before Pli's code runs."""
    server, _users, _data_dir = live
    with socket.create_connection(("127.0.0.1", server.port)) as stalled:
        stalled.sendall(b"POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.5)
        assert _answered_within(server, TIMEOUT + 10) >= TIMEOUT - 1.5
    log = server.log.read_text()
    assert "Traceback" not in log
