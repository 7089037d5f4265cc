"""Finding a share by its patient (a blind index of keyed tokens, as for messages) and by
its status, on the practitioner's list and through the API; the search's words stay out of
URLs and of the database in plaintext."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.db import connection
from django.test import Client
from django.utils import timezone

from messaging.factories import valid_ins
from pli.api.services import create_token
from pli.audit.models import AuditEvent
from pli.messaging import search
from pli.sharing import services
from pli.sharing.models import PatientShare, Status
from pli.testing.accounts import make_user
from sharing.helpers import make_share

INS = valid_ins()


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api(user: Any) -> Client:
    _token, raw = create_token(user, "test", None)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def practice(user: Any) -> dict[str, PatientShare]:
    shares = {
        "lefevre": make_share(user, family_name="Lefèvre", given_name="Anne-Sophie", ins=INS)[0],
        "ndiaye": make_share(user, family_name="N\u2019Diaye", given_name="Moussa")[0],
        "durand": make_share(user, family_name="Durand", given_name="Élodie")[0],
    }
    PatientShare.objects.filter(pk=shares["durand"].pk).update(status=Status.LOCKED)
    # Past its expiry, not yet recorded as expired by the periodic job.
    PatientShare.objects.filter(pk=shares["ndiaye"].pk).update(expires_at=timezone.now() - datetime.timedelta(hours=1))
    return shares


def found(user: Any, text: str = "", status: str = "") -> set[str]:
    return {
        str(pk) for pk in services.filter_shares(services.shares_for(user), text, status).values_list("pk", flat=True)
    }


def test_a_share_is_found_by_its_patient_and_its_status(db: None) -> None:
    user = make_user()
    s = {name: str(share.pk) for name, share in practice(user).items()}
    make_share(make_user(), family_name="Lefèvre")  # another practitioner's patient
    assert found(user, "lefevre") == {s["lefevre"]}
    assert found(user, "LEF") == {s["lefevre"]} and found(user, "lef anne") == {s["lefevre"]}
    assert found(user, "annesophie") == {s["lefevre"]} and found(user, "ndiaye") == {s["ndiaye"]}
    assert found(user, INS) == {s["lefevre"]} and found(user, INS[:13]) == {s["lefevre"]}
    assert found(user, "lef durand") == set() and found(user, "le") == set() and found(user, "-") == set()
    assert found(user, status="locked") == {s["durand"]}
    assert found(user, status="expired") == {s["ndiaye"]}
    assert found(user, status="sent") == {s["lefevre"]}
    assert found(user, "ndiaye", "sent") == set()
    # Keyed tokens under the shares' own key: no word, and not the messages' tokens.
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_tokens FROM pli_patient_share")
        stored = {token for (row,) in cursor.fetchall() for token in row.split()}
    assert search.token(search.PATIENT_NAME, "lefevre", search.SHARES_PURPOSE) in stored
    assert search.token(search.PATIENT_NAME, "lefevre") not in stored
    assert all(len(t) == 16 and "lef" not in t for t in stored)


def test_the_list_is_searched_by_a_posted_form_and_a_sealed_link(db: None) -> None:
    user = make_user()
    practice(user)
    client = browser(user)
    posted = client.post("/shares/", {"q": "Lefèvre", "status": ""})
    assert posted.status_code == 303
    link = posted["Location"]
    # The sealed value is random base64: three given letters may turn up in it by chance
    # (about one link in two hundred), the whole name practically never.
    assert parse_qs(urlsplit(link).query).keys() == {"s"}
    assert not any(word in link.lower() for word in ("lefevre", "lef%c3%a8vre", "lefèvre"))
    page = client.get(link).content.decode()
    assert "LEFÈVRE" in page and "DURAND" not in page and "DIAYE" not in page
    assert AuditEvent.objects.filter(action="share.list", details__search=True, details__count=1).exists()
    # The link is the user's own.
    other = browser(make_user())
    assert other.get(link).status_code == 303
    # A status alone is a plain link.
    assert client.post("/shares/", {"q": "", "status": "locked"})["Location"] == "/shares/?status=locked"
    locked = client.get("/shares/?status=locked").content.decode()
    assert "DURAND" in locked and "LEFÈVRE" not in locked
    none = client.get("/shares/?status=revoked", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Aucun envoi ne correspond" in none
    # Bad input: said next to the field, 400, nothing listed.
    refused = client.post("/shares/", {"q": "a", "status": ""}, HTTP_ACCEPT_LANGUAGE="fr")
    assert refused.status_code == 400 and "au moins un mot" in refused.content.decode()
    assert client.get("/shares/?status=archived").status_code == 400


def test_the_pager_keeps_the_search(db: None, settings: Any, monkeypatch: Any) -> None:
    from pli.sharing import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    user = make_user()
    for _ in range(3):
        make_share(user, family_name="Lefèvre")
    make_share(user, family_name="Durand")
    client = browser(user)
    link = client.post("/shares/", {"q": "lefevre"})["Location"]
    token = parse_qs(urlsplit(link).query)["s"][0]
    first = client.get(link).content.decode()
    assert f"?s={token}&amp;page=2" in first
    second = client.get(f"{link}&page=2").content.decode()
    assert second.count("LEFÈVRE") == 1 and "DURAND" not in second


def test_the_api_lists_by_patient_and_status_page_by_page(db: None) -> None:
    user = make_user()
    s = {name: str(share.pk) for name, share in practice(user).items()}
    client = api(user)
    assert [x["id"] for x in client.get("/api/v1/shares", {"q": "lef"}).json()] == [s["lefevre"]]
    assert [x["id"] for x in client.get("/api/v1/shares", {"status": "expired"}).json()] == [s["ndiaye"]]
    assert AuditEvent.objects.filter(action="share.list", details__search=True).count() == 1
    first = client.get("/api/v1/shares", {"limit": 2})
    assert [x["id"] for x in first.json()] == [s["durand"], s["ndiaye"]]
    next_link = first["Link"]
    assert next_link.endswith('>; rel="next"')
    rest = client.get(next_link[1 : next_link.index(">")])
    assert [x["id"] for x in rest.json()] == [s["lefevre"]] and "Link" not in rest
    bad = client.get("/api/v1/shares", {"status": "archived"})
    assert bad.status_code == 400 and "status" in bad.json()
    assert client.get("/api/v1/shares", {"q": "a"}).status_code == 400
    assert client.get("/api/v1/shares", {"limit": 0}).status_code == 400
    assert client.get("/api/v1/shares", {"created_before": "hier"}).status_code == 400
    assert client.get("/api/v1/shares", {"created_before": ""}).status_code == 400
    # One answer names every refused parameter, in French.
    several = client.get("/api/v1/shares", {"status": "archived", "limit": 0, "q": "a"}, HTTP_ACCEPT_LANGUAGE="fr")
    assert several.status_code == 400 and set(several.json()) == {"status", "limit", "q"}
    assert "supérieure ou égale" in several.json()["limit"][0]


def test_shares_made_before_the_index_are_indexed_by_the_migration(db: None, transactional_db: None) -> None:
    from django.db.migrations.executor import MigrationExecutor

    user = make_user()
    share, _token = make_share(user, family_name="Lefèvre", ins=INS)
    MigrationExecutor(connection).migrate([("sharing", "0003_share_earlier_link")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert PatientShare.objects.get(pk=share.pk).search_tokens.strip()
    assert found(user, "lef") == {str(share.pk)} and found(user, INS) == {str(share.pk)}


def test_the_reindex_command_indexes_shares_again(db: None, caplog: Any) -> None:
    import io

    import pytest
    from django.core.management import CommandError, call_command

    from pli.core.db import db_value

    user = make_user()
    kept, _token = make_share(user, family_name="Lefèvre")
    lost, _token = make_share(user, family_name="Durand")
    # As indexed by an older version (nothing), and one whose name no longer decrypts.
    PatientShare.objects.filter(pk=kept.pk).update(search_tokens="")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pli_patient_share SET patient_family_name = %s WHERE id = %s",
            [b"\x01" + bytes(60), db_value(PatientShare, "id", lost.pk)],
        )
    before = PatientShare.objects.get(pk=lost.pk).search_tokens
    assert found(user, "lef") == set()
    out = io.StringIO()
    with pytest.raises(CommandError, match="0 messages and 1 patient shares could not be decrypted"):
        call_command("messaging", "reindex", stdout=out)
    assert "reindexed 0 messages and 1 patient shares" in out.getvalue()
    assert found(user, "lef") == {str(kept.pk)}
    assert PatientShare.objects.get(pk=lost.pk).search_tokens == before
    assert any(str(lost.pk) in r.getMessage() for r in caplog.records)
    assert AuditEvent.objects.get(action="share.reindex").details == {"shares": 1, "unreadable": 1}


def test_the_api_list_refuses_a_time_out_of_range_with_a_clear_answer(db: None) -> None:
    # Without an offset, a time is taken in the server's zone (Paris, +00:09:21 in year 1):
    # once in UTC it falls before year 1, which neither database can hold.
    client = api(make_user())
    for value in ("0001-01-01T00:00:00", "0001-01-01", "0001-01-01T00:05:00+00:10", "9999-12-31T23:59:59Z"):
        refused = client.get("/api/v1/shares", {"created_before": value}, HTTP_ACCEPT_LANGUAGE="fr")
        assert refused.status_code == 400, value
        assert "hors de l" in refused.json()["created_before"][0], value
    assert client.get("/api/v1/shares", {"created_before": "0001-01-01T00:10:00"}).status_code == 200


def test_the_web_list_shows_the_status_it_filtered_on(db: None, monkeypatch: Any) -> None:
    """A locked share expiring while the page was made was listed under « Verrouillé »
    (filtered at one instant) and shown expired (its status read at a later one)."""
    import types

    from pli.sharing import views

    user = make_user()
    share, _token = make_share(user, family_name="Durand")
    PatientShare.objects.filter(pk=share.pk).update(status=Status.LOCKED)
    expires = PatientShare.objects.get(pk=share.pk).expires_at
    instants = iter([expires - datetime.timedelta(microseconds=1), expires])
    # The view's clock only: the first instant filters, any later one reads the status.
    monkeypatch.setattr(views, "timezone", types.SimpleNamespace(now=lambda: next(instants, expires)))
    page = browser(user).get("/shares/?status=locked")
    assert [status for _share, status, _unreached, _replied in page.context["rows"]] == [Status.LOCKED]


def test_one_share_that_cannot_be_decrypted_leaves_the_list_and_its_search_working(db: None, caplog: Any) -> None:
    """As in a mailbox: a share whose patient cannot be decrypted (a wrong master key, a
    damaged row) is listed as unreadable, with its id logged, instead of a 500 for every
    share of the practitioner."""
    from pli.core.db import db_value

    user = make_user()
    make_share(user, family_name="Lefèvre")
    lost, _token = make_share(user, family_name="Legrand")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pli_patient_share SET patient_family_name = %s WHERE id = %s",
            [b"\x01" + bytes(60), db_value(PatientShare, "id", lost.pk)],
        )
    client = browser(user)
    page = client.get("/shares/")
    assert page.status_code == 200
    assert "LEFÈVRE" in page.content.decode()
    assert "(illisible\u00a0: prévenez votre administrateur)" in page.content.decode()
    results = client.post("/shares/", {"status": "sent"}, follow=True)
    assert results.status_code == 200
    assert "LEFÈVRE" in results.content.decode()
    assert f"share {lost.pk}: patient unreadable in a listing" in caplog.text


def test_a_name_with_a_ligature_is_found_as_people_type_it(db: None) -> None:
    """Œ and Æ are written OE and AE on most keyboards, in the INS's traits (capitals without
    diacritics) and in practice software: « oeuvrard » finds Œuvrard, « lae » Lætitia, and
    « cœur » Coeur, in shares as in messages."""
    user = make_user()
    oeuvrard = str(make_share(user, family_name="Œuvrard", given_name="Lætitia")[0].pk)
    coeur = str(make_share(user, family_name="Coeur", given_name="Jean")[0].pk)
    assert found(user, "oeuvrard") == {oeuvrard}
    assert found(user, "OEU") == {oeuvrard}
    assert found(user, "laetitia") == {oeuvrard}
    assert found(user, "cœur") == {coeur}
    # Letters NFKD keeps whole, folded as the directory folds them.
    dang = str(make_share(user, family_name="Đặng", given_name="Łukasz")[0].pk)
    soren = str(make_share(user, family_name="Sørensen", given_name="Jean")[0].pk)
    assert found(user, "dang") == {dang}
    assert found(user, "lukasz") == {dang}
    assert found(user, "sor") == {soren}
    patient = {"family_name": "Œuvrard", "given_names": "Lætitia"}
    assert set(search.query_tokens("oeuvrard laetitia")[0]) & set(search.message_tokens("", patient))
