"""The directory: importing the national extract, and searching people to write to.

``search(query, user=user)`` is what the compose form and the directory page call; it looks
in this instance's mailboxes first, then in the national directory of professionals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from django.db import connection, transaction
from django.db.models import Exists, Field, Model, OuterRef, Q, QuerySet
from django.utils import timezone

from pli.accounts.models import Mailbox, Membership, User
from pli.audit import services as audit
from pli.directory import annuaire, text
from pli.directory.models import DirectoryEntry, DirectoryToken

# --- Import ---------------------------------------------------------------------------

# People written per transaction: large enough that per-batch overhead is small, small
# enough that memory stays flat and concurrent readers never wait long.
BATCH_SIZE = 1000
_PRUNE_CHUNK = 5000
_WRITTEN_FIELDS = [
    "id_type",
    "identifier",
    "civility",
    "last_name",
    "first_name",
    "profession_code",
    "profession_label",
    "specialty_label",
    "activities",
    "name_key",
    "search_key",
    "fingerprint",
    "imported_at",
]

Progress = Callable[[int, int], None]
_NAME, _OTHER = DirectoryToken.Kind.NAME.value, DirectoryToken.Kind.OTHER.value


@dataclass
class ImportReport:
    lines: int = 0
    people: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    malformed: annuaire.Malformed = field(default_factory=annuaire.Malformed)
    # --prune stops removing people once the file looks damaged (see _may_prune).
    prune_stopped: bool = False


class _ByteCounter:
    def __init__(self, start: int) -> None:
        self.done = start
        self.lines = 0

    def count(self, lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
        for number, raw in lines:
            self.done += len(raw)
            if raw.strip():
                self.lines += 1
            yield number, raw


def import_extract(
    path: Path, *, prune: bool = False, progress: Progress | None = None, batch_size: int = BATCH_SIZE
) -> ImportReport:
    """Load a ``PS_LibreAcces_Personne_activite`` file; return what changed.

    Streams the file: memory does not grow with its size. People are compared with what is
    stored and only the changed ones are written, so importing the same file twice changes
    nothing the second time. Malformed lines are counted (the first ones kept with their
    line numbers) and skipped. With ``prune``, entries absent from the file are removed.

    Each batch is its own transaction rather than one for the whole file: an import of
    two million lines must not hold the database's write lock for minutes. An interrupted
    import leaves whole people written, and running it again completes it.

    Raises ``annuaire.HeaderError`` if the file is not such an extract.
    """
    report = ImportReport()
    with path.open("rb") as handle:
        total = path.stat().st_size
        header = handle.readline()
        layout = annuaire.read_header(header)
        counter = _ByteCounter(len(header))
        previous_last: str | None = None
        batch: list[annuaire.Person] = []
        lines = counter.count(annuaire.ordered_lines(handle))
        for person in annuaire.people(lines, layout, report.malformed):
            batch.append(person)
            if len(batch) >= batch_size:
                prune = prune and _may_prune(report, counter.lines)
                _write_batch(batch, report, prune=prune, after=previous_last)
                previous_last = batch[-1].national_id
                batch = []
                if progress:
                    progress(counter.done, total)
        prune = prune and _may_prune(report, counter.lines)
        if batch:
            _write_batch(batch, report, prune=prune, after=previous_last)
            previous_last = batch[-1].national_id
        if prune and previous_last is not None:
            report.removed += _prune(Q(national_id__gt=previous_last))
        elif prune:
            report.prune_stopped = True  # nobody valid in the file: surely not a complete extract
        report.lines = counter.lines
        if report.created or report.updated or report.removed:
            _refresh_statistics()
        if progress:
            progress(total, total)
    with transaction.atomic():
        audit.record(
            "directory.imported",
            details={
                "people": report.people,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "removed": report.removed,
                "malformed": report.malformed.count,
            },
        )
    return report


# Above this share of malformed lines the file is damaged or truncated: people missing from
# it may well still practise, so --prune removes nobody more.
PRUNE_MAX_MALFORMED = 0.01


def _may_prune(report: ImportReport, lines: int) -> bool:
    if report.malformed.count > PRUNE_MAX_MALFORMED * max(lines, 1):
        report.prune_stopped = True
        return False
    return True


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise TypeError(f"{model.__name__}.{name} is not a concrete column")
    return field


def _column(model: type[Model], name: str) -> str:
    return str(_field(model, name).column)


def _insert(model: type[Model], fields: list[str], rows: Sequence[Sequence[Any]], *, upsert_on: str = "") -> None:
    """INSERT many rows at once (ON CONFLICT (upsert_on) DO UPDATE when given).

    Plain SQL rather than bulk_create: building a model instance and compiling SQL per row
    made the ORM five times slower, and an import writes millions of rows. SQLite runs one
    prepared statement per row (executemany); PostgreSQL gets whole columns as arrays
    (INSERT … SELECT FROM unnest), one statement per batch instead of one per row. Only the
    model's own table and column names, quoted, are formatted into the SQL.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [quote(_column(model, name)) for name in fields]
    if connection.vendor == "postgresql":
        types = [_field(model, name).db_type(connection) for name in fields]
        source = f"SELECT * FROM unnest({', '.join(f'%s::{kind}[]' for kind in types)})"  # noqa: S608
        params: list[Any] = [list(values) for values in zip(*rows, strict=True)]
    else:
        source = f"VALUES ({', '.join(['%s'] * len(columns))})"
        params = list(rows)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) {source}"
    if upsert_on:
        key = quote(_column(model, upsert_on))
        updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column != key)
        sql += f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(sql, params)
        else:
            cursor.executemany(sql, params)


