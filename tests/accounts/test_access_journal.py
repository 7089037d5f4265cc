"""« Journal des accès »: an organisation's part of the audit trail, for its administrators."""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.factories import (
    OrganisationFactory,
    api_client,
    patient_fields,
    personal_mailbox,
    practitioner,
    web_client,
)
from pli.accounts.models import Membership, Organisation, User
from pli.audit import services as audit
from pli.audit.models import AuditEvent
from pli.messaging import services as messaging
from sharing.helpers import Patient, make_share

SUBJECT_MARKER = "Zorglubsubject"
PATIENT_MARKER = "Zorglubpatient"
OTHER_MARKER = "Blorpautreorga"
# The patient's birth date (sharing.helpers.BIRTH_DATE) as any page or export could write it;
# the bare year would also match the microseconds of a timestamp.
BIRTH_DATE_FORMS = ("1984-02-15", "15/02/1984", "15 février 1984", "15.02.1984", "02/15/1984", "February 15, 1984")


@pytest.fixture(autouse=True)
def _own_stores(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    settings.PLI_SMS_URL = f"file://{tmp_path / 'sms'}"
    yield


@pytest.fixture
def alpha(db: None) -> Organisation:
    return OrganisationFactory(name="Cabinet Alpha", slug="alpha")


@pytest.fixture
def boss(alpha: Organisation) -> User:
    return practitioner(alpha, role=Membership.Role.ADMIN)


def _url(organisation: Organisation, query: str = "") -> str:
    return f"/organisations/{organisation.slug}/audit/" + (f"?{query}" if query else "")


def _csv_url(organisation: Organisation, query: str = "") -> str:
    return f"/organisations/{organisation.slug}/audit/export.csv" + (f"?{query}" if query else "")


def _csv(response: Any) -> list[list[str]]:
    content = b"".join(response.streaming_content).decode("utf-8")
    assert content.startswith("\ufeff")
    return list(csv.reader(io.StringIO(content[1:]), delimiter=";"))


def _send(author: User, to: User, subject: str, family_name: str) -> str:
    response = api_client(author).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(author).address,
            "to": [personal_mailbox(to).address],
            "subject": subject,
            "body": f"Corps {subject}",
            **patient_fields(patient_family_name=family_name),
        },
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def test_only_the_organisation_s_administrators_see_it(alpha: Organisation, boss: User) -> None:
    assert web_client(boss).get(_url(alpha)).status_code == 200
    assert web_client(boss).get(_csv_url(alpha)).status_code == 200
    member = practitioner(alpha)
    assert web_client(member).get(_url(alpha)).status_code == 403
    assert web_client(member).get(_csv_url(alpha)).status_code == 403
    other_admin = practitioner(OrganisationFactory(), role=Membership.Role.ADMIN)
    assert web_client(other_admin).get(_url(alpha)).status_code == 404
    assert web_client(other_admin).get(_csv_url(alpha)).status_code == 404
    for path in (_url(alpha), _csv_url(alpha)):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert web_client(boss).post(_url(alpha)).status_code == 405


def test_the_admin_pages_link_to_it(alpha: Organisation, boss: User) -> None:
    body = web_client(boss).get(f"/organisations/{alpha.slug}/members/").content.decode()
    assert f'href="{_url(alpha)}"' in body
    assert "Journal des accès" in body


