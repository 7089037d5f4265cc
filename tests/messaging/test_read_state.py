"""Marking a letter unread again, and acting on several letters ticked in a folder's list:
archived, binned, put back, marked read or unread at once."""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from messaging.factories import api_client, personal_mailbox, practitioner, shared_mailbox, web_client
from pli.accounts.models import Mailbox, Membership, User
from pli.audit.models import AuditEvent
from pli.messaging import services
from pli.messaging.models import Delivery, Folder, Reading
from pli.messaging.views import SELECTION_MAX


def send(sender: User, box: Mailbox, to: list[Mailbox], subject: str = "Résultats") -> str:
    response = api_client(sender).post(
        "/api/v1/messages", {"sender": box.address, "to": [m.address for m in to], "subject": subject, "body": "Texte"}
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def copy_of(message_id: str, box: Mailbox) -> Delivery:
    return Delivery.objects.get(message_id=message_id, mailbox=box, role__in=("to", "cc"))


def receipt(sender: User, message_id: str) -> Any:
    (row,) = api_client(sender).get(f"/api/v1/messages/{message_id}").json()["receipts"]
    return row["read_at"]


def flashes(response: Any) -> list[str]:
    """What the page redirected to says (and no longer will)."""
    assert response.status_code == 302, response.status_code
    page = response.client.get(response["Location"])
    return [str(m) for m in page.context["messages"]]


def select(client: Client, box: Mailbox, folder: str, action: str, ids: list[str], **extra: Any) -> Any:
    return client.post(f"/messages/{box.pk}/{folder}/selection/", {"action": action, "message": ids, **extra})


def test_a_letter_marked_unread_waits_in_bold_and_the_senders_receipt_stands(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(alice, a_box, [b_box])
    b = web_client(bob)
    assert b.get(f"/messages/m/{message_id}/").status_code == 200
    first = copy_of(message_id, b_box).first_read_at
    assert first is not None and receipt(alice, message_id) == first.isoformat()

    page = b.get(f"/messages/m/{message_id}/").content.decode()
    assert "Marquer comme non lu" in page
    response = b.post(f"/messages/m/{message_id}/unread/", {"mailbox": str(b_box.pk)})
    assert response.status_code == 302 and response["Location"] == f"/messages/{b_box.pk}/inbox/"
    assert flashes(response) == ["Marqué comme non lu."]
    copy = copy_of(message_id, b_box)
    assert copy.read_at is None and copy.read_by is None and copy.first_read_at == first
    # Unread everywhere the reader looks: the count, the list (in bold), the API.
    assert services.unread_counts([b_box.pk]) == {b_box.pk: 1}
    listing = b.get(f"/messages/{b_box.pk}/inbox/").content.decode()
    assert "mail-row is-unread" in listing
    rows = api_client(bob).get(f"/api/v1/mailboxes/{b_box.pk}/messages").json()["results"]
    assert [r["unread"] for r in rows] == [True]
    # The sender's receipt still says when it was first read (also on her page).
    assert receipt(alice, message_id) == first.isoformat()
    sender_page = web_client(alice).get(f"/messages/m/{message_id}/").content.decode()
    assert "receipt-read" in sender_page and "receipt-unread" not in sender_page
    event = AuditEvent.objects.get(action="message.mark_unread")
    assert event.actor_id == str(bob.pk) and event.target_id == message_id and event.details["copies"] == 1

    # Opened again: read again, the receipt unchanged.
    assert b.get(f"/messages/m/{message_id}/").status_code == 200
    copy = copy_of(message_id, b_box)
    assert copy.read_at is not None and copy.read_by == bob and copy.first_read_at == first
    assert services.unread_counts([b_box.pk]) == {b_box.pk: 0}


def test_only_a_received_copy_is_marked_unread(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(alice, a_box, [b_box])
    a = web_client(alice)
    assert "Marquer comme non lu" not in a.get(f"/messages/m/{message_id}/").content.decode()
    response = a.post(f"/messages/m/{message_id}/unread/", {"mailbox": str(a_box.pk)})
    assert response.status_code == 302
    assert flashes(response) == ["Seul un message reçu peut être marqué non lu."]
    refused = api_client(alice).post(f"/api/v1/messages/{message_id}/unread")
    assert refused.status_code == 400
    assert refused.json() == {"detail": "Seul un message reçu peut être marqué non lu."}
    assert not AuditEvent.objects.filter(action="message.mark_unread").exists()


def test_the_api_marks_unread_one_mailbox_or_all(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    team = shared_mailbox(Membership.objects.get(user=bob).organisation, [bob])
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(alice, a_box, [b_box, team])
    client = api_client(bob)
    assert client.get(f"/api/v1/messages/{message_id}").status_code == 200
    assert copy_of(message_id, team).read_at is not None and copy_of(message_id, b_box).read_at is not None
    only_team = client.post(f"/api/v1/messages/{message_id}/unread", {"mailbox": str(team.pk)})
    assert only_team.status_code == 200
    assert only_team.json()["copies"] == [{"mailbox": str(team.pk), "folder": "inbox", "unread": True, "uid": 1}]
    assert copy_of(message_id, team).read_at is None and copy_of(message_id, b_box).read_at is not None
    both = client.post(f"/api/v1/messages/{message_id}/unread", {}, content_type="application/json")
    assert both.status_code == 200 and len(both.json()["copies"]) == 2
    assert services.unread_counts([team.pk, b_box.pk]) == {team.pk: 1, b_box.pk: 1}
    # A token that reads may set the read state back (reading sets it); one of another's
    # mailbox may not: the same 404 as a message that does not exist.
    stranger = api_client(practitioner())
    assert stranger.post(f"/api/v1/messages/{message_id}/unread").status_code == 404
    assert client.post(f"/api/v1/messages/{message_id}/unread", {"mailbox": str(uuid.uuid4())}).status_code == 404


def test_the_team_still_sees_who_read_a_letter_marked_unread(db: None) -> None:
    alice, claire, jeanne = practitioner(), practitioner(), None
    organisation = Membership.objects.get(user=claire).organisation
    jeanne = practitioner(organisation)
    team = shared_mailbox(organisation, [claire, jeanne])
    message_id = send(alice, personal_mailbox(alice), [team])
    assert web_client(claire).get(f"/messages/m/{message_id}/?mailbox={team.pk}").status_code == 200
    j = web_client(jeanne)
    assert j.post(f"/messages/m/{message_id}/unread/", {"mailbox": str(team.pk)}).status_code == 302
    assert copy_of(message_id, team).read_at is None
    page = j.get(f"/messages/{team.pk}/inbox/").content.decode()
    assert "mail-row is-unread" in page
    # Jeanne opens it: her reading is the team's second one; Claire's stays listed.
    thread = j.get(f"/messages/m/{message_id}/?mailbox={team.pk}").content.decode()
    assert claire.display_name in thread and jeanne.display_name in thread
    assert set(Reading.objects.values_list("user", flat=True)) == {claire.pk, jeanne.pk}


def test_marked_read_from_the_list_is_no_reading(db: None) -> None:
    """Ticked and marked read without being opened: nobody read the letter, so the sender's
    receipt and the team's "read by" wait until someone opens it."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(alice, a_box, [b_box])
    b = web_client(bob)
    response = select(b, b_box, "inbox", "read", [message_id])
    assert response.status_code == 302 and response["Location"] == f"/messages/{b_box.pk}/inbox/"
    assert flashes(response) == ["1 message marqué comme lu."]
    copy = copy_of(message_id, b_box)
    assert copy.read_at is not None and copy.read_by == bob and copy.first_read_at is None
    assert services.unread_counts([b_box.pk]) == {b_box.pk: 0}
    assert receipt(alice, message_id) is None and not Reading.objects.exists()
    assert AuditEvent.objects.filter(action="message.mark_read", actor_id=str(bob.pk)).count() == 1
    assert not AuditEvent.objects.filter(action="message.read", actor_id=str(bob.pk)).exists()
    # Opened later: that is the reading the receipt shows.
    assert b.get(f"/messages/m/{message_id}/").status_code == 200
    copy = copy_of(message_id, b_box)
    assert copy.first_read_at is not None and receipt(alice, message_id) == copy.first_read_at.isoformat()
    assert Reading.objects.filter(user=bob).count() == 1


def test_ticked_letters_are_archived_binned_and_put_back_each_one_audited(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first, second, third = (send(alice, a_box, [b_box], f"Lettre {n}") for n in range(3))
    b = web_client(bob)
    inbox = b.get(f"/messages/{b_box.pk}/inbox/").content.decode()
    assert 'form="mail-selection"' in inbox and inbox.count('name="message"') == 3
    assert "Sélectionner «\u00a0Lettre 1\u00a0»" in inbox
    response = select(b, b_box, "inbox", "archive", [first, second], next=f"/messages/{b_box.pk}/inbox/?cursor=")
    assert response["Location"] == f"/messages/{b_box.pk}/inbox/?cursor="  # the page it was sent from
    assert flashes(response) == ["2 messages archivés."]
    folders = {m: copy_of(m, b_box).folder for m in (first, second, third)}
    assert folders == {first: Folder.ARCHIVE, second: Folder.ARCHIVE, third: Folder.INBOX}
    moves = AuditEvent.objects.filter(action="message.move", actor_id=str(bob.pk))
    assert sorted(e.target_id for e in moves) == sorted([first, second])
    # The organisation too: its access journal finds the move once the letter is erased.
    filed = {"folder": "archive", "copies": 1, "organisation": b_box.organisation_id}
    assert all(e.details == filed for e in moves)
    # From the archive, one back to the inbox; then two to the trash, and back.
    assert flashes(select(b, b_box, "archive", "restore", [second])) == ["1 message remis en place."]
    assert copy_of(second, b_box).folder == Folder.INBOX
    assert flashes(select(b, b_box, "inbox", "trash", [second, third])) == ["2 messages mis à la corbeille."]
    binned = copy_of(second, b_box)
    assert binned.folder == Folder.TRASH and binned.trashed_at is not None
    trash = b.get(f"/messages/{b_box.pk}/trash/").content.decode()
    assert 'name="action" value="restore"' in trash and 'name="action" value="trash"' not in trash
    assert 'value="unread"' not in trash
    assert flashes(select(b, b_box, "trash", "restore", [second, third])) == ["2 messages remis en place."]
    assert {copy_of(m, b_box).folder for m in (second, third)} == {Folder.INBOX}
    # Marked unread together, counted together.
    assert flashes(select(b, b_box, "inbox", "read", [second, third])) == ["2 messages marqués comme lus."]
    assert flashes(select(b, b_box, "inbox", "unread", [second, third])) == ["2 messages marqués comme non lus."]
    assert services.unread_counts([b_box.pk]) == {b_box.pk: 2}


def test_the_senders_own_copies_are_filed_but_never_unread(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    mine = send(alice, a_box, [b_box])
    to_self = send(alice, a_box, [a_box, b_box])
    a = web_client(alice)
    sent = a.get(f"/messages/{a_box.pk}/sent/").content.decode()
    assert 'value="archive"' in sent and 'value="unread"' not in sent
    response = select(a, a_box, "sent", "unread", [mine, to_self])
    assert flashes(response) == [
        "1 message marqué comme non lu.",
        "1 message que vous avez envoyé est resté tel quel\u00a0: seuls les messages reçus sont lus ou non lus.",
    ]
    assert Delivery.objects.get(message_id=mine, role="sender").read_at is not None
    assert copy_of(to_self, a_box).read_at is None
    select(a, a_box, "sent", "archive", [mine])
    assert Delivery.objects.get(message_id=mine, role="sender").folder == Folder.ARCHIVE


def test_a_selection_that_cannot_be_done_changes_nothing(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(alice, a_box, [b_box])
    b = web_client(bob)
    nothing = select(b, b_box, "inbox", "archive", [])
    assert nothing.status_code == 302
    assert flashes(nothing) == ["Sélectionnez d\u2019abord au moins un message (les cases en début de ligne)."]
    unknown = select(b, b_box, "inbox", "shred", [message_id])
    assert flashes(unknown) == ["Choisissez quoi faire des messages sélectionnés."]
    no_action = b.post(f"/messages/{b_box.pk}/inbox/selection/", {"message": [message_id]})
    assert flashes(no_action) == ["Choisissez quoi faire des messages sélectionnés."]
    too_many = select(b, b_box, "inbox", "archive", [message_id] * (SELECTION_MAX + 1))
    assert flashes(too_many) == [f"Sélectionnez au plus {SELECTION_MAX} messages à la fois."]
    assert select(b, b_box, "inbox", "archive", ["not-an-id"]).status_code == 404
    assert select(b, b_box, "nowhere", "archive", [message_id]).status_code == 404
    assert b.get(f"/messages/{b_box.pk}/inbox/selection/").status_code == 405
    # Somewhere off the site: back to the folder instead.
    offsite = select(b, b_box, "inbox", "archive", [], next="https://example.org/")
    assert offsite["Location"] == f"/messages/{b_box.pk}/inbox/"
    assert copy_of(message_id, b_box).folder == Folder.INBOX
    assert not AuditEvent.objects.filter(action="message.move").exists()


def test_a_letter_gone_meanwhile_is_reported_and_the_others_filed(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    kept = send(alice, a_box, [b_box])
    theirs = send(alice, a_box, [personal_mailbox(practitioner())])  # never Bob's
    b = web_client(bob)
    response = select(b, b_box, "inbox", "archive", [kept, theirs, str(uuid.uuid4())])
    assert flashes(response) == [
        "1 message archivé.",
        "2 messages sélectionnés ne sont plus dans cette boîte (supprimés définitivement entre-temps\u00a0?).",
    ]
    assert copy_of(kept, b_box).folder == Folder.ARCHIVE
    denied = AuditEvent.objects.filter(action="message.access_denied", actor_id=str(bob.pk))
    assert {e.details["step"] for e in denied} == {"selection"} and denied.count() == 2
    assert denied.filter(target_id=theirs).exists()


def test_a_letter_marked_unread_again_is_no_new_mail(db: None) -> None:
    """The e-mail notice tells of arrivals: a letter read, then marked unread as a reminder,
    is not one."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(alice, a_box, [b_box])
    b = web_client(bob)
    assert b.get(f"/messages/m/{message_id}/").status_code == 200
    assert b.post(f"/messages/m/{message_id}/unread/", {"mailbox": str(b_box.pk)}).status_code == 302
    assert services.notify_new_mail(timezone.now() + datetime.timedelta(minutes=3)) == 0
    # A new letter is news, and the notice counts every unread one.
    send(alice, a_box, [b_box])
    assert services.notify_new_mail(timezone.now() + datetime.timedelta(minutes=3)) == 1
    assert "2 messages non lus" in mail.outbox[-1].body


def test_the_upgrade_keeps_every_receipt(transactional_db: None) -> None:
    """Migration 0010: before it a copy's reading was its receipt; each one read stays so."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    read, unread = send(alice, a_box, [b_box]), send(alice, a_box, [b_box])
    assert api_client(bob).get(f"/api/v1/messages/{read}").status_code == 200
    when = copy_of(read, b_box).read_at
    MigrationExecutor(connection).migrate([("messaging", "0009_attachment_format")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert copy_of(read, b_box).first_read_at == when is not None
    assert copy_of(unread, b_box).first_read_at is None
    assert receipt(alice, read) == when.isoformat()


def test_a_letter_marked_read_unopened_gets_its_receipt_when_read_through_the_team(db: None) -> None:
    """Read through the shared mailbox, a letter is read by the person in their own
    mailbox too: also when they had marked their own copy read without opening it."""
    alice, bob = practitioner(), practitioner()
    team = shared_mailbox(Membership.objects.get(user=bob).organisation, [bob])
    b_box = personal_mailbox(bob)
    message_id = send(alice, personal_mailbox(alice), [b_box, team])
    b = web_client(bob)
    select(b, b_box, "inbox", "read", [message_id])
    assert copy_of(message_id, b_box).first_read_at is None
    assert b.get(f"/messages/m/{message_id}/?mailbox={team.pk}").status_code == 200
    own = copy_of(message_id, b_box)
    assert own.first_read_at is not None and own.first_read_at == copy_of(message_id, team).first_read_at
    assert Reading.objects.filter(delivery=own, user=bob).exists()
    # The same through the API.
    other = send(alice, personal_mailbox(alice), [b_box, team])
    select(b, b_box, "inbox", "read", [other])
    assert api_client(bob).get(f"/api/v1/messages/{other}?mailbox={team.pk}").status_code == 200
    assert copy_of(other, b_box).first_read_at is not None


def test_software_polls_the_unread_letters_alone(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first, second, third = (send(alice, a_box, [b_box], f"Lettre {n}") for n in range(3))
    client = api_client(bob)
    assert client.get(f"/api/v1/messages/{second}").status_code == 200
    listing = f"/api/v1/mailboxes/{b_box.pk}/messages"
    unread = client.get(f"{listing}?unread=true&limit=1").json()
    assert [r["id"] for r in unread["results"]] == [third] and unread["next"]
    assert "unread=true" in unread["next"]
    older = client.get(unread["next"].removeprefix("http://testserver")).json()
    assert [r["id"] for r in older["results"]] == [first] and older["next"] is None
    assert [r["id"] for r in client.get(f"{listing}?unread=false").json()["results"]] == [second]
    assert len(client.get(listing).json()["results"]) == 3
    # Marked unread again, it is polled again.
    assert client.post(f"/api/v1/messages/{second}/unread").status_code == 200
    assert [r["id"] for r in client.get(f"{listing}?unread=true").json()["results"]] == [third, second, first]
    # The sender's own copy is read from the start.
    sent = api_client(alice).get(f"/api/v1/mailboxes/{a_box.pk}/messages?folder=sent&unread=true").json()
    assert sent["results"] == []
    refused = client.get(f"{listing}?unread=yes")
    assert refused.status_code == 400
    assert refused.json() == {
        "unread": ["Indiquez unread=true (seulement les messages non lus) ou unread=false (seulement les lus)."]
    }


def test_a_selection_and_a_colleagues_move_of_one_of_its_letters_both_succeed(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claire archived two ticked letters of the team's inbox just as Jeanne binned the second
    one from its page: on PostgreSQL the selection held the audit trail's head (its first
    letter's event) and waited for the second letter's copy, which Jeanne held while waiting
    for the head: a deadlock, one of them a 500."""
    from functools import partial

    from interleave import while_committing

    alice, claire = practitioner(), practitioner()
    organisation = Membership.objects.get(user=claire).organisation
    jeanne = practitioner(organisation)
    team = shared_mailbox(organisation, [claire, jeanne])
    first, second = (send(alice, personal_mailbox(alice), [team], f"Lettre {n}") for n in range(2))
    binning = partial(services.move_message, jeanne, second, Folder.TRASH, mailbox_id=team.pk)
    join = while_committing(monkeypatch, "message.move", binning, "message.move")
    c = web_client(claire)
    c.raise_request_exception = False
    response = select(c, team, "inbox", "archive", [first, second])
    assert join() == []
    assert response.status_code == 302
    assert copy_of(first, team).folder == Folder.ARCHIVE
    # One after the other, whichever first: both moves done and recorded.
    assert copy_of(second, team).folder in (Folder.ARCHIVE, Folder.TRASH)
    assert AuditEvent.objects.filter(action="message.move").count() == 3


def test_the_selections_buttons_are_named_as_acting_on_the_selected_letters(db: None) -> None:
    """A screen reader tabbing to the list's buttons heard « Archiver », « Mettre à la
    corbeille »… alone, as if for the whole folder: « Messages sélectionnés » was plain text
    beside them. The form is now named by it (a landmark announced on entering it)."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    send(alice, a_box, [b_box])
    inbox = web_client(bob).get(f"/messages/{b_box.pk}/inbox/").content.decode()
    form = re.search(r'<form id="mail-selection"[^>]*>', inbox)
    assert form and 'aria-labelledby="mail-selection-label"' in form.group(0)
    assert re.search(r'<span id="mail-selection-label"[^>]*>Messages sélectionnés\u00a0:</span>', inbox)


def test_the_tab_shows_how_many_letters_wait_in_the_inbox(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first, second = send(alice, a_box, [b_box], "Un"), send(alice, a_box, [b_box], "Deux")
    b = web_client(bob)
    assert "<title>(2) Boîte de réception — " in b.get(f"/messages/{b_box.pk}/inbox/").content.decode()
    select(b, b_box, "inbox", "read", [first])
    assert "<title>(1) Boîte de réception — " in b.get(f"/messages/{b_box.pk}/inbox/").content.decode()
    select(b, b_box, "inbox", "archive", [second])
    assert "<title>Boîte de réception — " in b.get(f"/messages/{b_box.pk}/inbox/").content.decode()
    # Only the inbox's title counts: the archive holds the unread letter, and says nothing.
    assert "<title>Archives — " in b.get(f"/messages/{b_box.pk}/archive/").content.decode()


def _buttons(page: str) -> set[str]:
    form = page[page.index('<form id="mail-selection"') :]
    return set(re.findall(r'name="action" value="(\w+)"', form[: form.index("</form>")]))


def test_the_search_results_are_ticked_and_filed_like_a_folders_list(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    genou = [send(alice, a_box, [b_box], f"Genou {n}") for n in range(2)]
    other = send(alice, a_box, [b_box], "Épaule")
    mine = send(bob, b_box, [a_box], "Genou, mon avis")
    b = web_client(bob)
    found = b.post(f"/messages/{b_box.pk}/search/", {"q": "genou"}, HTTP_ACCEPT_LANGUAGE="fr")
    assert found.status_code == 303
    results_url = found["Location"]
    page = b.get(results_url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert page.count('form="mail-selection"') == 3 and other not in page
    assert _buttons(page) == {"archive", "trash", "read", "unread"}
    # Each result says where it is: the search spans the folders.
    assert page.count('<span class="badge mail-row-folder">Boîte de réception</span>') == 2
    assert page.count('<span class="badge mail-row-folder">Envoyés</span>') == 1

    # Archived from the results: the same page comes back, saying where they went.
    response = select(b, b_box, "inbox", "archive", [*genou, mine], next=results_url)
    assert response["Location"] == results_url
    assert flashes(response) == ["3 messages archivés."]
    assert {copy_of(m, b_box).folder for m in genou} == {Folder.ARCHIVE}
    assert Delivery.objects.get(message_id=mine, role="sender").folder == Folder.ARCHIVE
    assert copy_of(other, b_box).folder == Folder.INBOX
    again = b.get(results_url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert again.count('<span class="badge mail-row-folder">Archives</span>') == 3

    # Binned, then found in the trash, where they can be put back or deleted for good.
    assert flashes(select(b, b_box, "inbox", "trash", genou, next=results_url)) == ["2 messages mis à la corbeille."]
    binned = b.post(f"/messages/{b_box.pk}/search/", {"q": "genou", "folder": "trash"})
    trash_page = b.get(binned["Location"]).content.decode()
    assert _buttons(trash_page) == {"restore", "delete"}
    assert f'action="/messages/{b_box.pk}/trash/selection/"' in trash_page
    assert flashes(select(b, b_box, "trash", "restore", genou, next=binned["Location"])) == [
        "2 messages remis en place."
    ]
    assert {copy_of(m, b_box).folder for m in genou} == {Folder.INBOX}
