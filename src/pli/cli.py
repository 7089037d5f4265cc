"""The ``pli`` command: Django's management commands, with configuration errors reported as
one line instead of a traceback."""

from __future__ import annotations

import os
import sys

OPERATOR_HELP = """\
usage: pli <command> [options]

Pli — messagerie sécurisée de santé. Operator commands:

  run                  development: migrate, seed demo data, serve with the worker
  serve                serve Pli with gunicorn (production server)
  worker               deliver e-mail/SMS notifications and run the periodic jobs
                       (reminders, expiry, clean-up); run one beside serve
  migrate              create or update the database schema
  keys status          master key versions and how many data keys each wraps
  keys rotate          create a new master key version (running servers and
                       workers take it up within a second), then keys rewrap
  keys rewrap          re-wrap existing data keys under the current master key
  keys retire N        delete master key version N once no data key uses it
  keys generate        print a random key (for a key file or PLI_MASTER_KEY)
  audit verify         check the audit trail's hash chain
  createorg            create an organisation (prints its slug)
  createuser           create a member of an organisation
  token create         create an API token for a user (prints it)
  directory import F   load the public Annuaire Santé extract
  messaging cleanup-blobs
                       remove attachment blobs no message references
  messaging reindex    compute the search tokens of every message and patient
                       share again (after an upgrade whose notes say so)
  dev totp EMAIL       development: current TOTP code of a demo account
  check --deploy       Django's deployment checks

Configuration comes from PLI_* environment variables (see README.md and
docs/operations.md), among them:
  PLI_ENV, PLI_DATA_DIR, PLI_DATABASE_URL, PLI_PUBLIC_URL, PLI_SECRET_KEY,
  PLI_KEYS_DIR or PLI_MASTER_KEY, PLI_EMAIL_URL, PLI_SMS_URL, PLI_SMS_ALLOWED_REGIONS,
  PLI_TRUSTED_PROXIES.

`pli help --commands` lists every command; `pli help COMMAND` shows its options.
"""


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args in (["-h"], ["--help"], ["help"]):
        sys.stdout.write(OPERATOR_HELP)
        return
    if args == ["--version"]:
        # Django's own answer would be its version (5.2.x), not Pli's, which /healthz reports.
        from pli import __version__

        sys.stdout.write(f"{__version__}\n")
        return
    if args == ["keys", "generate"]:
        # The first master key is made before PLI_KEYS_DIR or PLI_MASTER_KEY hold one, and
        # production refuses to load its settings without them: this needs no configuration.
        import base64

        from pli.crypto.keyring import MASTER_KEY_SIZE

        sys.stdout.write(base64.b64encode(os.urandom(MASTER_KEY_SIZE)).decode("ascii") + "\n")
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pli.settings")

    from django.core.exceptions import ImproperlyConfigured
    from django.db import OperationalError, ProgrammingError, connections

    from pli.core.instance import MigrationsPending
    from pli.crypto import CryptoError

    try:
        import django

        django.setup()
        from django.core.management import execute_from_command_line

        execute_from_command_line(["pli", *args])
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"pli: configuration error: {exc}\n")
        sys.exit(2)
    except CryptoError as exc:
        sys.stderr.write(f"pli: key error: {exc}\n")
        sys.exit(2)
    except MigrationsPending as exc:  # `pli serve` and `pli worker` check before starting
        sys.stderr.write(f"pli: {exc}\n")
        sys.exit(1)
    except (OperationalError, ProgrammingError) as exc:
        # A missing table or column ("relation … does not exist" on PostgreSQL, "no such
        # table" on SQLite) in a database that lacks this release's migrations. A server
        # that could not be reached is not tried again for that (a dropped connection
        # attempt can take minutes).
        database = connections["default"]
        unreachable = database.connection is None and database.vendor != "sqlite"
        pending = 0 if unreachable or args[0] == "migrate" else _unapplied_migrations()
        if pending:
            sys.stderr.write(
                f"pli: the database lacks {pending} migration(s) of this release: run `pli migrate` first\n"
            )
            sys.exit(1)
        # The database cannot be reached (down, wrong host or port, refused credentials, an
        # option of PLI_DATABASE_URL the driver does not know, such as ?sslmod=): one line,
        # as for the configuration. An error once connected keeps its traceback.
        if database.connection is not None or (isinstance(exc, ProgrammingError) and not unreachable):
            raise
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        sys.stderr.write(f"pli: cannot connect to the database (see PLI_DATABASE_URL): {reason}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def _unapplied_migrations() -> int:
    """How many of this release's migrations the database lacks (0 if that cannot be told)."""
    from django.db import DEFAULT_DB_ALIAS, connections

    from pli.core.instance import unapplied_migrations

    try:
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return 0
        return unapplied_migrations()
    except Exception:
        return 0


if __name__ == "__main__":
    main()
