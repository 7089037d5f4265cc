"""Database triggers that make the audit trail append-only.

The application never updates or deletes an event; the triggers make the database refuse it
too, so a bug or an injected query cannot quietly rewrite history. Someone with full control
of the database can still drop them: `pli audit verify` is what detects that case.
"""

from __future__ import annotations

from typing import Any

_SQLITE = [
    "CREATE TRIGGER IF NOT EXISTS pli_audit_no_update BEFORE UPDATE ON pli_audit_event "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS pli_audit_no_delete BEFORE DELETE ON pli_audit_event "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
]
_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS pli_audit_no_update",
    "DROP TRIGGER IF EXISTS pli_audit_no_delete",
]
_POSTGRESQL = [
    """
    CREATE OR REPLACE FUNCTION pli_audit_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'the audit trail is append-only';
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS pli_audit_append_only ON pli_audit_event",
    "CREATE TRIGGER pli_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON pli_audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION pli_audit_append_only()",
]
_POSTGRESQL_DROP = ["DROP TRIGGER IF EXISTS pli_audit_append_only ON pli_audit_event"]


def create(cursor: Any, vendor: str) -> None:
    for statement in _POSTGRESQL if vendor == "postgresql" else _SQLITE:
        cursor.execute(statement)


def drop(cursor: Any, vendor: str) -> None:
    for statement in _POSTGRESQL_DROP if vendor == "postgresql" else _SQLITE_DROP:
        cursor.execute(statement)
