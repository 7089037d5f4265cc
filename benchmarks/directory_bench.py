"""Directory import speed and memory, and search latency, on a synthetic national extract.

A 200,000-line file in the real ``PS_LibreAcces_Personne_activite`` format (see
pli.testing.annuaire) is imported by ``pli directory import`` into a fresh SQLite database
(or the PostgreSQL database named by ``PLI_BENCH_DATABASE_URL``; never ``PLI_DATABASE_URL``,
which may be a real one). Each step runs in a child process, whose own peak memory is read.
Units: 1 MB = 10**6 bytes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pli.testing import annuaire

MB = 1_000_000
LINES = int(os.environ.get("PLI_BENCH_DIRECTORY_LINES") or 200_000)
QUERIES = 500
WARM_UP = 20
ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"

Figure = tuple[str, float, str]


def _peak_rss_kib() -> int:
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork and exec
    # into ru_maxrss; VmHWM belongs to the address space exec created.
    match = re.search(r"^VmHWM:\s+(\d+) kB$", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError("no VmHWM in /proc/self/status")
    return int(match.group(1))


def _child_env(data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLI_")}
    env.update(
        PLI_DATA_DIR=str(data_dir),
        PLI_ENV="development",
        PLI_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="pli.settings",
    )
    if os.environ.get("PLI_BENCH_DATABASE_URL"):
        env["PLI_DATABASE_URL"] = os.environ["PLI_BENCH_DATABASE_URL"]
    return env


def _child(mode: str, data_dir: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.directory_bench", mode, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=_child_env(data_dir),
    )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def _import_child(path: Path) -> None:
    import io

    import django

    django.setup()
    from django.core.management import call_command

    out = io.StringIO()
    start = time.perf_counter()
    call_command("directory", "import", str(path), stdout=out, stderr=io.StringIO())
    seconds = time.perf_counter() - start
    counts = dict(line.split(": ", 1) for line in out.getvalue().splitlines() if ": " in line)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "lines": int(counts["lines read"]),
                "unchanged": int(counts["unchanged"]),
                "peak_kib": _peak_rss_kib(),
            }
        )
    )


def _queries(rng: random.Random, entries: list[tuple[str, str, str, str, list[Any]]]) -> list[str]:
    """What people type: names and name prefixes (letter by letter), with a town, a
    profession or a specialty, or an RPPS number."""
    queries: list[str] = []
    for last, first, profession, specialty, places in entries:
        last_word = last.split()[0].lower()
        city = next((place["city"] for place in places if place.get("city")), "paris").split()[0].lower()
        kind = rng.randrange(7)
        if kind == 0:
            queries.extend(last_word[:length] for length in range(2, min(len(last_word), 6) + 1))
        elif kind == 1:
            queries.append(f"{last_word} {first.split('-')[0].lower()}")
        elif kind == 2:
            queries.append(f"{last_word[:4]} {city}")
        elif kind == 3:
            queries.append(f"{profession.split('-')[0].lower()} {city}")
        elif kind == 4 and specialty:
            queries.append(f"{specialty.split()[0].lower()[:6]} {city[:3]}")
        elif kind == 5:
            queries.append(f"{first.lower()[:3]} {last_word[:3]}")
        else:
            queries.append(last_word)
    return queries


def _search_child() -> None:
    import django

    django.setup()
    from pli.accounts.models import User
    from pli.directory.models import DirectoryEntry
    from pli.directory.services import search

    user = User.objects.filter(email="bench@example.org").first() or User.objects.create_user("bench@example.org")
    rng = random.Random(5)
    count = DirectoryEntry.objects.count()
    picks = sorted(rng.sample(range(1, count + 1), min(200, count)))
    entries = list(
        DirectoryEntry.objects.filter(pk__in=picks).values_list(
            "last_name", "first_name", "profession_label", "specialty_label", "activities"
        )
    )
    queries = _queries(rng, entries)
    rng.shuffle(queries)
    queries = (queries * (QUERIES // max(len(queries), 1) + 1))[: QUERIES + WARM_UP]
    timings = []
    found = 0
    for number, query in enumerate(queries):
        start = time.perf_counter()
        results = search(query, user=user)
        elapsed = time.perf_counter() - start
        if number >= WARM_UP:
            timings.append(elapsed * 1000)
            found += bool(results)
    timings.sort()
    print(
        json.dumps(
            {
                "p50": timings[len(timings) // 2],
                "p99": timings[min(len(timings) - 1, int(len(timings) * 0.99))],
                "found_pct": 100 * found / len(timings),
            }
        )
    )


def run() -> list[Figure]:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(dir=BENCH_DIR))
    try:
        path = annuaire.write(directory / "PS_LibreAcces_Personne_activite.txt", LINES, seed=1)
        data_dir = directory / "data"
        subprocess.run(
            [sys.executable, "-m", "pli.cli", "migrate", "--no-input", "--verbosity", "0"],
            check=True,
            cwd=ROOT,
            env=_child_env(data_dir),
        )
        first = _child("import-child", data_dir, str(path))
        again = _child("import-child", data_dir, str(path))
        if again["unchanged"] == 0:
            raise RuntimeError("the second import changed everything: not idempotent")
        searched = _child("search-child", data_dir)
        size_mb = path.stat().st_size / MB
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return [
        ("directory_file_mb", size_mb, "MB"),
        ("directory_import_lines_s", first["lines"] / first["seconds"], "lines/s"),
        ("directory_import_peak_rss_mb", first["peak_kib"] * 1024 / MB, "MB"),
        ("directory_reimport_lines_s", again["lines"] / again["seconds"], "lines/s"),
        ("directory_search_p50_ms", searched["p50"], "ms"),
        ("directory_search_p99_ms", searched["p99"], "ms"),
        ("directory_search_found_pct", searched["found_pct"], "%"),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["import-child"]:
        _import_child(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["search-child"]:
        _search_child()
