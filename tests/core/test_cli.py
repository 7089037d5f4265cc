"""The `pli` console script, run as an operator would run it."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pli.core.server import TEMPLATE_SUFFIXES

PLI = str(Path(sys.executable).with_name("pli"))
STRONG_SECRET = "x" * 30 + "Zq8!mR2#vL9@xT4$wN6%aa"


def run_pli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": env["PLI_DATA_DIR"]}
    return subprocess.run([PLI, *args], env={**base, **env}, capture_output=True, text=True, timeout=timeout)


def test_help_lists_operator_commands(tmp_path: Path) -> None:
    result = run_pli("--help", env={"PLI_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0
    for command in (
        "serve",
        "worker",
        "migrate",
        "keys status",
        "keys rotate",
        "keys rewrap",
        "keys generate",
        "audit verify",
        "messaging reindex",
    ):
        assert command in result.stdout


def test_help_does_not_ask_for_a_restart_after_rotation(tmp_path: Path) -> None:
    # Running servers and workers take a new key version up within a second (README, and
    # what `pli keys rotate` itself prints): the help must not send operators restarting.
    result = run_pli("--help", env={"PLI_DATA_DIR": str(tmp_path)})
    rotate = next(line for line in result.stdout.splitlines() if "keys rotate" in line)
    assert "restart" not in rotate


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PLI_DATABASE_URL": "mysql://x/y"}, "PLI_DATABASE_URL must be a PostgreSQL URL"),
        ({"PLI_ENV": "production"}, "PLI_SECRET_KEY is required in production"),
        (
            {"PLI_ENV": "production", "PLI_SECRET_KEY": STRONG_SECRET, "PLI_PUBLIC_URL": "https://pli.example.fr"},
            "a master key is required in production",
        ),
    ],
)
def test_configuration_errors_are_one_clear_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = run_pli("migrate", env={"PLI_DATA_DIR": str(tmp_path), **env})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_production_refuses_an_empty_keys_dir(tmp_path: Path) -> None:
    env = {
        "PLI_DATA_DIR": str(tmp_path),
        "PLI_ENV": "production",
        "PLI_SECRET_KEY": STRONG_SECRET,
        "PLI_PUBLIC_URL": "https://pli.example.fr",
        "PLI_EMAIL_URL": "smtp://127.0.0.1:25",
        "PLI_SMS_URL": "twilio://ACxxxxxxxx:secret@api.twilio.com?from=Pli",
        "PLI_KEYS_DIR": str(tmp_path / "keys"),
    }
    result = run_pli("keys", "status", env=env)
    assert result.returncode == 2
    assert "keys does not exist" in result.stderr
    (tmp_path / "keys").mkdir(mode=0o700)
    result = run_pli("keys", "status", env=env)
    assert result.returncode == 2
    assert "no master key" in result.stderr
    assert not (tmp_path / "keys" / "master-v1.key").exists()


def test_corrupt_master_key_is_named(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    key = keys_dir / "master-v1.key"
    key.write_text("not base64 at all!")
    key.chmod(0o600)
    result = run_pli("keys", "status", env={"PLI_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "master-v1.key" in result.stderr
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_healthz_with_a_production_server(tmp_path: Path) -> None:
    env = {"PLI_DATA_DIR": str(tmp_path)}
    assert run_pli("migrate", "--no-input", env=env).returncode == 0
    port = _free_port()
    # "ok" whatever the test machine's disk holds (a low disk says "degraded").
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env, "PORT": str(port), "PLI_DISK_MIN_FREE_MB": "0"}
    server = subprocess.Popen(
        [PLI, "serve", "--workers", "1"], env=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    body = json.loads(response.read())
                    headers = response.headers
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert body["status"] == "ok" and body["mode"] == "development"
        assert headers["X-Frame-Options"] == "DENY"
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert "Booting worker" in output or "Listening at" in output
    assert "development mode" in output
    # The development key and database were created in the data dir, privately.
    assert (tmp_path / "keys" / "master-v1.key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "pli.sqlite3").exists()


def _tune_in_child(env: dict[str, str]) -> str:
    code = "from pli.core.server import tune_allocator; print(tune_allocator())"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def test_serve_tunes_glibcs_allocator_unless_the_operator_did() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    assert _tune_in_child(env) == "True"  # glibc, as on every supported host
    assert _tune_in_child({**env, "MALLOC_TRIM_THRESHOLD_": "0"}) == "False"


def _in_child(code: str, data_dir: Path) -> str:
    """Run ``code`` in a fresh Python process on a development instance; its output."""
    env = {**os.environ, "PLI_DATA_DIR": str(data_dir), "PLI_ENV": "development"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout


def test_the_served_application_is_frozen_out_of_the_collectors_full_passes(tmp_path: Path) -> None:
    # In a child: freezing is for the life of a process, and would follow this test run.
    code = (
        "import gc; from pli.core.server import PliServer\n"
        "before = gc.get_freeze_count()\n"
        "app = PliServer({'bind': '127.0.0.1:0'}).load()\n"
        "print(before, gc.get_freeze_count(), callable(app))"
    )
    before, frozen, loaded = _in_child(code, tmp_path).split()
    assert (before, loaded) == ("0", "True")
    # Django's and Pli's modules, classes and URL patterns: tens of thousands of objects.
    assert int(frozen) > 20_000


def test_the_served_application_is_warmed_up_before_the_workers_fork(tmp_path: Path) -> None:
    """What each worker would otherwise do on its first requests is done once by the master:
    every Pli template compiled and cached, the URLconf and views imported, the translation
    catalogs loaded, the settings' lazily imported modules imported; and no database
    connection is left for the workers to inherit."""
    code = (
        "import json, sys\n"
        "from pli.core.server import PliServer\n"
        "PliServer({'bind': '127.0.0.1:0'}).load()\n"
        "from django.db import connections\n"
        "from django.template import engines\n"
        "from django.utils.translation import trans_real\n"
        "loaders = engines['django'].engine.template_loaders\n"
        "cached = {getattr(t, 'name', '') for loader in loaders for t in loader.get_template_cache.values()}\n"
        "print(json.dumps({\n"
        "    'templates': sorted(cached),\n"
        "    'languages': sorted(trans_real._translations),\n"
        "    'modules': [m for m in ('pli.urls', 'pli.sharing.patient', 'pli.core.context_processors',\n"
        "                            'django.contrib.messages.storage.fallback') if m in sys.modules],\n"
        "    'connected': any(c.connection is not None for c in connections.all()),\n"
        "}))"
    )
    warmed = json.loads(_in_child(code, tmp_path).splitlines()[-1])
    package = Path(__file__).resolve().parents[2] / "src" / "pli"
    templates = {
        path.relative_to(directory).as_posix()
        for directory in package.rglob("templates")
        for path in directory.rglob("*")
        if path.suffix in TEMPLATE_SUFFIXES
    }
    assert len(templates) > 80
    assert set(warmed["templates"]) >= templates
    assert warmed["languages"] == ["en", "fr"]
    assert len(warmed["modules"]) == 4
    assert warmed["connected"] is False


def test_serve_hands_no_database_connection_to_its_workers(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up checks query the database; gunicorn forks the workers after them."""
    from django.core.management import call_command
    from django.db import connections

    from pli.core import server

    seen: list[bool] = []
    monkeypatch.setattr(server, "serve", lambda *a, **k: seen.append(any(c.connection for c in connections.all())))
    call_command("serve", "--port", "1")
    assert seen == [False]
    # And it refuses a data dir bound to another database, before serving anything.
    from django.core.management import CommandError

    from pli.core import instance

    marker = instance.marker_path()
    bound = marker.read_text()
    marker.write_text("00000000-0000-4000-8000-000000000000\n")
    try:
        with pytest.raises(CommandError, match="belong to different Pli instances"):
            call_command("serve", "--port", "1")
    finally:
        marker.write_text(bound)
    assert seen == [False]