def _write_batch(batch: list[annuaire.Person], report: ImportReport, *, prune: bool, after: str | None) -> None:
    ids = [person.national_id for person in batch]
    activities_field = DirectoryEntry._meta.get_field("activities")
    imported_at = DirectoryEntry._meta.get_field("imported_at").get_db_prep_save(timezone.now(), connection)
    with transaction.atomic():
        known = dict(DirectoryEntry.objects.filter(national_id__in=ids).values_list("national_id", "fingerprint"))
        rows: list[list[Any]] = []
        tokens: dict[str, list[tuple[int, str]]] = {}
        updated_ids: list[str] = []
        for person in batch:
            fields = person.fields()
            fingerprint = person.fingerprint(fields)
            stored = known.get(person.national_id)
            if stored == fingerprint:
                report.unchanged += 1
                continue
            if stored is None:
                report.created += 1
            else:
                report.updated += 1
                updated_ids.append(person.national_id)
            fields["activities"] = activities_field.get_db_prep_save(fields["activities"], connection)
            fields["fingerprint"], fields["imported_at"] = fingerprint, imported_at
            rows.append([fields["national_id"], *(fields[name] for name in _WRITTEN_FIELDS)])
            names = set(fields["name_key"].split())
            tokens[person.national_id] = [
                (_NAME if token in names else _OTHER, token) for token in fields["search_key"].split()
            ]
        report.people += len(batch)
        if rows:
            _insert(DirectoryEntry, ["national_id", *_WRITTEN_FIELDS], rows, upsert_on="national_id")
            pks = dict(DirectoryEntry.objects.filter(national_id__in=list(tokens)).values_list("national_id", "pk"))
            if updated_ids:
                DirectoryToken.objects.filter(entry_id__in=[pks[national_id] for national_id in updated_ids]).delete()
            token_rows = [
                (kind, token, pks[national_id]) for national_id, words in tokens.items() for kind, token in words
            ]
            _insert(DirectoryToken, ["kind", "token", "entry"], token_rows)
        if prune:
            # The file is read in national id order: whatever lies between the previous
            # batch and this one, and is not in this one, is no longer in the file.
            span = Q(national_id__lte=ids[-1]) & (Q(national_id__gt=after) if after else Q())
            report.removed += _prune(span & ~Q(national_id__in=ids))


def _refresh_statistics() -> None:
    """Let the query planner know the new sizes: without statistics PostgreSQL may read the
    token index the slow way for prefix searches until autovacuum gets to it."""
    tables = ", ".join(map(connection.ops.quote_name, [DirectoryEntry._meta.db_table, DirectoryToken._meta.db_table]))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # VACUUM also marks the new pages all-visible, so that prefix searches are
            # index-only scans; it cannot run inside a transaction (as in tests).
            cursor.execute(f"{'ANALYZE' if connection.in_atomic_block else 'VACUUM ANALYZE'} {tables}")
        elif connection.vendor == "sqlite":
            cursor.execute("PRAGMA optimize")


def _prune(condition: Q) -> int:
    removed = 0
    while True:
        with transaction.atomic():
            pks = list(DirectoryEntry.objects.filter(condition).values_list("pk", flat=True)[:_PRUNE_CHUNK])
            if not pks:
                return removed
            DirectoryToken.objects.filter(entry_id__in=pks).delete()
            removed += DirectoryEntry.objects.filter(pk__in=pks).delete()[0]


