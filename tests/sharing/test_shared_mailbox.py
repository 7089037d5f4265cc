"""A share sent from a shared mailbox (a secretariat's): the patient's replies arrive there,
and every member of that mailbox follows the share and acts on it, whoever created it."""

from __future__ import annotations

import re
from urllib.parse import quote

from django.core.files.uploadedfile import SimpleUploadedFile

from messaging.factories import api_client, personal_mailbox, practitioner, shared_mailbox, web_client
from pli.accounts import services as accounts
from pli.accounts.models import Mailbox, Membership, Organisation, User
from pli.audit.models import AuditEvent
from pli.messaging.models import Delivery
from pli.sharing import services
from pli.sharing.models import PatientShare, ShareReply, Status
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import Patient, make_share, pdf_bytes
from sharing.test_api import fields
from sharing.test_sent_from_message import send_letter
from sharing.test_web import form


def _team() -> tuple[Organisation, User, User, User, Mailbox]:
    """An organisation, its secretary and a doctor (both in its shared mailbox) and a
    colleague who is not, and that mailbox."""
    secretary = practitioner()
    organisation = secretary.memberships.get().organisation
    doctor, colleague = practitioner(organisation), practitioner(organisation)
    return organisation, secretary, doctor, colleague, shared_mailbox(organisation, [secretary, doctor])


def _reply(token: str, text: str = "Merci") -> None:
    patient = Patient(token)
    patient.sign_in()
    files = [SimpleUploadedFile("photo.pdf", pdf_bytes("photo"), "application/pdf")]
    response = patient.client.post(patient.url("/reply"), {"text": text, "files": files})
    assert response.status_code == 303, response.status_code


def test_an_api_share_sent_from_a_shared_mailbox_belongs_to_its_team(db: None) -> None:
    organisation, secretary, doctor, colleague, team = _team()
    response = api_client(secretary).post("/api/v1/shares", fields(sender=team.address.upper(), allow_reply="true"))
    assert response.status_code == 201, response.content
    share = PatientShare.objects.get(pk=response.json()["id"])
    assert share.reply_mailbox == team and share.organisation == organisation and share.allow_reply
    created = AuditEvent.objects.get(action="share.created")
    assert created.details["shared_mailbox"] == str(team.pk)

    # The team follows it (the doctor did not create it); a colleague outside the team does not.
    followed = api_client(doctor).get(f"/api/v1/shares/{share.pk}")
    assert followed.status_code == 200 and followed.json()["sender"] == team.address
    assert api_client(colleague).get(f"/api/v1/shares/{share.pk}").status_code == 404
    assert share.pk in {s.pk for s in services.shares_for(doctor)}
    assert share.pk not in {s.pk for s in services.shares_for(colleague)}
    assert api_client(doctor).post(f"/api/v1/shares/{share.pk}/revoke").status_code == 200
    share.refresh_from_db()
    assert share.status == Status.REVOKED


def test_the_patients_reply_arrives_in_the_shared_mailbox(db: None) -> None:
    _organisation, secretary, doctor, _colleague, team = _team()
    share, token = make_share(secretary, sender=team.address, allow_reply=True)
    _reply(token)
    answer = ShareReply.objects.get(share=share)
    assert Delivery.objects.get(message_id=answer.message_id).mailbox == team
    # The doctor reads it in the team's mailbox, and opens the share it answers.
    page = web_client(doctor).get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert f'href="/messages/m/{answer.message_id}/"' in page
    assert "Envoyé depuis" in page and team.name in page
    assert not Delivery.objects.filter(message_id=answer.message_id, mailbox=personal_mailbox(secretary)).exists()


def test_the_team_keeps_the_share_and_its_replies_when_its_creator_leaves(db: None) -> None:
    organisation, secretary, doctor, _colleague, team = _team()
    admin = make_user(organisation, role="admin")
    share, token = make_share(secretary, sender=team.address, allow_reply=True)
    elsewhere = make_organisation()
    accounts.add_member(elsewhere, secretary, "practitioner", actor=make_user(elsewhere, role="admin"))
    accounts.remove_member(Membership.objects.get(user=secretary, organisation=organisation), actor=admin)

    assert services.replies_open(share)
    assert api_client(doctor).get(f"/api/v1/shares/{share.pk}").status_code == 200
    assert api_client(secretary).get(f"/api/v1/shares/{share.pk}").status_code == 404
    _reply(token)
    assert Delivery.objects.get(message_id=ShareReply.objects.get().message_id).mailbox == team


