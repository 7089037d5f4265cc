"""``pli directory import FILE``: load the public "Annuaire Santé" extract."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from pli.directory import annuaire, services

MB = 1_000_000


def _plain(text: str) -> str:
    return text  # stderr is styled as errors by default; progress is not an error


class ProgressDisplay:
    """A bar redrawn in place on a terminal; a plain line every ``interval`` seconds otherwise
    (logs of a cron job or a container must not fill with carriage returns)."""

    def __init__(self, out: OutputWrapper, *, interval: float = 10.0) -> None:
        self.out = out
        self.tty = out.isatty()
        self.interval = interval if not self.tty else 0.1
        self.started = time.monotonic()
        self.shown_at = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if not finished and now - self.shown_at < self.interval:
            return
        self.shown_at = now
        fraction = done / total if total else 1.0
        elapsed = max(now - self.started, 1e-9)
        figures = f"{fraction:4.0%}  {done / MB:,.1f} / {total / MB:,.1f} MB  {done / MB / elapsed:,.1f} MB/s"
        if self.tty:
            width = 30
            filled = round(fraction * width)
            self.out.write(f"\r[{'#' * filled}{'-' * (width - filled)}] {figures}", _plain, ending="")
            self.out.flush()
            self.drawn = True
        else:
            self.out.write(f"progress: {figures}", _plain)

    def close(self) -> None:
        if self.drawn:
            self.out.write("", _plain)


class Command(BaseCommand):
    help = "The national directory of health professionals: `import FILE` loads the Annuaire Santé extract."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{import}")
        load = sub.add_parser(
            "import",
            help="load a PS_LibreAcces_Personne_activite file (idempotent: unchanged people are left alone)",
        )
        load.add_argument("file", type=Path, help="the pipe-separated extract (UTF-8, with its header line)")
        load.add_argument(
            "--prune",
            action="store_true",
            help="also remove people who are no longer in the file (use with a complete extract only)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if path.is_dir():
            raise CommandError(f"{path} is a directory, not the extract file (PS_LibreAcces_Personne_activite_*.txt)")
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        progress = ProgressDisplay(self.stderr)
        try:
            report = services.import_extract(path, prune=options["prune"], progress=progress)
        except annuaire.HeaderError as exc:
            raise CommandError(f"{path}: {exc}") from None
        except OSError as exc:
            raise CommandError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
        finally:
            progress.close()
        self.stdout.write(f"lines read: {report.lines}")
        self.stdout.write(f"people: {report.people}")
        self.stdout.write(f"created: {report.created}")
        self.stdout.write(f"updated: {report.updated}")
        self.stdout.write(f"unchanged: {report.unchanged}")
        if options["prune"]:
            self.stdout.write(f"removed: {report.removed}")
            if report.prune_stopped:
                self.stderr.write(
                    "too many malformed lines (or no valid line): removal of absent people was stopped; "
                    "check the file and import it again"
                )
        self.stdout.write(f"malformed lines: {report.malformed.count}")
        for number, reason in report.malformed.first:
            self.stdout.write(f"  line {number}: {reason}")
        if report.malformed.count > len(report.malformed.first):
            self.stdout.write(f"  … and {report.malformed.count - len(report.malformed.first)} more")
        if options["prune"] and report.prune_stopped:
            # After the report: a scheduled import must be able to tell that the directory
            # still lists people the file no longer has (it exited 0).
            raise CommandError("the import is done, but the removal of absent people was stopped", returncode=3)
