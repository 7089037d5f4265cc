from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import strategies as st

from pli.audit.models import AuditEvent
from pli.directory import annuaire, services
from pli.directory.models import DirectoryEntry, DirectoryToken
from pli.testing import annuaire as synthetic

# The header and three real rows of the public extract (Licence Ouverte), as published.
SAMPLE = Path(__file__).with_name("data") / "PS_LibreAcces_Personne_activite_sample.txt"


def run_import(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("directory", "import", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def figures(output: str) -> dict[str, int]:
    found = {}
    for line in output.splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():
            found[name] = int(value)
    return found


def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every stored column of both tables, to prove a re-import wrote nothing."""
    entries = list(DirectoryEntry.objects.order_by("pk").values_list())
    tokens = list(DirectoryToken.objects.order_by("pk").values_list())
    return entries, tokens


def test_imports_the_real_sample_and_reimport_changes_nothing(db: None) -> None:
    output, _ = run_import(SAMPLE)
    assert figures(output) == {
        "lines read": 3,
        "people": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "malformed lines": 0,
    }
    doctor = DirectoryEntry.objects.get(national_id="810001045367")
    assert (doctor.id_type, doctor.identifier) == ("8", "10001045367")
    assert doctor.display_name == "Dr Eric GUIGNARD"
    assert doctor.profession_code == "10" and doctor.profession_label == "Médecin"
    assert doctor.specialty_label == "Santé publique et médecine sociale"
    assert doctor.activities[0]["country"] == "Royaume-uni"
    assert doctor.activities[0]["siret"] == "85131528300016"
    speech = DirectoryEntry.objects.get(national_id="0759124159")
    assert speech.id_type == "0" and speech.display_name == "Mme Isabelle DE RUIJTER"
    # The commune column is empty in this row: the town comes from the "bureau distributeur".
    assert speech.activities == [
        {
            "structure": "CABINET MME DE RUIJTER",
            "postcode": "75015",
            "city": "PARIS",
            "country": "",
            "siret": "",
            "finess": "",
        }
    ]
    assert speech.search_key == "de ruijter isabelle orthophoniste paris 759124159"
    before = snapshot()

    output, _ = run_import(SAMPLE)
    assert figures(output)["unchanged"] == 3
    assert figures(output)["created"] == figures(output)["updated"] == 0
    assert snapshot() == before
    assert AuditEvent.objects.filter(action="directory.imported").count() == 2


def test_generated_file_groups_activities_and_is_idempotent(db: None, tmp_path: Path) -> None:
    path = synthetic.write(tmp_path / "annuaire.txt", 3000, seed=7)
    people = {line.split("|")[2] for line in path.read_text(encoding="utf-8").splitlines()[1:]}
    output, _ = run_import(path)
    counts = figures(output)
    assert counts["lines read"] == 3000
    assert counts["people"] == counts["created"] == len(people) == DirectoryEntry.objects.count()
    assert counts["malformed lines"] == 0
    # Some people practise in several places: one entry each, with all their places.
    assert DirectoryEntry.objects.filter(activities__1__isnull=False).exists()
    tokens = DirectoryToken.objects.count()
    assert tokens >= 5 * len(people)
    before = snapshot()

    output, _ = run_import(path)
    counts = figures(output)
    assert counts["unchanged"] == len(people) and counts["created"] == counts["updated"] == 0
    assert snapshot() == before


def test_a_changed_person_is_updated_with_their_search_words(db: None, tmp_path: Path) -> None:
    run_import(SAMPLE)
    text = SAMPLE.read_text(encoding="utf-8").replace("75015 PARIS", "69003 LYON").replace("|75015|", "|69003|")
    changed = tmp_path / "changed.txt"
    changed.write_text(text, encoding="utf-8")
    counts = figures(run_import(changed)[0])
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (0, 1, 2)
    entry = DirectoryEntry.objects.get(national_id="0759124159")
    assert entry.cities == ["LYON"]
    words = set(DirectoryToken.objects.filter(entry=entry).values_list("token", flat=True))
    assert "lyon" in words and "paris" not in words


def _lines_with_mistakes(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A generated file with broken lines at known line numbers (header = line 1)."""
    good = synthetic.write(tmp_path / "good.txt", 200, seed=3).read_bytes().split(b"\n")
    template = good[5].decode()
    fields = template.split("|")
    broken = {
        4: b"0|012345678|0012345678|too|few|fields|",
        9: template.replace(fields[1], "1234", 1).encode(),  # identifier too short
        17: ("X|" + template.split("|", 1)[1]).encode(),  # unknown identifier type
        30: "|".join([*fields[:2], fields[0] + "0" * len(fields[1]), *fields[3:]]).encode(),  # id mismatch
        41: "|".join([*fields[:7], "", *fields[8:]]).encode(),  # no name
        60: template.replace(fields[7], fields[7] + "\x00", 1).encode(),  # NUL (PostgreSQL refuses it)
        55: template.encode().replace(b"|M|", b"|\xff\xfe|", 1)
        if b"|M|" in template.encode()
        else template.encode().replace(b"|MME|", b"|\xff\xfe|", 1),  # not UTF-8
    }
    lines = list(good)
    for number in sorted(broken):
        lines.insert(number - 1, broken[number])
    path = tmp_path / "broken.txt"
    path.write_bytes(b"\n".join(lines))
    reasons = {
        4: "fields instead of 53",
        9: "RPPS" if fields[0] == "8" else "ADELI",
        17: "identifier type",
        30: "national id",
        41: "name is empty",
        55: "UTF-8",
        60: "NUL",
    }
    return path, reasons


def test_malformed_lines_are_counted_with_their_numbers_and_the_rest_imported(db: None, tmp_path: Path) -> None:
    path, reasons = _lines_with_mistakes(tmp_path)
    output, _ = run_import(path)
    counts = figures(output)
    assert counts["malformed lines"] == len(reasons)
    good_lines = [line for line in (tmp_path / "good.txt").read_bytes().split(b"\n")[1:] if line.strip()]
    assert counts["lines read"] == len(good_lines) + len(reasons)
    for number, reason in reasons.items():
        line = next(text for text in output.splitlines() if text.strip().startswith(f"line {number}:"))
        assert reason in line, line
    assert DirectoryEntry.objects.count() == len({line.split(b"|")[2] for line in good_lines})


def test_only_the_first_malformed_lines_are_listed(db: None, tmp_path: Path) -> None:
    lines = [synthetic.HEADER] + [f"0|{n:09d}|0{n:09d}|oops|" for n in range(25)]
    path = tmp_path / "junk.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output, _ = run_import(path)
    assert figures(output)["malformed lines"] == 25
    listed = [line for line in output.splitlines() if line.strip().startswith("line ")]
    assert [line.split(":")[0].strip() for line in listed] == [f"line {n}" for n in range(2, 12)]
    assert "… and 15 more" in output


def test_wrong_header_is_refused_with_a_clear_error(db: None, tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("id;name;city\n1;Someone;Paris\n", encoding="utf-8")
    with pytest.raises(CommandError, match="not an Annuaire Santé"):
        run_import(path)
    assert DirectoryEntry.objects.count() == 0


def test_missing_file_is_a_clear_error(db: None, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file"):
        run_import(tmp_path / "absent.txt")


def test_a_directory_given_as_the_file_is_named_as_such(db: None, tmp_path: Path) -> None:
    # "/srv/annuaire: no such file" sent the operator looking for a path that exists.
    with pytest.raises(CommandError, match="is a directory, not the extract file"):
        run_import(tmp_path)


def test_the_pli_command_exits_non_zero_on_a_wrong_header(tmp_path: Path) -> None:
    path = tmp_path / "other.txt"
    path.write_text("Nom|Prénom|\nDUPONT|JEAN|\n", encoding="utf-8")
    pli = Path(sys.executable).with_name("pli")
    result = subprocess.run(
        [str(pli), "directory", "import", str(path)], capture_output=True, text=True, env=os.environ.copy(), check=False
    )
    assert result.returncode == 1
    assert "not an Annuaire Santé" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unsorted_file_gives_the_same_directory(db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sorted_path = synthetic.write(tmp_path / "sorted.txt", 1500, seed=11)
    header, *rows = sorted_path.read_text(encoding="utf-8").splitlines()
    random.Random(5).shuffle(rows)
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    # Small chunks, so that the on-disk sort really merges several of them.
    monkeypatch.setattr(annuaire, "SORT_CHUNK_BYTES", 20_000)

    run_import(shuffled)
    from_shuffled = {
        entry.national_id: (entry.last_name, sorted(map(str, entry.activities)), entry.search_key.split())
        for entry in DirectoryEntry.objects.all()
    }
    DirectoryEntry.objects.all().delete()
    run_import(sorted_path)
    from_sorted = {
        entry.national_id: (entry.last_name, sorted(map(str, entry.activities)), entry.search_key.split())
        for entry in DirectoryEntry.objects.all()
    }
    assert from_shuffled.keys() == from_sorted.keys()
    for national_id, (name, places, words) in from_sorted.items():
        assert from_shuffled[national_id][0] == name
        assert from_shuffled[national_id][1] == places
        assert from_shuffled[national_id][2] == words
    # Same people, same places: the order of the lines changes nothing.
    counts = figures(run_import(shuffled)[0])
    assert counts["created"] == counts["updated"] == 0


def test_prune_removes_people_no_longer_in_the_file(db: None, tmp_path: Path) -> None:
    full = synthetic.write(tmp_path / "full.txt", 600, seed=2)
    header, *rows = full.read_text(encoding="utf-8").splitlines()
    people = list(dict.fromkeys(row.split("|")[2] for row in rows))
    gone = {people[0], people[len(people) // 2], people[-1]}
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join([header, *(r for r in rows if r.split("|")[2] not in gone)]) + "\n", encoding="utf-8")
    run_import(full)

    counts = figures(run_import(partial)[0])
    assert "removed" not in counts  # without --prune nobody is removed
    assert DirectoryEntry.objects.count() == len(people)

    counts = figures(run_import(partial, "--prune")[0])
    assert counts["removed"] == 3
    assert set(DirectoryEntry.objects.values_list("national_id", flat=True)) == set(people) - gone
    assert not DirectoryToken.objects.filter(entry__national_id__in=gone).exists()


def test_prune_across_many_batches(db: None, tmp_path: Path) -> None:
    full = synthetic.write(tmp_path / "full.txt", 600, seed=2)
    header, *rows = full.read_text(encoding="utf-8").splitlines()
    people = list(dict.fromkeys(row.split("|")[2] for row in rows))
    gone = set(people[::7]) | {people[-1]}
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join([header, *(r for r in rows if r.split("|")[2] not in gone)]) + "\n", encoding="utf-8")
    services.import_extract(full)
    # Small batches: people missing between two batches, and after the last, are found too.
    report = services.import_extract(partial, prune=True, batch_size=9)
    assert report.removed == len(gone)
    assert set(DirectoryEntry.objects.values_list("national_id", flat=True)) == set(people) - gone


def test_small_batches_give_the_same_result(db: None, tmp_path: Path) -> None:
    path = synthetic.write(tmp_path / "annuaire.txt", 400, seed=4)
    report = services.import_extract(path, batch_size=7)
    assert report.created == DirectoryEntry.objects.count()
    again = services.import_extract(path, batch_size=13)
    assert again.unchanged == report.created and again.created == again.updated == 0


def test_progress_is_plain_lines_when_not_on_a_terminal(db: None, tmp_path: Path) -> None:
    path = synthetic.write(tmp_path / "annuaire.txt", 300, seed=4)
    _, progress = run_import(path)
    assert "\r" not in progress
    assert progress.strip().splitlines()[-1].startswith("progress: 100%")


def test_progress_callback_reaches_the_file_size(db: None, tmp_path: Path) -> None:
    path = synthetic.write(tmp_path / "annuaire.txt", 500, seed=4)
    seen: list[tuple[int, int]] = []
    services.import_extract(path, batch_size=20, progress=lambda done, total: seen.append((done, total)))
    size = path.stat().st_size
    assert len(seen) > 5
    assert all(total == size for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (size, size)


@given(st.binary(max_size=400))
def test_any_bytes_are_a_line_or_a_clear_rejection(raw: bytes) -> None:
    layout = annuaire.read_header(synthetic.HEADER.encode())
    try:
        line = annuaire.parse_line(2, raw, layout)
    except annuaire.MalformedLine as exc:
        assert str(exc)
    else:
        assert line.national_id == line.id_type + line.identifier


_VALID = next(synthetic.lines(1, seed=9)).split("|")


@given(st.dictionaries(st.integers(0, len(_VALID) - 1), st.text(max_size=30).filter(lambda t: "|" not in t)))
def test_altered_fields_give_a_consistent_line_or_a_clear_rejection(changes: dict[int, str]) -> None:
    layout = annuaire.read_header(synthetic.HEADER.encode())
    row = list(_VALID)
    for index, value in changes.items():
        row[index] = value
    try:
        line = annuaire.parse_line(2, "|".join(row).encode(), layout)
    except annuaire.MalformedLine as exc:
        assert str(exc)
    else:
        assert line.national_id == line.id_type + line.identifier
        assert line.id_type in ("8", "0") and line.last_name
        assert all("|" not in value for value in line.activity.values())


def test_prune_stops_on_a_damaged_file(db: None, tmp_path: Path) -> None:
    full = synthetic.write(tmp_path / "full.txt", 300, seed=8)
    services.import_extract(full)
    before = DirectoryEntry.objects.count()
    header = full.read_text(encoding="utf-8").splitlines()[0]
    damaged = tmp_path / "damaged.txt"
    damaged.write_text("\n".join([header, *(["8|garbage|"] * 50)]) + "\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    # A non-zero exit (3) after the whole report: a scheduled import exited 0 on it.
    with pytest.raises(CommandError, match="removal of absent people was stopped") as stopped:
        call_command("directory", "import", str(damaged), "--prune", stdout=out, stderr=err)
    assert stopped.value.returncode == 3
    assert figures(out.getvalue())["removed"] == 0
    assert "stopped" in err.getvalue()
    assert DirectoryEntry.objects.count() == before
    # Header only: not a complete extract either.
    (tmp_path / "empty.txt").write_text(header + "\n", encoding="utf-8")
    report = services.import_extract(tmp_path / "empty.txt", prune=True)
    assert report.prune_stopped and report.removed == 0
    assert DirectoryEntry.objects.count() == before
