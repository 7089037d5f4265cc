from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client

from pli.accounts import services as accounts
from pli.accounts.models import Mailbox, Organisation, User
from pli.directory import services, text
from pli.directory.models import DirectoryToken
from pli.directory.services import search
from pli.testing import annuaire as synthetic
from pli.testing.accounts import make_organisation, make_user


def row(
    identifier: str,
    last: str,
    first: str,
    profession: str = "Médecin",
    specialty: str = "",
    city: str = "PARIS",
    postcode: str = "75015",
    civility: str = "Docteur",
) -> str:
    id_type = "8" if len(identifier) == 11 else "0"
    fields = [""] * synthetic.WIDTH
    fields[0:3] = [id_type, identifier, id_type + identifier]
    fields[4], fields[7], fields[8] = civility, last, first
    fields[9], fields[10] = "10", profession
    if specialty:
        fields[13], fields[16] = "S", specialty
    fields[24], fields[34], fields[35], fields[37] = f"CABINET {last}", f"{postcode} {city}", postcode, city
    return "|".join(fields)


PEOPLE = [
    row("10000000001", "MARTIN", "JEANNE", specialty="Cardiologie et maladies vasculaires", city="LYON"),
    row("10000000002", "MARTINEZ", "PAUL", specialty="Pédiatrie", city="PARIS"),
    row("10000000003", "DUPONT", "MARTINE", specialty="Médecine générale", city="MARTIGUES", postcode="13500"),
    row("10000000004", "LEFÈVRE", "HÉLÈNE", profession="Infirmier", city="NANTES", postcode="44000", civility=""),
    row("10000000005", "MARTIN", "ALAIN", specialty="Médecine générale", city="PARIS"),
    row("10000000006", "DURAND", "LUC", profession="Masseur-Kinésithérapeute", city="LYON", civility=""),
    row("759124159", "DE RUIJTER", "ISABELLE", profession="Orthophoniste", city="PARIS", civility=""),
    row("10000000007", "LYONNAIS", "MARC", profession="Pharmacien", city="PARIS", civility=""),
]


@pytest.fixture
def directory(db: None, tmp_path: Path) -> None:
    path = tmp_path / "annuaire.txt"
    lines = sorted(PEOPLE, key=lambda line: line.split("|")[2])
    path.write_text("\n".join([synthetic.HEADER, *lines]) + "\n", encoding="utf-8")
    services.import_extract(path)


@pytest.fixture
def org(db: None) -> Organisation:
    return make_organisation("Cabinet des Tilleuls", city="Rennes")


@pytest.fixture
def searcher(org: Organisation) -> User:
    return make_user(org, email="moi@example.org", first_name="Claire", last_name="Moi")


def names(results: list[services.DirectoryResult]) -> list[str]:
    return [result.display_name for result in results]


def test_fold_ignores_accents_case_and_punctuation() -> None:
    assert text.fold("Hélène  CŒUR-D'Alène") == "helene coeur d alene"
    assert text.tokens("Jean-Pierre", "JEAN", "Straße") == ["jean", "pierre", "strasse"]


def test_prefix_accents_and_case(directory: None, searcher: User) -> None:
    assert names(search("lefe", user=searcher)) == ["Hélène LEFÈVRE"]
    assert names(search("LEFEVRE helene", user=searcher)) == ["Hélène LEFÈVRE"]
    assert names(search("Lefèvre Hélène", user=searcher)) == ["Hélène LEFÈVRE"]
    assert names(search("ruij", user=searcher)) == ["Isabelle DE RUIJTER"]


def test_every_word_must_match_some_field(directory: None, searcher: User) -> None:
    assert names(search("martin lyon", user=searcher)) == ["Dr Jeanne MARTIN"]
    assert names(search("cardio", user=searcher)) == ["Dr Jeanne MARTIN"]
    assert names(search("kine lyon", user=searcher)) == ["Luc DURAND"]
    assert names(search("generale paris", user=searcher)) == ["Dr Alain MARTIN"]
    assert search("martin nantes", user=searcher) == []
    assert search("zzz", user=searcher) == []


def test_rpps_number_finds_the_person(directory: None, searcher: User) -> None:
    [result] = search("10000000006", user=searcher)
    assert result.kind == "external" and result.rpps == "10000000006" and result.id == "810000000006"
    assert names(search("759124", user=searcher)) == ["Isabelle DE RUIJTER"]