def test_lists_the_organisation_s_events_and_no_other_nor_any_content(alpha: Organisation, boss: User) -> None:
    alice = practitioner(alpha)
    beta = OrganisationFactory(name="Cabinet Beta", slug="beta")
    bob = practitioner(beta)
    carol = practitioner(beta)
    bob.first_name, carol.first_name = "Bobby", "Carolina"
    bob.save()
    carol.save()

    # Alice (Alpha) writes to Bob (Beta), who reads it: his read is on a message of Alpha's.
    sent = _send(alice, bob, SUBJECT_MARKER, PATIENT_MARKER)
    messaging.open_thread(bob, sent)
    # Between Beta's members only: never in Alpha's journal.
    private = _send(carol, bob, OTHER_MARKER, OTHER_MARKER)
    messaging.open_thread(bob, private)
    # A patient share of Alpha's, and a patient's wrong birth date on it.
    share, token = make_share(alice, family_name=PATIENT_MARKER, message=f"Message {SUBJECT_MARKER}")
    assert Patient(token).birth_date("01/01/1999").status_code in (200, 400)
    beta_share, _token = make_share(carol, family_name=OTHER_MARKER)

    response = web_client(boss).get(_url(alpha))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Journal des accès" in body
    assert alice.display_name in body
    assert "Message envoyé" in body
    assert "Message lu" in body
    assert "Bobby" in body  # who read Alpha's message
    assert "le patient" in body
    assert "Date de naissance erronée" in body
    assert f"Envoi au patient {str(share.pk)[:8]}" in body
    assert f"Message {sent[:8]}" in body
    assert "Carolina" not in body
    assert private[:8] not in body
    assert str(beta_share.pk)[:8] not in body
    for marker in (SUBJECT_MARKER, PATIENT_MARKER, OTHER_MARKER, "Élodie", *BIRTH_DATE_FORMS):
        assert marker not in body

    rows = _csv(web_client(boss).get(_csv_url(alpha)))
    flat = "\n".join(";".join(row) for row in rows)
    assert f"Message {sent}" in flat and f"Envoi au patient {share.pk}" in flat
    assert "Carolina" not in flat and private not in flat and str(beta_share.pk) not in flat
    for marker in (SUBJECT_MARKER, PATIENT_MARKER, OTHER_MARKER, "Élodie", *BIRTH_DATE_FORMS):
        assert marker not in flat


def test_a_copy_deleted_for_good_here_keeps_the_message_s_events(alpha: Organisation, boss: User) -> None:
    alice = practitioner(alpha)
    bob = practitioner(OrganisationFactory())
    bob.first_name = "Bobby"
    bob.save()
    sent = _send(alice, bob, SUBJECT_MARKER, PATIENT_MARKER)
    messaging.open_thread(bob, sent)
    messaging.move_message(alice, sent, "trash")
    assert messaging.delete_message(alice, sent) == 1
    # Received here, deleted for good here, read again by its sender elsewhere.
    received = _send(bob, alice, SUBJECT_MARKER, PATIENT_MARKER)
    messaging.move_message(alice, received, "trash")
    assert messaging.delete_message(alice, received) == 1
    messaging.open_thread(bob, received)
    Membership.objects.filter(user=alice).delete()  # and Alice has left since
    rows = web_client(boss).get(_url(alpha, "kind=read")).content.decode().split("<tbody>")[1]
    assert "Bobby" in rows and f"Message {sent[:8]}" in rows and f"Message {received[:8]}" in rows


def test_filters_by_member_kind_and_dates(alpha: Organisation, boss: User) -> None:
    alice = practitioner(alpha)
    dan = practitioner(alpha)
    audit.record("auth.login", actor=alice, target=alice)
    sent = (
        api_client(alice)
        .post(
            "/api/v1/messages",
            {
                "sender": personal_mailbox(alice).address,
                "to": [personal_mailbox(dan).address],
                "subject": "Bilan",
                "attachments": [SimpleUploadedFile("notes.bin", b"\x00\x01 notes", "application/octet-stream")],
            },
        )
        .json()
    )
    download = api_client(dan).get(f"/api/v1/messages/{sent['id']}/attachments/{sent['attachments'][0]['id']}")
    assert download.status_code == 200
    b"".join(download.streaming_content)
    audit.record("auth.logout", actor=dan, target=dan)
    client = web_client(boss)

    by_alice = client.get(_url(alpha, f"member={alice.pk}")).content.decode()
    assert "Connexion" in by_alice and dan.display_name not in by_alice.split("<tbody>")[1]

    downloads = client.get(_url(alpha, "kind=download")).content.decode().split("<tbody>")[1]
    assert "Pièce jointe téléchargée" in downloads
    assert "Connexion" not in downloads and "Déconnexion" not in downloads

    today = timezone.localdate()
    tomorrow = today + datetime.timedelta(days=1)
    assert "Aucun événement" in client.get(_url(alpha, f"since={tomorrow.isoformat()}")).content.decode()
    same_day = client.get(_url(alpha, f"since={today.isoformat()}&until={today.isoformat()}")).content.decode()
    assert "Déconnexion" in same_day
    assert "Aucun événement" in client.get(_url(alpha, "until=2000-01-01")).content.decode()

    wrong = client.get(_url(alpha, f"since={tomorrow.isoformat()}&until={today.isoformat()}"))
    assert wrong.status_code == 400
    # Not a member of this organisation: not a choice.
    assert client.get(_url(alpha, f"member={practitioner().pk}")).status_code == 400

    rows = _csv(client.get(_csv_url(alpha, f"member={dan.pk}&kind=download")))
    assert [row[2] for row in rows[1:]] == ["Pièce jointe téléchargée"]