@pytest.mark.parametrize("port", ["abc", "99999", "0"])
def test_a_wrong_port_is_one_line_not_a_traceback(tmp_path: Path, port: str) -> None:
    # `PORT=9000 make run` is documented; a mistyped PORT was a ValueError traceback (or
    # gunicorn's OverflowError once the server had started).
    for command in ("serve", "run"):
        result = run_pli(command, env={"PLI_DATA_DIR": str(tmp_path), "PORT": port}, timeout=30)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert f"PORT must be a port number between 1 and 65535, not '{port}'" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    result = run_pli("serve", "--port", port, env={"PLI_DATA_DIR": str(tmp_path)}, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--port: must be a port number between 1 and 65535" in result.stderr


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # Nothing listens on the port: `pli migrate` during an installation (or the worker
    # started before PostgreSQL) printed some forty lines of traceback.
    env = {"PLI_DATA_DIR": str(tmp_path), "PLI_DATABASE_URL": f"postgresql://pli:secret@127.0.0.1:{_free_port()}/pli"}
    for args in (["migrate"], ["worker", "--batch"], ["keys", "status"]):
        result = run_pli(*args, env=env)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("pli: cannot connect to the database (see PLI_DATABASE_URL): connection failed")
        assert "Connection refused" in lines[0]
        assert "secret" not in result.stderr
    # A mistyped option of the URL (sslmod for sslmode): an 89-line traceback before.
    env["PLI_DATABASE_URL"] += "?sslmod=require"
    result = run_pli("keys", "status", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        'pli: cannot connect to the database (see PLI_DATABASE_URL): invalid connection option "sslmod"'
    ]


def test_keys_generate_needs_no_configuration(tmp_path: Path) -> None:
    # The configuration error for a missing master key says "see `pli keys generate`", and
    # PLI_MASTER_KEY needs a key before it is set: in production, without one, the command
    # refused with that very error.
    for env in (
        {"PLI_ENV": "production", "PLI_DATA_DIR": str(tmp_path / "data")},
        {"PLI_ENV": "production", "PLI_DATA_DIR": str(tmp_path / "data"), "PLI_SECRET_KEY": STRONG_SECRET},
    ):
        result = run_pli("keys", "generate", env=env)
        assert result.returncode == 0, result.stderr
        assert len(base64.b64decode(result.stdout.strip(), validate=True)) == 32
        assert not (tmp_path / "data").exists()  # nothing written


def test_an_unmigrated_database_says_to_run_migrate(tmp_path: Path) -> None:
    # An operator who starts the worker (or runs any command) before `pli migrate` got the
    # traceback of "no such table" (SQLite) or "relation … does not exist" (PostgreSQL).
    env = {"PLI_DATA_DIR": str(tmp_path)}
    for args in (["worker", "--batch"], ["keys", "status"], ["audit", "verify"], ["createorg", "--name", "X"]):
        result = run_pli(*args, env=env)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("pli: the database lacks ")
        assert lines[0].endswith(" migration(s) of this release: run `pli migrate` first")
    assert run_pli("migrate", env=env).returncode == 0
    assert run_pli("keys", "status", env=env).returncode == 0


@pytest.mark.parametrize("option", ["--threads", "--workers"])
def test_serve_refuses_no_threads_or_workers_in_one_line(tmp_path: Path, option: str) -> None:
    # `--threads 0` started gunicorn, whose workers then failed to boot one after the
    # other, each with a traceback.
    result = run_pli("serve", option, "0", env={"PLI_DATA_DIR": str(tmp_path)}, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{option}: must be a whole number of at least 1, not '0'" in result.stderr


@pytest.mark.parametrize(("option", "value"), [("--interval", "-1"), ("--interval", "nan"), ("--max-tasks", "0")])
def test_worker_options_are_checked_before_it_starts(tmp_path: Path, option: str, value: str) -> None:
    # `--interval -1` (or nan) started the worker, which died at its first wait with a
    # traceback; `--max-tasks 0` meant no limit.
    result = run_pli("worker", option, value, env={"PLI_DATA_DIR": str(tmp_path)}, timeout=20)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"argument {option}:" in result.stderr


def test_version_is_plis(tmp_path: Path) -> None:
    # `pli --version` printed Django's version (5.2.x): after an upgrade, the operator
    # could not tell which Pli release was installed, as /healthz reports it.
    from pli import __version__

    result = run_pli("--version", env={"PLI_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert result.stdout == f"{__version__}\n"


def test_the_sqlite_database_is_private_in_a_shared_data_dir(tmp_path: Path) -> None:
    # A data dir made by the operator or systemd (StateDirectory=, mode 0755): the database
    # file (names, e-mail addresses, password hashes in clear) was created 0644.
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    assert run_pli("migrate", env={"PLI_DATA_DIR": str(data_dir)}).returncode == 0
    database = data_dir / "pli.sqlite3"
    for path in (database, data_dir / "pli.sqlite3-wal", data_dir / "pli.sqlite3-shm"):
        if path.exists() or path == database:
            assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))


def test_serve_and_worker_refuse_a_database_an_upgrade_left_unmigrated(tmp_path: Path) -> None:
    # An upgrade whose `pli migrate` was forgotten: the tables exist, this release's new
    # columns do not. `pli serve` answered every page with a 500 (and /healthz "ok"), and
    # `pli worker` failed each delivery and periodic run; both now refuse to start.
    env = {"PLI_DATA_DIR": str(tmp_path)}
    assert run_pli("migrate", env=env).returncode == 0
    assert run_pli("migrate", "messaging", "0006", env=env).returncode == 0
    for args in (["worker", "--batch"], ["serve", "--port", str(_free_port())]):
        result = run_pli(*args, env=env, timeout=30)
        assert result.returncode == 1, result.stderr
        lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("pli: development mode")]
        assert lines == ["pli: the database lacks 5 migration(s) of this release: run `pli migrate` first"], lines
    assert run_pli("migrate", env=env).returncode == 0
    assert run_pli("worker", "--batch", env=env).returncode == 0