def test_a_member_taken_off_the_team_loses_its_shares_even_those_she_created(db: None) -> None:
    """The secretary, taken off the shared mailbox but still in the practice, kept the
    shares she had sent from it: she could correct the patient's contacts to her own address
    and open the documents with the new link."""
    organisation, secretary, doctor, _colleague, team = _team()
    admin = make_user(organisation, role="admin")
    share, _token = make_share(secretary, sender=team.address, allow_reply=True)
    own, _own_token = make_share(secretary)  # from her own mailbox: still hers
    accounts.update_shared_mailbox(team, name=team.name, members=[doctor], actor=admin)

    assert api_client(secretary).get(f"/api/v1/shares/{share.pk}").status_code == 404
    assert web_client(secretary).get(f"/shares/{share.pk}").status_code == 404
    resent = api_client(secretary).post(f"/api/v1/shares/{share.pk}/resend", {"patient_email": "moi@example.net"})
    assert resent.status_code == 404
    assert share.pk not in {s.pk for s in services.shares_for(secretary)}
    assert own.pk in {s.pk for s in services.shares_for(secretary)}
    # The team still has it.
    assert api_client(doctor).get(f"/api/v1/shares/{share.pk}").status_code == 200
    # Back in the team, back in charge.
    accounts.update_shared_mailbox(team, name=team.name, members=[doctor, secretary], actor=admin)
    assert api_client(secretary).get(f"/api/v1/shares/{share.pk}").status_code == 200


def test_a_closed_shared_mailbox_takes_no_more_replies(db: None) -> None:
    _organisation, secretary, _doctor, _colleague, team = _team()
    share, _token = make_share(secretary, sender=team.address, allow_reply=True)
    Mailbox.objects.filter(pk=team.pk).update(is_active=False)
    assert not services.replies_open(share)
    page = web_client(secretary).get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert f"plus possibles\u00a0: la boîte {team.name} est fermée" in page


def test_only_a_mailbox_the_caller_works_in_can_send(db: None) -> None:
    _organisation, _secretary, _doctor, colleague, team = _team()
    stranger = practitioner()
    for user, address in ((colleague, team.address), (stranger, team.address), (colleague, "nobody@example.org")):
        response = api_client(user).post("/api/v1/shares", fields(sender=address), HTTP_ACCEPT_LANGUAGE="fr")
        assert response.status_code == 400, response.content
        assert response.json() == {
            "sender": ["Vous ne pouvez envoyer que depuis une boîte aux lettres dont vous êtes membre."]
        }
    assert not PatientShare.objects.exists()
    # Named with the other mistakes, at once.
    wrong_date = fields(sender=team.address, patient_birth_date="1984-02-30")
    response = api_client(colleague).post("/api/v1/shares", wrong_date)
    assert set(response.json()) == {"sender", "patient_birth_date"}


def test_by_default_a_share_is_sent_from_the_practitioners_own_mailbox(db: None) -> None:
    _organisation, secretary, _doctor, _colleague, _team_box = _team()
    share, _token = make_share(secretary, allow_reply=True)
    assert share.reply_mailbox == personal_mailbox(secretary)
    client = api_client(secretary)
    created = client.post("/api/v1/shares", fields()).json()["id"]
    assert PatientShare.objects.get(pk=created).reply_mailbox == personal_mailbox(secretary)
    assert client.get(f"/api/v1/shares/{created}").json()["sender"] == personal_mailbox(secretary).address


def _sender_select(page: str) -> str:
    start = page.index('<select name="sender"')
    return page[start : page.index("</select>", start)]


