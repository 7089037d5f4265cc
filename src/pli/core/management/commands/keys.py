"""``pli keys status|rotate|rewrap|retire|generate``: the operator's master key tools."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from pli.audit import services as audit
from pli.core import keys
from pli.core.models import DataKey
from pli.crypto import add_key_version, retire_key_version

REWRAP_BATCH = 500


class Command(BaseCommand):
    help = "Master key tools: status, rotate, rewrap, retire N, generate."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{status,rotate,rewrap,retire,generate}")
        sub.add_parser("status", help="key versions in use and how many data keys each wraps")
        sub.add_parser(
            "rotate", help="create a new master key version (running servers and workers take it up), then rewrap"
        )
        sub.add_parser("rewrap", help="re-wrap every data key under the current version (data untouched)")
        retire = sub.add_parser("retire", help="delete an old master key version no data key uses any more")
        retire.add_argument("version", type=int)
        sub.add_parser("generate", help="print a new random key for PLI_MASTER_KEY (writes nothing)")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def _directory_managed(self) -> None:
        if settings.PLI_MASTER_KEY_ENV:
            raise CommandError(
                "keys come from PLI_MASTER_KEY: add a version there yourself "
                "(`pli keys generate` prints one, e.g. PLI_MASTER_KEY='1:…,2:…') and restart"
            )

    def do_status(self, options: dict[str, Any]) -> None:
        ring = keys.keyring()
        source = "PLI_MASTER_KEY" if settings.PLI_MASTER_KEY_ENV else str(settings.PLI_KEYS_DIR)
        counts = dict(
            DataKey.objects.values_list("key_version").annotate(n=Count("id")).values_list("key_version", "n")
        )
        self.stdout.write(f"source: {source}")
        self.stdout.write(f"current version: {ring.current_version}")
        for version in sorted(set(ring.versions) | set(counts)):
            state = (
                "current"
                if version == ring.current_version
                else ("available" if version in ring.versions else "MISSING")
            )
            self.stdout.write(f"  v{version}: {state}, {counts.get(version, 0)} data keys")
        missing = set(counts) - set(ring.versions)
        if missing:
            raise CommandError(f"data keys are wrapped by missing master key version(s) {sorted(missing)}")
        # A wrong key of the right version loads like the right one: open a data key of each.
        try:
            checked = keys.check_keyring(ring)
        except keys.KeyMismatch as exc:
            raise CommandError(str(exc)) from None
        if checked:
            self.stdout.write("checked: " + ", ".join(f"v{v}" for v in checked) + " open their data keys")

    def do_rotate(self, options: dict[str, Any]) -> None:
        self._directory_managed()
        version = add_key_version(settings.PLI_KEYS_DIR)
        keys.reset()
        # The operator's key operations are in the trail too (actor: the system, as for every
        # command), so that an audit can tell when each master key came and went.
        audit.record("keys.rotated", details={"version": version})
        self.stdout.write(
            f"created master key v{version} in {settings.PLI_KEYS_DIR}; new objects use it (running "
            "servers and workers see it within a second). Then run `pli keys rewrap` to move existing data keys."
        )

    def do_rewrap(self, options: dict[str, Any]) -> None:
        keys.reset()
        ring = keys.keyring()
        moved = 0
        while True:
            batch = list(DataKey.objects.exclude(key_version=ring.current_version).order_by("id")[:REWRAP_BATCH])
            if not batch:
                break
            for key in batch:
                moved += int(key.rewrap(ring))
        audit.record("keys.rewrapped", details={"version": ring.current_version, "data_keys": moved})
        self.stdout.write(f"re-wrapped {moved} data keys under master key v{ring.current_version}")

    def do_retire(self, options: dict[str, Any]) -> None:
        self._directory_managed()
        version = options["version"]
        ring = keys.keyring()
        if version not in ring.versions:
            raise CommandError(f"master key v{version} does not exist")
        if version == ring.current_version:
            raise CommandError(f"v{version} is the current master key: rotate first")
        in_use = DataKey.objects.filter(key_version=version).count()
        if in_use:
            raise CommandError(f"{in_use} data keys still use v{version}: run `pli keys rewrap` first")
        retire_key_version(settings.PLI_KEYS_DIR, version)
        keys.reset()
        audit.record("keys.retired", details={"version": version})
        self.stdout.write(f"retired master key v{version}")

    def do_generate(self, options: dict[str, Any]) -> None:
        self.stdout.write(base64.b64encode(secrets.token_bytes(32)).decode("ascii"))