def test_pages_by_cursor_newest_first(alpha: Organisation, boss: User) -> None:
    alice = practitioner(alpha)
    for number in range(120):
        audit.record("auth.login", actor=alice, target=alice, details={"n": number})
    client = web_client(boss)
    seen: list[str] = []
    path = _url(alpha, f"member={alice.pk}&kind=sign_in")
    pages = 0
    while path:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)
        assert response.status_code == 200
        assert not any("OFFSET" in q["sql"].upper() for q in queries.captured_queries)
        body = response.content.decode()
        rows = body.split("<tbody>")[1].split("</tbody>")[0].count("<tr>")
        seen.append(str(rows))
        pages += 1
        marker = 'rel="next"'
        if marker in body:
            href = body.split(marker)[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
            path = _url(alpha) + href
        else:
            path = ""
    assert seen == ["50", "50", "20"] and pages == 3
    events = list(AuditEvent.objects.filter(action="auth.login").order_by("-seq").values_list("seq", flat=True))
    second = client.get(_url(alpha, f"member={alice.pk}&kind=sign_in&before={events[49]}")).content.decode()
    assert "Les plus récents" in second


def test_csv_export(alpha: Organisation, boss: User) -> None:
    alice = practitioner(alpha)
    alice.first_name = "=HYPERLINK(1)"
    alice.save()
    audit.record("auth.login", actor=alice, target=alice, request=None)
    response = web_client(boss).get(_csv_url(alpha))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="journal-alpha-')
    assert "no-store" in response.get("Cache-Control", "") or "max-age=0" in response.get("Cache-Control", "")
    rows = _csv(response)
    assert rows[0] == ["Date et heure", "Qui", "Action", "Sur", "Adresse IP", "Résultat", "Sur (nom)"]
    login = next(row for row in rows[1:] if "HYPERLINK" in row[1])
    assert login[2] == "Connexion"
    assert datetime.datetime.strptime(login[0], "%d/%m/%Y %H:%M:%S")
    # A name that looks like a formula stays text in a spreadsheet.
    assert login[1] == f"'{alice.display_name}"
    assert login[3] == f"Compte {alice.pk}"
    assert login[5] == "réussi"
    # The name too, as on the page (« Compte 4 » alone told the administrator nothing).
    assert login[6] == f"Compte {alice.display_name}"


def test_the_page_names_the_accounts_and_mailboxes_it_is_about(alpha: Organisation, boss: User) -> None:
    """« Compte 12 » or « Boîte 3f2a9c1e » told the administrator nothing; the export keeps
    the exact ids."""
    alice = practitioner(alpha)
    box = personal_mailbox(alice)
    audit.record("auth.login", actor=alice, target=alice, request=None)
    audit.record("mailbox.list", actor=alice, target=box, request=None)
    audit.record("organisation.settings_changed", actor=boss, target=alpha, request=None)
    page = web_client(boss).get(_url(alpha)).content.decode()
    assert f'<span title="Compte {alice.pk}">Compte {alice.display_name}</span>' in page
    assert f'<span title="Boîte {box.pk}">Boîte {box.name}</span>' in page
    assert f'<span title="Organisation {alpha.pk}">Organisation {alpha.name}</span>' in page
    flat = "\n".join(";".join(row) for row in _csv(web_client(boss).get(_csv_url(alpha))))
    assert f"Compte {alice.pk}" in flat and f"Boîte {box.pk}" in flat and f"Organisation {alpha.pk}" in flat


def test_viewing_and_exporting_are_audited(alpha: Organisation, boss: User) -> None:
    client = web_client(boss)
    client.get(_url(alpha, "kind=read"), REMOTE_ADDR="203.0.113.9")
    client.get(_csv_url(alpha))
    viewed = AuditEvent.objects.get(action="organisation.journal_viewed")
    assert viewed.actor_id == str(boss.pk) and viewed.target_id == str(alpha.pk)
    assert viewed.ip == "203.0.113.9" and viewed.details["kind"] == "read"
    assert AuditEvent.objects.filter(action="organisation.journal_exported", actor_id=str(boss.pk)).count() == 1
    body = client.get(_url(alpha)).content.decode()
    assert "Journal des accès consulté" in body and "203.0.113.9" in body


def test_in_english(alpha: Organisation, boss: User) -> None:
    client = web_client(boss)
    client.cookies["django_language"] = "en"
    client.get(_url(alpha), HTTP_ACCEPT_LANGUAGE="en")
    body = client.get(_url(alpha), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Access journal" in body and "Access journal viewed" in body and "Sign-in" in body
    rows = _csv(client.get(_csv_url(alpha), HTTP_ACCEPT_LANGUAGE="en"))
    assert rows[0] == ["Date and time", "Who", "Action", "On", "IP address", "Outcome", "On (by name)"]


def test_a_former_member_can_still_be_looked_into(alpha: Organisation, boss: User) -> None:
    """« Sélectionnez un choix valide » for a secretary removed last week: a departed
    employee is exactly whom an administrator needs to audit."""
    from pli.accounts import services as accounts

    sophie, colleague = practitioner(alpha), practitioner(alpha)
    _send(sophie, colleague, "Bilan Roux", "Roux")
    elsewhere = OrganisationFactory(name="Clinique B")
    accounts.add_member(elsewhere, sophie, "practitioner", actor=practitioner(elsewhere, role=Membership.Role.ADMIN))
    accounts.remove_member(Membership.objects.get(user=sophie, organisation=alpha), actor=boss)
    # What she does at her new place is not this organisation's.
    audit.record("auth.login", actor=sophie, target=sophie)
    client = web_client(boss)
    page = client.get(_url(alpha), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert f'<option value="{sophie.pk}">{sophie.display_name} (ancien membre)</option>' in page
    hers = client.get(_url(alpha, f"member={sophie.pk}"), HTTP_ACCEPT_LANGUAGE="fr")
    assert hers.status_code == 200
    rows = hers.content.decode().split("<tbody>")[1]
    assert "Message envoyé" in rows and "Connexion" not in rows


def test_what_a_member_does_in_another_organisation_is_not_this_one_s(alpha: Organisation, boss: User) -> None:
    """Eve works at a clinic and joined the practice: the practice's journal listed all she
    did at the clinic, before she joined and since (letters sent and read there, patient
    shares, her role changed there by the clinic's administrator), with times and addresses.
    Her doings on the practice's things, her own account's since she joined, and her refused
    accesses are the practice's to read; the rest is the clinic's."""
    from pli.accounts import journal
    from pli.accounts import services as accounts

    clinic = OrganisationFactory(name="Clinique Bleue", slug="clinique-bleue")
    eve, clinic_admin, colleague = (
        practitioner(clinic),
        practitioner(clinic, role=Membership.Role.ADMIN),
        practitioner(clinic),
    )
    old_login = audit.record("auth.login", actor=eve, target=eve)
    before = _send(eve, colleague, "Avant", "Avant")
    accounts.add_member(alpha, eve, "practitioner", actor=boss)
    at_clinic = _send(eve, colleague, "Clinique", "Clinique")
    messaging.open_thread(colleague, at_clinic)
    clinic_share, _token = make_share(eve, family_name=OTHER_MARKER)
    accounts.change_role(Membership.objects.get(user=eve, organisation=clinic), "admin", actor=clinic_admin)
    login = audit.record("auth.login", actor=eve, target=eve)
    refused = audit.record("message.read", actor=eve, target=("messaging.message", str(before)), outcome=audit.DENIED)
    here = _send(eve, boss, "Ici", "Ici")

    client = web_client(boss)
    for query in ("", f"member={eve.pk}"):
        page = client.get(_url(alpha, query), HTTP_ACCEPT_LANGUAGE="fr").content.decode().split("<tbody>")[1]
        flat = "\n".join(";".join(row) for row in _csv(client.get(_csv_url(alpha, query))))
        for shown in (page, flat):
            assert here[:8] in shown  # her letter from the practice
            assert f"Message {before[:8]}" in shown  # the access refused, since she joined
            assert at_clinic[:8] not in shown
            assert str(clinic_share.pk)[:8] not in shown
            assert "Rôle modifié" not in shown and clinic_admin.display_name not in shown
        ids = set(
            journal.events(alpha, journal.Filters(member=eve.pk if query else None)).values_list("seq", flat=True)
        )
        assert login.seq in ids and refused.seq in ids and old_login.seq not in ids
        assert not ids & set(
            AuditEvent.objects.filter(target_id__in=(before, at_clinic))
            .exclude(seq=refused.seq)
            .values_list("seq", flat=True)
        )