def test_the_page_offers_the_mailboxes_and_starts_from_the_one_the_letter_came_to(db: None) -> None:
    _organisation, secretary, _doctor, colleague, team = _team()
    client = web_client(secretary)
    choice = _sender_select(client.get("/shares/new", HTTP_ACCEPT_LANGUAGE="fr").content.decode())
    assert team.address in choice and personal_mailbox(secretary).address in choice
    assert f'value="{personal_mailbox(secretary).address}" selected' in choice
    # A colleague with one mailbox is not asked.
    assert '<select name="sender"' not in web_client(colleague).get("/shares/new").content.decode()

    message_id = send_letter(practitioner(), [team])
    page = client.get(f"/shares/new?message={message_id}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert f'value="{team.address}" selected' in _sender_select(page)
    assert "Envoyé depuis" in page

    response = client.post("/shares/new", form(sender=team.address, allow_reply="on"))
    assert response.status_code == 303, response.content.decode()[:2000]
    assert PatientShare.objects.get().reply_mailbox == team


def test_the_page_refuses_a_mailbox_the_practitioner_does_not_work_in(db: None) -> None:
    _organisation, _secretary, _doctor, colleague, team = _team()
    response = web_client(colleague).post("/shares/new", form(sender=team.address), HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 400
    page = response.content.decode()
    field = page[page.index('id="field-sender"') :]
    assert "Vous ne pouvez envoyer que depuis une boîte aux lettres dont vous êtes membre." in field[:1500]
    assert '<select name="sender"' in field[:1500]
    assert not PatientShare.objects.exists()


def test_a_reply_to_the_patient_starts_from_the_mailbox_their_reply_came_to(db: None) -> None:
    _organisation, secretary, doctor, _colleague, team = _team()
    share, _token = make_share(secretary, sender=team.address, allow_reply=True)
    page = web_client(doctor).get(f"/shares/new?patient_of={share.pk}", HTTP_ACCEPT_LANGUAGE="fr")
    assert page.status_code == 200
    assert f'value="{team.address}" selected' in _sender_select(page.content.decode())


def _listed(page: str) -> set[str]:
    """The shares a list page links to, by id."""
    return set(re.findall(r'href="/shares/([0-9a-f-]{36})"', page))


def test_the_list_shows_each_mailboxs_shares_apart(db: None) -> None:
    _organisation, secretary, doctor, colleague, team = _team()
    own, _token = make_share(secretary)
    teams, _token = make_share(doctor, sender=team.address)
    client = web_client(secretary)

    page = client.get("/shares/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert _listed(page) == {str(own.pk), str(teams.pk)}
    menu = _sender_select(page)
    assert "Toutes mes boîtes" in menu and team.address in menu and personal_mailbox(secretary).address in menu
    sent_from = set(re.findall(r'<td role="cell" data-label="Envoyé depuis">([^<]*)</td>', page))
    assert sent_from == {team.name, personal_mailbox(secretary).name}

    # Chosen in the form: a plain link (a mailbox is no patient's data), which the pager keeps.
    response = client.post("/shares/", {"q": "", "status": "", "sender": team.address.upper()})
    assert response.status_code == 303
    assert response["Location"] == f"/shares/?sender={quote(team.address)}"
    page = client.get(response["Location"]).content.decode()
    assert _listed(page) == {str(teams.pk)}
    assert f'value="{team.address}" selected' in _sender_select(page)
    mine = client.get("/shares/", {"sender": personal_mailbox(secretary).address, "status": "sent"}).content.decode()
    assert _listed(mine) == {str(own.pk)}

    # A mailbox one does not work in: said next to the menu, nothing listed.
    refused = client.get("/shares/", {"sender": personal_mailbox(colleague).address}, HTTP_ACCEPT_LANGUAGE="fr")
    assert refused.status_code == 400
    body = refused.content.decode()
    assert "Choisissez une des boîtes dans lesquelles vous travaillez." in body and not _listed(body)

    # With one mailbox there is nothing to choose: no menu, no column.
    alone = web_client(colleague).get("/shares/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'name="sender"' not in alone and "Envoyé depuis" not in alone


def test_the_api_lists_each_mailboxs_shares_apart(db: None) -> None:
    _organisation, secretary, doctor, colleague, team = _team()
    own, _token = make_share(secretary)
    teams, _token = make_share(doctor, sender=team.address)
    client = api_client(secretary)

    listed = client.get("/api/v1/shares").json()
    assert {(s["id"], s["sender"]) for s in listed} == {
        (str(own.pk), personal_mailbox(secretary).address),
        (str(teams.pk), team.address),
    }
    only = client.get("/api/v1/shares", {"sender": team.address.upper()})
    assert only.status_code == 200 and [s["id"] for s in only.json()] == [str(teams.pk)]
    assert [s["id"] for s in client.get("/api/v1/shares", {"sender": team.address, "status": "revoked"}).json()] == []

    for address in (personal_mailbox(colleague).address, "nobody@example.org"):
        refused = client.get("/api/v1/shares", {"sender": address}, HTTP_ACCEPT_LANGUAGE="fr")
        assert refused.status_code == 400
        assert refused.json() == {"sender": ["Choisissez une des boîtes dans lesquelles vous travaillez."]}
    repeated = client.get(f"/api/v1/shares?sender={team.address}&sender={team.address}")
    assert repeated.status_code == 400 and "sender" in repeated.json()


def test_the_team_sees_who_acted_on_a_share(db: None) -> None:
    """« lien révoqué », « déverrouillé »: on a team's share, the history did not say by whom."""
    _organisation, secretary, doctor, _colleague, team = _team()
    share, token = make_share(secretary, sender=team.address)
    Patient(token).birth_date()
    services.revoke(doctor, share.pk)
    page = web_client(secretary).get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    history = page.split('id="history-title"', 1)[1]
    revoked = history.split('data-event="revoked"', 1)[1].split("</li>", 1)[0]
    assert f"par {doctor.display_name}" in revoked
    created = history.split('data-event="created"', 1)[1].split("</li>", 1)[0]
    assert f"par {secretary.display_name}" in created
    # The patient's steps name nobody.
    confirmed = history.split('data-event="birth_date_confirmed"', 1)[1].split("</li>", 1)[0]
    assert "event-actor" not in confirmed
