"""Reading the public "Annuaire Santé" extract (``PS_LibreAcces_Personne_activite``).

No database here: this module turns the file into ``Person`` records, one per national id,
each with its list of practice places. The format (see ``shared/data/annuaire/README.md``):
UTF-8, ``|``-separated, a header line, a trailing ``|`` on every line, no quoting, and one
line per *activity*, so a person spans several lines.

The import groups consecutive lines by national id. The published file is sorted by that id;
``ordered_lines`` checks it and, when a file is not, sorts it on disk in bounded memory first
(chunks sorted in memory, then merged), so a person's lines always arrive together.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import operator
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from pli.directory import text

# Bump when what is derived from a line changes (fields kept, search tokens): the next
# import then rewrites every entry instead of reporting them unchanged.
FORMAT_VERSION = 1

COLUMNS = {
    "id_type": "Type d'identifiant PP",
    "identifier": "Identifiant PP",
    "national_id": "Identification nationale PP",
    "exercise_civility": "Libellé civilité d'exercice",
    "civility": "Libellé civilité",
    "last_name": "Nom d'exercice",
    "first_name": "Prénom d'exercice",
    "profession_code": "Code profession",
    "profession_label": "Libellé profession",
    "specialty_type": "Code type savoir-faire",
    "specialty_label": "Libellé savoir-faire",
    "siret": "Numéro SIRET site",
    "finess": "Numéro FINESS site",
    "company": "Raison sociale site",
    "brand": "Enseigne commerciale site",
    "cedex": "Bureau cedex (coord. structure)",
    "postcode": "Code postal (coord. structure)",
    "city": "Libellé commune (coord. structure)",
    "country_code": "Code pays (coord. structure)",
    "country": "Libellé pays (coord. structure)",
}

# Longest value accepted per kept field (the model's column sizes); longer is malformed.
MAX_LENGTHS = {
    "civility": 40,
    "last_name": 150,
    "first_name": 150,
    "profession_code": 10,
    "profession_label": 150,
    "specialty_label": 200,
}

_RPPS = re.compile(r"\d{11}")
# ADELI: 9 characters, department first; Corsica's departments are written 2A and 2B.
_ADELI = re.compile(r"(?:\d{2}|2[AB])\d{7}")
_CEDEX = re.compile(r"\s+CEDEX(?:\s+\d+)?$", re.IGNORECASE)
_FRANCE = "99100"  # INSEE code of France in "Code pays"
_PLACE_ORDER = ("postcode", "city", "structure", "siret", "finess", "country")
_ABBREVIATIONS = {"docteur": "Dr", "professeur": "Pr", "madame": "Mme", "monsieur": "M.", "mademoiselle": "Mlle"}


class HeaderError(ValueError):
    """The first line is not the header of a ``PS_LibreAcces_Personne_activite`` file."""


class MalformedLine(ValueError):
    pass


@dataclass(frozen=True)
class Layout:
    """Where each kept column is, and how many fields every line must have."""

    width: int
    getter: operator.itemgetter[Any]


def read_header(raw: bytes) -> Layout:
    try:
        line = raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise HeaderError("the header line is not UTF-8 text") from None
    names = line.split("|")
    positions = {name: index for index, name in enumerate(names)}
    missing = [name for name in COLUMNS.values() if name not in positions]
    if missing:
        shown = ", ".join(f"“{name}”" for name in missing[:5])
        raise HeaderError(
            "this is not an Annuaire Santé “PS_LibreAcces_Personne_activite” extract: "
            f"its header lacks {len(missing)} expected column(s), e.g. {shown}"
        )
    return Layout(width=len(names), getter=operator.itemgetter(*(positions[name] for name in COLUMNS.values())))


class Line(NamedTuple):
    number: int
    national_id: str
    id_type: str
    identifier: str
    civility: str
    last_name: str
    first_name: str
    profession_code: str
    profession_label: str
    specialty_type: str
    specialty_label: str
    activity: dict[str, str]


def _city(city: str, cedex: str, postcode: str) -> str:
    if not city:
        # Many rows leave the commune empty and only fill the "bureau distributeur"
        # ("75015 PARIS", "13008 MARSEILLE CEDEX 08"): take the town from it.
        city = cedex
        if postcode and city.startswith(postcode + " "):
            city = city[len(postcode) + 1 :]
    if "CEDEX" in city.upper():
        city = _CEDEX.sub("", city)
    return city.strip()


def parse_line(number: int, raw: bytes, layout: Layout) -> Line:
    """One data line → ``Line``; raises ``MalformedLine`` saying what is wrong.

    Written for speed (two million calls): plain locals, no per-field dictionary.
    """
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedLine("not valid UTF-8") from None
    if "\x00" in decoded:
        raise MalformedLine("contains a NUL character")
    fields = decoded.rstrip("\r\n").split("|")
    if len(fields) != layout.width:
        raise MalformedLine(f"{len(fields)} fields instead of {layout.width}")
    (
        id_type,
        identifier,
        national_id,
        exercise_civility,
        civility,
        last_name,
        first_name,
        profession_code,
        profession_label,
        specialty_type,
        specialty_label,
        siret,
        finess,
        company,
        brand,
        cedex,
        postcode,
        city,
        country_code,
        country,
    ) = (value.strip() for value in layout.getter(fields))
    if id_type == "8":
        if not _RPPS.fullmatch(identifier):
            raise MalformedLine("the RPPS number must have 11 digits")
    elif id_type == "0":
        if not _ADELI.fullmatch(identifier):
            raise MalformedLine("the ADELI number must have 9 characters")
    else:
        raise MalformedLine("the identifier type must be 8 (RPPS) or 0 (ADELI)")
    if national_id != id_type + identifier:
        raise MalformedLine("the national id is not the identifier type followed by the identifier")
    if not last_name:
        raise MalformedLine("the name is empty")
    civility = exercise_civility or civility
    for name, value in (
        ("civility", civility),
        ("last_name", last_name),
        ("first_name", first_name),
        ("profession_code", profession_code),
        ("profession_label", profession_label),
        ("specialty_label", specialty_label),
    ):
        if len(value) > MAX_LENGTHS[name]:
            column = COLUMNS["exercise_civility" if name == "civility" else name]
            raise MalformedLine(f"the field “{column}” is longer than {MAX_LENGTHS[name]} characters")
    activity = {
        "structure": company or brand,
        "postcode": postcode,
        "city": _city(city, cedex, postcode),
        "country": country if country_code not in ("", _FRANCE) else "",
        "siret": siret,
        "finess": finess,
    }
    return Line(
        number,
        national_id,
        id_type,
        identifier,
        civility,
        last_name,
        first_name,
        profession_code,
        profession_label,
        specialty_type,
        specialty_label,
        activity,
    )


@dataclass
class Person:
    """Everything the directory keeps about one professional, built from all their lines."""

    national_id: str
    id_type: str
    identifier: str
    civility: str
    last_name: str
    first_name: str
    profession_code: str
    profession_label: str
    specialty_label: str = ""
    activities: list[dict[str, str]] = field(default_factory=list)
    _ordinal_specialty: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, line: Line) -> Person:
        person = cls(
            national_id=line.national_id,
            id_type=line.id_type,
            identifier=line.identifier,
            civility=line.civility,
            last_name=line.last_name,
            first_name=line.first_name,
            profession_code=line.profession_code,
            profession_label=line.profession_label,
        )
        person.add(line)
        return person

    def add(self, line: Line) -> None:
        # The "spécialité ordinale" (type S) is what colleagues look for; other kinds of
        # savoir-faire (competences, DESC…) are kept only when there is no specialty.
        ordinal = line.specialty_type == "S"
        if line.specialty_label and not self._ordinal_specialty and (ordinal or not self.specialty_label):
            self.specialty_label = line.specialty_label
            self._ordinal_specialty = ordinal
        if line.activity not in self.activities and any(line.activity.values()):
            self.activities.append(line.activity)

    @property
    def places(self) -> list[dict[str, str]]:
        """The activities in a fixed order: the same file with its lines in another order
        gives the same entry (and a re-import sees no change)."""
        return sorted(self.activities, key=lambda place: [place[key] for key in _PLACE_ORDER])

    @property
    def cities(self) -> list[str]:
        return list(dict.fromkeys(place["city"] for place in self.places if place["city"]))

    def fields(self) -> dict[str, Any]:
        """The entry's stored columns (search keys included)."""
        name_tokens = text.tokens(self.last_name, self.first_name)
        other_tokens = text.tokens(self.profession_label, self.specialty_label, *self.cities, self.identifier)
        return {
            "national_id": self.national_id,
            "id_type": self.id_type,
            "identifier": self.identifier,
            "civility": self.civility,
            "last_name": self.last_name,
            "first_name": self.first_name,
            "profession_code": self.profession_code,
            "profession_label": self.profession_label,
            "specialty_label": self.specialty_label,
            "activities": self.places,
            "name_key": " ".join(name_tokens),
            "search_key": " ".join(dict.fromkeys(name_tokens + other_tokens)),
        }

    def fingerprint(self, fields: dict[str, Any]) -> str:
        canonical = json.dumps([FORMAT_VERSION, fields], ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def display_name(civility: str, first_name: str, last_name: str) -> str:
    """``("Docteur", "ERIC", "GUIGNARD")`` → ``"Dr Eric GUIGNARD"`` (French convention)."""
    title = _ABBREVIATIONS.get(civility.lower(), civility)
    first = "-".join(part.capitalize() for part in first_name.split("-"))
    first = " ".join(word[:1].upper() + word[1:] for word in first.split(" "))
    return " ".join(part for part in (title, first, last_name) if part)


# --- Reading the file in national id order ---------------------------------------------

# Lines are sorted in memory by chunks of this many bytes when the file is out of order.
SORT_CHUNK_BYTES = 32 * 2**20


def _key(raw: bytes) -> bytes:
    parts = raw.split(b"|", 3)
    return parts[2] if len(parts) > 3 else b""


def is_sorted(handle: IO[bytes]) -> bool:
    """Whether every line's national id is ≥ the previous one (malformed lines ignored)."""
    previous = b""
    for raw in handle:
        key = _key(raw)
        if not key.isdigit():
            continue
        if key < previous:
            return False
        previous = key
    return True


def _spill(chunk: list[tuple[bytes, int, bytes]], directory: Path, index: int) -> Path:
    chunk.sort()
    path = directory / f"chunk-{index:05d}"
    with path.open("wb") as out:
        for _, number, raw in chunk:
            out.write(b"%d|%s" % (number, raw if raw.endswith(b"\n") else raw + b"\n"))
    return path


def _read_chunk(path: Path) -> Iterator[tuple[bytes, int, bytes]]:
    with path.open("rb") as handle:
        for stored in handle:
            number, raw = stored.split(b"|", 1)
            yield _key(raw), int(number), raw


def _sorted_from_disk(handle: IO[bytes], first_number: int, directory: Path) -> Iterator[tuple[int, bytes]]:
    chunks: list[Path] = []
    chunk: list[tuple[bytes, int, bytes]] = []
    size = 0
    for number, raw in enumerate(handle, start=first_number):
        chunk.append((_key(raw), number, raw))
        size += len(raw)
        if size >= SORT_CHUNK_BYTES:
            chunks.append(_spill(chunk, directory, len(chunks)))
            chunk, size = [], 0
    if chunk:
        chunks.append(_spill(chunk, directory, len(chunks)))
    # Ties keep file order (the line number is the second key), so a person's activities
    # stay in the order the file gives them.
    for _, number, raw in heapq.merge(*(_read_chunk(path) for path in chunks)):
        yield number, raw


def ordered_lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """The data lines (after the header) as ``(line number, raw bytes)``, by national id.

    ``handle`` must be positioned just after the header line and be seekable.
    """
    start = handle.tell()
    in_order = is_sorted(handle)
    handle.seek(start)
    if in_order:
        yield from enumerate(handle, start=2)
        return
    with tempfile.TemporaryDirectory(prefix="pli-annuaire-") as directory:
        yield from _sorted_from_disk(handle, 2, Path(directory))


@dataclass
class Malformed:
    """How many lines were rejected, and the first few of them (line number, reason)."""

    count: int = 0
    first: list[tuple[int, str]] = field(default_factory=list)
    keep: int = 10

    def add(self, number: int, reason: str) -> None:
        self.count += 1
        # The lowest line numbers, also when an unsorted file is read in national id order.
        if len(self.first) < self.keep or number < self.first[-1][0]:
            self.first.append((number, reason))
            self.first.sort()
            del self.first[self.keep :]


def people(lines: Iterable[tuple[int, bytes]], layout: Layout, malformed: Malformed) -> Iterator[Person]:
    """Group consecutive lines by national id; malformed lines are counted in ``malformed``."""
    current: Person | None = None
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            line = parse_line(number, raw, layout)
        except MalformedLine as exc:
            malformed.add(number, str(exc))
            continue
        if current is not None and current.national_id == line.national_id:
            current.add(line)
            continue
        if current is not None:
            yield current
        current = Person.start(line)
    if current is not None:
        yield current
