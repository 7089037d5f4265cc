"""Sends only, several rounds in a row: to compare two commits' ``message_send_per_s``.

On this VM the figure of one commit moves by 30 to 40 sends/s within minutes, so one
``make bench`` cannot tell a regression from noise; run this on each commit, alternating,
and compare the spreads. A small inbox (2,000 messages) keeps a run to about a minute.

    .venv/bin/python -m benchmarks.send_rounds sqlite [ROUNDS]
    PLI_TEST_PG_FSYNC=on scripts/with-postgresql.sh .venv/bin/python -m benchmarks.send_rounds postgresql

For an older commit, check it out in a worktree (``git worktree add /tmp/old <commit>``)
and run the same from the worktree's directory with this checkout's virtualenv and
``PYTHONPATH=.``: the server then runs the worktree's code (server_env puts its ``src``
first), whatever the virtualenv's editable install points at.
"""

from __future__ import annotations

import os
import sys

from benchmarks import messaging_bench as bench
from benchmarks.common import Figure, Server, create_database, pli, scratch_dir, server_env, settle

INBOX = 2000


def rounds(database_url: str | None, count: int) -> list[tuple[float, list[Figure]]]:
    data_dir = scratch_dir("send-rounds-")
    env = server_env(data_dir / "data", database_url)
    pli(env, "migrate", "--no-input", "--verbosity", "0")
    users = pli(env, "shell", "-c", bench.SETUP.replace("INBOX", str(INBOX)), marker="SETUP")
    server = Server(env, data_dir / "server.log")
    server.start()
    try:
        results = []
        for _ in range(count):
            settle()
            results.append(bench._bench_sends(server, users))
        return results
    finally:
        server.stop()


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    url = create_database(os.environ["PLI_DATABASE_URL"]) if kind == "postgresql" else None
    for rate, figures in rounds(url, count):
        print(f"message_send_per_s[{kind}] {rate:.1f}", " ".join(f"{name} {value:.1f}" for name, value, _ in figures))