# --- Search ---------------------------------------------------------------------------

# Entries ranked per query. The token index hands them over in token order (exact matches
# first); a query so vague that more match is answered from these, and typing one more
# letter narrows it.
CANDIDATES = 500
# Counting index entries is cheap (a range of the index, nothing else read); counting far
# enough tells a town of 2,000 people from a profession of 500,000.
REACH_COUNT = 20_000
# When every word of a query is that common, at most this many entries of the rarest one
# are checked against the others: the answer is then a sample of the matches, and one
# more word (or letter) narrows it.
SCAN_LIMIT = 20_000
MAX_WORDS = 6
MAX_QUERY_LENGTH = 200
# A one-letter word is too vague to look up among two million people on its own.
MIN_DIRECTORY_WORD = 2


@dataclass(frozen=True)
class DirectoryResult:
    """One line of search results; ``as_dict()`` is the JSON shape of the search endpoint."""

    kind: Literal["mailbox", "external"]
    id: str
    display_name: str
    profession: str = ""
    specialty: str = ""
    city: str = ""
    address: str = ""  # mailboxes only: what the compose form sends to
    organisation: str = ""
    rpps: str = ""  # RPPS (or ADELI) number when known

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def details(self) -> str:
        return " · ".join(part for part in (self.profession, self.specialty, self.city) if part)


def words_of(query: str) -> list[str]:
    return text.tokens(query[:MAX_QUERY_LENGTH])[:MAX_WORDS]


def search(query: str, *, user: User, limit: int = 20) -> list[DirectoryResult]:
    """Mailboxes of this instance first, then professionals of the national directory.

    Every word of the query must start some word of the person (name, profession,
    specialty, city, RPPS), accents and case ignored. Within each group: whole-word name
    matches first, then name prefixes, then other fields; ties alphabetically.
    """
    words = words_of(query)
    if not words or limit <= 0:
        return []
    results = _mailbox_results(words, user)[:limit]
    known = {result.id for result in results}
    if len(results) < limit:
        # Some external results may turn out to be people with a mailbox already listed.
        for result in _external_results(words, limit):
            if result.id not in known:
                known.add(result.id)
                results.append(result)
            if len(results) >= limit:
                break
    return results


def _score(words: list[str], name_tokens: list[str], other_tokens: list[str]) -> int | None:
    """Lower is better; ``None`` when some word matches nothing."""
    total = 0
    for word in words:
        if word in name_tokens:
            continue
        if any(token.startswith(word) for token in name_tokens):
            total += 1
        elif word in other_tokens:
            total += 2
        elif any(token.startswith(word) for token in other_tokens):
            total += 3
        else:
            return None
    return total


def _mailbox_result(mailbox: Mailbox) -> DirectoryResult:
    owner = mailbox.owner
    organisation = mailbox.organisation
    return DirectoryResult(
        kind="mailbox",
        id=str(mailbox.pk),
        display_name=mailbox.name,
        profession=owner.profession if owner else "",
        specialty=owner.specialty if owner else "",
        city=(owner.city if owner and owner.city else organisation.city),
        address=mailbox.address,
        organisation=organisation.name,
        rpps=(owner.rpps or owner.adeli or "") if owner else "",
    )


def _mailbox_results(words: list[str], user: User) -> list[DirectoryResult]:
    # An instance holds at most some thousands of mailboxes: they are matched here, with
    # the same folding as the national directory, rather than through a second index.
    own_organisations = set(Membership.objects.filter(user=user).values_list("organisation_id", flat=True))
    ranked: list[tuple[tuple[int, bool, str, str], Mailbox]] = []
    mailboxes = Mailbox.objects.filter(is_active=True).select_related("owner", "organisation")
    for mailbox in mailboxes:
        owner = mailbox.owner
        names = [mailbox.name]
        others = [mailbox.address, mailbox.organisation.name, mailbox.organisation.city]
        if owner is not None:
            names += [owner.first_name, owner.last_name]
            others += [owner.profession, owner.specialty, owner.city, owner.rpps or "", owner.adeli or ""]
        name_tokens = text.tokens(*names)
        score = _score(words, name_tokens, text.tokens(*others))
        if score is not None:
            outsider = mailbox.organisation_id not in own_organisations
            ranked.append(((score, outsider, " ".join(name_tokens), mailbox.address), mailbox))
    ranked.sort(key=lambda item: item[0])
    return [_mailbox_result(mailbox) for _, mailbox in ranked]


