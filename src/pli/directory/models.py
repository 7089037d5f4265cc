"""Professionals outside the instance, from the public "Annuaire Santé" extract.

Public data by nature (the State publishes it under the Licence Ouverte): nothing here is
encrypted, and nothing here is health data.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql.compiler import SQLCompiler
from django.utils.translation import gettext_lazy as _

from pli.directory.annuaire import display_name


class SearchToken(models.CharField[str, str]):
    """A folded token column with an index-friendly ``prefix`` lookup."""


@SearchToken.register_lookup
class Prefix(models.Lookup[str]):
    """``token__prefix="mart"``: the tokens starting with "mart", as a range scan of the index.

    Tokens are ``[a-z0-9]`` only (see ``pli.directory.text``) and the column compares them
    byte by byte (SQLite's BINARY collation; the "C" collation on PostgreSQL, set by the
    migration), so ``>= "mart" AND < "maru"`` is exactly the prefix, it walks the B-tree
    index, and the index also yields the rows in token order (exact matches first).
    """

    lookup_name = "prefix"

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        prefix = str(self.rhs)
        return f"({lhs} >= %s AND {lhs} < %s)", [*lhs_params, prefix, prefix_upper_bound(prefix)]


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"


class DirectoryEntry(models.Model):
    class IdType(models.TextChoices):
        RPPS = "8", "RPPS"
        ADELI = "0", "ADELI"

    # 8+RPPS (12 characters) or 0+ADELI (10): the extract's "Identification nationale PP".
    national_id = models.CharField(_("national id"), max_length=12, unique=True)
    id_type = models.CharField(_("identifier type"), max_length=1, choices=IdType.choices)
    identifier = models.CharField(_("RPPS or ADELI number"), max_length=11)
    civility = models.CharField(_("civility"), max_length=40, blank=True)
    last_name = models.CharField(_("last name"), max_length=150)
    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    profession_code = models.CharField(_("profession code"), max_length=10, blank=True)
    profession_label = models.CharField(_("profession"), max_length=150, blank=True)
    specialty_label = models.CharField(_("specialty"), max_length=200, blank=True)
    # One item per practice place: {"structure", "postcode", "city", "country", "siret", "finess"}.
    activities = models.JSONField(_("practice places"), default=list)
    # Folded tokens: of the name (for ranking), and of everything searchable (for filtering
    # the few candidates the token index returns).
    name_key = models.TextField(blank=True)
    search_key = models.TextField(blank=True)
    # Digest of everything above: a re-import compares it and leaves unchanged rows alone.
    fingerprint = models.CharField(max_length=32)
    imported_at = models.DateTimeField()

    class Meta:
        db_table = "pli_directory_entry"
        verbose_name = _("directory entry")
        verbose_name_plural = _("directory entries")

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return display_name(self.civility, self.first_name, self.last_name)

    @property
    def cities(self) -> list[str]:
        return list(dict.fromkeys(place.get("city", "") for place in self.activities if place.get("city")))


class DirectoryToken(models.Model):
    """One row per (token, entry): the inverted index that prefix searches walk."""

    class Kind(models.IntegerChoices):
        NAME = 0, _("name")
        OTHER = 1, _("profession, specialty, town or number")

    # Name words apart from the rest, so that "ge" finds GÉRARD before every "générale".
    kind = models.PositiveSmallIntegerField(choices=Kind.choices)
    token = SearchToken(max_length=40)
    entry = models.ForeignKey(DirectoryEntry, on_delete=models.CASCADE, related_name="tokens", db_index=False)

    class Meta:
        db_table = "pli_directory_token"
        indexes = [
            # Prefix scans read (kind, token, entry) from the index alone, in token order.
            models.Index(fields=["kind", "token", "entry"], name="directory_token_prefix"),
            # An entry's tokens: checking the other words of a query, and replacing them on update.
            models.Index(fields=["entry", "token"], name="directory_token_entry"),
        ]

    def __str__(self) -> str:
        return self.token