def test_ranking_whole_name_then_name_prefix_then_other_fields(directory: None, searcher: User) -> None:
    found = names(search("martin", user=searcher))
    # MARTIN (whole word) before MARTINEZ and MARTINE (name prefixes); the town MARTIGUES,
    # which "martin" does not start, brings nobody else.
    assert found[:2] == ["Dr Alain MARTIN", "Dr Jeanne MARTIN"]
    assert set(found[2:]) == {"Dr Paul MARTINEZ", "Dr Martine DUPONT"}
    # A name starting with the word ranks before a town equal to it.
    assert names(search("lyon", user=searcher)) == ["Marc LYONNAIS", "Luc DURAND", "Dr Jeanne MARTIN"]


def test_external_results_carry_what_the_compose_form_needs(directory: None, searcher: User) -> None:
    [result] = search("durand", user=searcher)
    assert result.as_dict() == {
        "kind": "external",
        "id": "810000000006",
        "display_name": "Luc DURAND",
        "profession": "Masseur-Kinésithérapeute",
        "specialty": "",
        "city": "LYON",
        "address": "",
        "organisation": "CABINET DURAND",
        "rpps": "10000000006",
    }


def test_mailboxes_come_first_and_carry_their_address(directory: None, org: Organisation, searcher: User) -> None:
    colleague = make_user(
        org,
        email="jm@example.org",
        first_name="Jeanne",
        last_name="Martinon",
        professional=accounts.Professional(profession="Médecin", specialty="Cardiologie", city="Rennes"),
    )
    results = search("martin", user=searcher)
    assert results[0].kind == "mailbox"
    assert results[0].display_name == colleague.display_name
    assert results[0].address == Mailbox.objects.get(owner=colleague).address
    assert results[0].organisation == "Cabinet des Tilleuls"
    assert results[0].specialty == "Cardiologie" and results[0].city == "Rennes"
    assert all(result.kind == "external" for result in results[1:])
    # Found by profession, specialty, town, organisation or address too.
    for query in ("cardio rennes", "tilleuls jeanne", colleague.personal_mailbox.address.split("@")[0]):
        assert any(result.address == results[0].address for result in search(query, user=searcher)), query


def test_shared_mailboxes_are_found_and_inactive_ones_are_not(org: Organisation, searcher: User) -> None:
    shared = accounts.create_shared_mailbox(org, "Secrétariat", [searcher])
    [result] = search("secretariat", user=searcher)
    assert result.kind == "mailbox" and result.address == shared.address and result.rpps == ""
    Mailbox.objects.filter(pk=shared.pk).update(is_active=False)
    assert search("secretariat", user=searcher) == []


def test_own_organisation_mailboxes_rank_first(org: Organisation, searcher: User) -> None:
    other = make_organisation("Clinique du Port")
    make_user(other, email="a@example.org", first_name="Anne", last_name="Bernard")
    make_user(org, email="b@example.org", first_name="Anne", last_name="Bernard")
    results = search("bernard", user=searcher)
    assert [result.organisation for result in results] == ["Cabinet des Tilleuls", "Clinique du Port"]


def test_a_professional_with_a_mailbox_here_is_not_listed_twice(
    directory: None, org: Organisation, searcher: User
) -> None:
    make_user(
        org,
        email="luc@example.org",
        first_name="Luc",
        last_name="Durand",
        professional=accounts.Professional(profession="Masseur-Kinésithérapeute", rpps="10000000006"),
    )
    results = search("durand", user=searcher)
    assert [(result.kind, result.display_name) for result in results] == [("mailbox", "Luc Durand")]
    # Also when only the national entry matches (the town is in the directory, not the account).
    [by_town] = search("durand lyon", user=searcher)
    assert by_town.kind == "mailbox" and by_town.rpps == "10000000006"


def test_limit_and_short_or_empty_queries(directory: None, searcher: User) -> None:
    assert len(search("martin", user=searcher, limit=2)) == 2
    assert search("", user=searcher) == []
    assert search("  -- ", user=searcher) == []
    # One letter alone is too vague for the national directory (mailboxes still match).
    assert [result.kind for result in search("m", user=searcher)] == ["mailbox"]


def test_the_prefix_lookup_walks_the_index_in_token_order(directory: None) -> None:
    tokens = list(
        DirectoryToken.objects.filter(kind=DirectoryToken.Kind.NAME, token__prefix="martin")
        .order_by("token")
        .values_list("token", flat=True)
    )
    assert tokens == ["martin", "martin", "martine", "martinez"]
    assert not DirectoryToken.objects.filter(token__prefix="martinz").exists()