def _matching_tokens(word: str, kind: int) -> QuerySet[DirectoryToken]:
    return DirectoryToken.objects.filter(kind=kind, token__prefix=word)


def _reach(word: str) -> int:
    """How many index rows start with ``word``, counted up to REACH_COUNT per kind."""
    return sum(_matching_tokens(word, kind)[:REACH_COUNT].count() for kind in (_NAME, _OTHER))


def _candidate_entries(words: list[str]) -> list[int]:
    lookups = [word for word in words if len(word) >= MIN_DIRECTORY_WORD]
    if not lookups:
        return []
    # Start from the word that reaches the fewest entries (counted on the index alone, up
    # to a bound), and check the other words on each of its entries. Name matches are
    # taken first, each kind in token order, so exact words come before longer ones.
    reach = {word: _reach(word) for word in lookups}
    driver = min(lookups, key=lambda word: (reach[word], -len(word)))
    if reach[driver] == 0:
        return []
    others = list(words)
    others.remove(driver)
    found: dict[int, None] = {}
    for kind in (_NAME, _OTHER):
        rows = _matching_tokens(driver, kind).order_by("token", "entry_id")
        if others:
            rows = _first_rows(rows, SCAN_LIMIT)
        for word in others:
            # Both kinds named, so that a database that prefers to collect the other word's
            # entries first (PostgreSQL's semi-join) reads them from the index too.
            also = DirectoryToken.objects.filter(kind__in=(_NAME, _OTHER), token__prefix=word)
            rows = rows.filter(Exists(also.filter(entry_id=OuterRef("entry_id"))))
        wanted = CANDIDATES - len(found)
        found.update(dict.fromkeys(rows.values_list("entry_id", flat=True)[: wanted * 2]))
        if len(found) >= CANDIDATES:
            break
    return list(found)[:CANDIDATES]


def _first_rows(rows: QuerySet[DirectoryToken], count: int) -> QuerySet[DirectoryToken]:
    """``rows`` (in index order) cut after the ``count``-th, so that checking the other
    words of a query visits at most ``count`` index entries, however common all its words
    are ("médecin paris"). Costs one index walk of ``count`` entries, when there are that many."""
    last = rows.values_list("token", "entry_id")[count - 1 : count].first()
    if last is None:
        return rows
    token, entry_id = last
    return rows.filter(Q(token__lt=token) | Q(token=token, entry_id__lte=entry_id))


def _external_results(words: list[str], limit: int) -> list[DirectoryResult]:
    pks = _candidate_entries(words)
    if not pks:
        return []
    ranked: list[tuple[tuple[int, str, int], int]] = []
    for pk, name_key, search_key in DirectoryEntry.objects.filter(pk__in=pks).values_list(
        "pk", "name_key", "search_key"
    ):
        score = _score(words, name_key.split(), search_key.split())
        if score is not None:
            ranked.append(((score, name_key, pk), pk))
    ranked.sort(key=lambda item: item[0])
    best = [pk for _, pk in ranked[:limit]]
    entries = DirectoryEntry.objects.in_bulk(best)
    ordered = [entries[pk] for pk in best]
    return _in_instance(ordered)


def _in_instance(entries: list[DirectoryEntry]) -> list[DirectoryResult]:
    """External results, except people who have a mailbox here: their mailbox instead."""
    rpps = [entry.identifier for entry in entries if entry.id_type == DirectoryEntry.IdType.RPPS]
    adeli = [entry.identifier for entry in entries if entry.id_type == DirectoryEntry.IdType.ADELI]
    here: dict[str, Mailbox] = {}
    if rpps or adeli:
        personal = Mailbox.objects.filter(is_active=True, kind=Mailbox.Kind.PERSONAL, owner__isnull=False)
        matching = personal.filter(Q(owner__rpps__in=rpps) | Q(owner__adeli__in=adeli))
        for mailbox in matching.select_related("owner", "organisation"):
            if mailbox.owner is not None:
                here[mailbox.owner.national_id] = mailbox
    results = []
    for entry in entries:
        own = here.get(entry.national_id)
        results.append(_mailbox_result(own) if own else _external_result(entry))
    return results


def _external_result(entry: DirectoryEntry) -> DirectoryResult:
    return DirectoryResult(
        kind="external",
        id=entry.national_id,
        display_name=entry.display_name,
        profession=entry.profession_label,
        specialty=entry.specialty_label,
        city=", ".join(entry.cities[:3]),
        organisation=next((place["structure"] for place in entry.activities if place.get("structure")), ""),
        rpps=entry.identifier,
    )