# --- The pages ------------------------------------------------------------------------


@pytest.fixture
def signed_in(searcher: User) -> Client:
    client = Client()
    client.force_login(searcher)
    return client


def test_directory_page_searches_without_javascript(directory: None, signed_in: Client) -> None:
    response = signed_in.get("/directory/", {"q": "durand"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Luc DURAND" in body and "Masseur-Kinésithérapeute" in body
    assert 'hx-get="/directory/results"' in body
    assert "Annuaire" in body  # French first


def test_results_fragment_for_htmx(directory: None, signed_in: Client) -> None:
    response = signed_in.get("/directory/results", {"q": "ruijter"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert 'data-kind="external"' in body and "Isabelle DE RUIJTER" in body
    empty = signed_in.get("/directory/results", {"q": "zzzz"}).content.decode()
    assert "zzzz" in empty and "dir-result" not in empty


def test_json_endpoint_shape(directory: None, org: Organisation, signed_in: Client) -> None:
    make_user(org, email="jd@example.org", first_name="Jean", last_name="Durand")
    response = signed_in.get("/directory/search.json", {"q": "durand", "limit": "5"})
    assert response.status_code == 200
    data = json.loads(response.content)
    assert data["query"] == "durand"
    kinds = [(result["kind"], result["display_name"]) for result in data["results"]]
    assert kinds == [("mailbox", "Jean Durand"), ("external", "Luc DURAND")]
    assert data["results"][0]["address"].startswith("jean.durand@")
    assert set(data["results"][0]) == {
        "kind",
        "id",
        "display_name",
        "profession",
        "specialty",
        "city",
        "address",
        "organisation",
        "rpps",
    }


@pytest.mark.parametrize(
    "params,field",
    [({"q": "x" * 201}, "q"), ({"q": "a", "limit": "0"}, "limit"), ({"q": "a", "limit": "abc"}, "limit")],
)
def test_bad_parameters_get_a_clear_400(signed_in: Client, params: dict[str, str], field: str) -> None:
    response = signed_in.get("/directory/search.json", params)
    assert response.status_code == 400
    assert field in json.loads(response.content)
    page = signed_in.get("/directory/", params)
    assert page.status_code == 400


def test_directory_needs_a_signed_in_user(db: None, client: Client) -> None:
    for url in ("/directory/", "/directory/results?q=a", "/directory/search.json?q=a"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_prefix_search_is_an_index_range_scan_on_a_byte_ordered_column(directory: None) -> None:
    """Not a scan of the table: the query plan walks the (kind, token, entry) index, and the
    token column compares bytes (PostgreSQL "C" collation, SQLite BINARY) so that the
    range is exactly the prefix whatever the database's own collation."""
    query = DirectoryToken.objects.filter(kind=DirectoryToken.Kind.NAME, token__prefix="mart").values("entry_id")
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny test table would be read whole
            cursor.execute("EXPLAIN " + sql, params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            # An index-only or a bitmap index scan, depending on what the statistics say.
            assert "Index Scan on directory_token_prefix" in plan or "Scan using directory_token_prefix" in plan, plan
            assert "Seq Scan" not in plan, plan
            cursor.execute(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'pli_directory_token' AND column_name = 'token'"
            )
            assert cursor.fetchone()[0] == "C"
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "USING COVERING INDEX directory_token_prefix" in plan, plan
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'pli_directory_token'")
            assert "COLLATE" not in cursor.fetchone()[0].upper()  # BINARY, SQLite's byte order


def test_a_colleague_on_pli_is_written_to_from_the_directory(
    directory: None, signed_in: Client, org: Organisation
) -> None:
    """A result on Pli leads to a new letter already addressed; one of the national
    directory, who has no mailbox, to none."""
    colleague = make_user(org, email="collegue@example.org", first_name="Paul", last_name="Lyonnet")
    address = Mailbox.objects.get(owner=colleague).address
    body = signed_in.get("/directory/", {"q": "lyon"}).content.decode()
    write = re.findall(r'<a class="button secondary dir-write" href="([^"]+)" aria-label="([^"]+)">Écrire</a>', body)
    assert write == [(f"/messages/compose/?to={quote(address)}", "Écrire à Paul Lyonnet")]
    compose = signed_in.get(html.unescape(write[0][0])).content.decode()
    assert f'value="{address}"' in compose
