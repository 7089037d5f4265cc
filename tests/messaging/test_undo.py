"""« Annuler » after archiving or binning letters: they go back where they were, once, for
a few minutes, only those still where they were filed and still the user's to move."""

from __future__ import annotations

import re
import time
from typing import Any

from django.test import Client

from messaging.factories import personal_mailbox, practitioner, shared_mailbox, web_client
from messaging.test_read_state import flashes, select, send
from pli.accounts.models import MailboxMember
from pli.audit.models import AuditEvent
from pli.messaging.models import Delivery, Folder

UNDO_FORM = 'action="/messages/undo/"'


def folder_of(message_id: str, box: Any) -> str:
    return str(Delivery.objects.get(message_id=message_id, mailbox=box).folder)


def undo(client: Client, back: str) -> Any:
    return client.post("/messages/undo/", {"next": back})


def test_archived_letters_go_back_to_the_inbox_once(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first, second, third = (send(alice, a_box, [b_box], f"Bilan {n}") for n in range(3))
    b = web_client(bob)
    inbox = f"/messages/{b_box.pk}/inbox/"
    archived = select(b, b_box, "inbox", "archive", [first, second])
    page = b.get(archived["Location"], HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "2 messages archivés." in page and UNDO_FORM in page and ">Annuler</button>" in page
    assert folder_of(first, b_box) == folder_of(second, b_box) == Folder.ARCHIVE
    moves_before = AuditEvent.objects.filter(action="message.move").count()

    back = undo(b, inbox)
    assert back["Location"] == inbox
    assert flashes(back) == ["2 messages remis à leur place."]
    assert [folder_of(m, b_box) for m in (first, second, third)] == [Folder.INBOX] * 3
    # Each put back as a move of its own, recorded.
    events = AuditEvent.objects.filter(action="message.move").order_by("pk")[moves_before:]
    assert sorted(e.target_id for e in events) == sorted([first, second])
    assert {e.details["folder"] for e in events} == {Folder.INBOX}
    # Once only: the page shown again offers nothing, and a second request does nothing.
    assert UNDO_FORM not in b.get(inbox).content.decode()
    assert flashes(undo(b, inbox)) == ["Il n\u2019y a plus rien à annuler."]
    assert AuditEvent.objects.filter(action="message.move").count() == moves_before + 2


def test_each_letter_goes_back_to_its_own_folder(db: None) -> None:
    """Binned together from a search's results, one from the archive and one from the inbox:
    each returns where it was, not both to the inbox."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    kept, fresh = send(alice, a_box, [b_box], "Genou droit"), send(alice, a_box, [b_box], "Genou gauche")
    b = web_client(bob)
    flashes(select(b, b_box, "inbox", "archive", [kept]))
    assert flashes(select(b, b_box, "inbox", "trash", [kept, fresh])) == ["2 messages mis à la corbeille."]
    assert flashes(undo(b, f"/messages/{b_box.pk}/inbox/")) == ["2 messages remis à leur place."]
    assert folder_of(kept, b_box) == Folder.ARCHIVE
    assert folder_of(fresh, b_box) == Folder.INBOX


def test_a_letter_binned_from_its_page_goes_back(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(alice, a_box, [b_box])
    b = web_client(bob)
    binned = b.post(f"/messages/m/{message_id}/move/", {"folder": "trash", "mailbox": str(b_box.pk)})
    page = b.get(binned["Location"], HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Corbeille." in page and UNDO_FORM in page
    assert Delivery.objects.get(message_id=message_id, mailbox=b_box).trashed_at is not None
    assert flashes(undo(b, binned["Location"])) == ["1 message remis à sa place."]
    copy = Delivery.objects.get(message_id=message_id, mailbox=b_box)
    assert copy.folder == Folder.INBOX and copy.trashed_at is None
    # Putting a letter back, or marking it read or unread, offers nothing to undo.
    archived = b.post(f"/messages/m/{message_id}/move/", {"folder": "archive", "mailbox": str(b_box.pk)})
    assert UNDO_FORM in b.get(archived["Location"]).content.decode()
    restored = b.post(f"/messages/m/{message_id}/move/", {"folder": "inbox", "mailbox": str(b_box.pk)})
    assert UNDO_FORM not in b.get(restored["Location"]).content.decode()
    read = select(b, b_box, "inbox", "unread", [message_id])
    assert UNDO_FORM not in b.get(read["Location"]).content.decode()


def test_letters_moved_since_are_left_where_they_are(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    one, two = send(alice, a_box, [b_box], "Un"), send(alice, a_box, [b_box], "Deux")
    b = web_client(bob)
    flashes(select(b, b_box, "inbox", "archive", [one, two]))
    flashes(select(b, b_box, "archive", "trash", [one]))  # a later move: the undo is now this one's
    flashes(select(b, b_box, "trash", "restore", [one]))  # put back by hand since
    assert flashes(undo(b, f"/messages/{b_box.pk}/inbox/")) == [
        "Rien n\u2019a été remis en place\u00a0: ces messages ont été déplacés ou supprimés depuis."
    ]
    assert folder_of(one, b_box) == Folder.INBOX and folder_of(two, b_box) == Folder.ARCHIVE


def undo_id(page: str) -> str:
    match = re.search(r'name="undo" value="([^"]+)"', page)
    assert match, "no « Annuler » on the page"
    return match.group(1)


def test_each_annuler_puts_back_its_own_letters(db: None) -> None:
    """Two tabs: letters archived in one, another binned in the other since. The first
    tab's « Annuler » put back the binned letter (the latest filing), not the archived ones
    it was shown beside. Each filing is now undone by its own button, once."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first, second, third = (send(alice, a_box, [b_box], f"Bilan {n}") for n in range(3))
    b = web_client(bob)
    archived = b.get(select(b, b_box, "inbox", "archive", [first, second])["Location"]).content.decode()
    binned = b.get(select(b, b_box, "inbox", "trash", [third])["Location"]).content.decode()
    archive_undo, trash_undo = undo_id(archived), undo_id(binned)
    assert archive_undo != trash_undo

    inbox = f"/messages/{b_box.pk}/inbox/"
    response = b.post("/messages/undo/", {"next": inbox, "undo": archive_undo})
    assert flashes(response) == ["2 messages remis à leur place."]
    assert [folder_of(m, b_box) for m in (first, second, third)] == [Folder.INBOX, Folder.INBOX, Folder.TRASH]
    again = b.post("/messages/undo/", {"next": inbox, "undo": archive_undo})
    assert flashes(again) == ["Il n\u2019y a plus rien à annuler."]
    # The other filing can still be undone, by its own button.
    assert flashes(b.post("/messages/undo/", {"next": inbox, "undo": trash_undo})) == ["1 message remis à sa place."]
    assert folder_of(third, b_box) == Folder.INBOX
    assert flashes(b.post("/messages/undo/", {"next": inbox, "undo": "made-up"})) == [
        "Il n\u2019y a plus rien à annuler."
    ]


def test_undo_lasts_ten_minutes(db: None, monkeypatch: Any) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    message_id = send(alice, a_box, [b_box])
    b = web_client(bob)
    flashes(select(b, b_box, "inbox", "archive", [message_id]))
    later = time.time() + 10 * 60 + 1
    monkeypatch.setattr("pli.messaging.views.time.time", lambda: later)
    assert flashes(undo(b, f"/messages/{b_box.pk}/inbox/")) == ["Il n\u2019y a plus rien à annuler."]
    assert folder_of(message_id, b_box) == Folder.ARCHIVE


def test_undo_moves_nothing_in_a_mailbox_the_user_left(db: None) -> None:
    """A member taken off a shared mailbox right after binning its letter cannot move it
    any more, undo or not."""
    alice, carol = practitioner(), practitioner()
    team = shared_mailbox(carol.memberships.get().organisation, [carol])
    message_id = send(alice, personal_mailbox(alice), [team])
    c = web_client(carol)
    assert flashes(select(c, team, "inbox", "trash", [message_id])) == ["1 message mis à la corbeille."]
    MailboxMember.objects.filter(mailbox=team, user=carol).delete()
    undone = undo(c, "/messages/")
    assert undone.status_code == 302
    assert folder_of(message_id, team) == Folder.TRASH


def test_undo_is_a_post_from_a_signed_in_user(db: None) -> None:
    bob = practitioner()
    assert web_client(bob).get("/messages/undo/").status_code == 405
    anonymous = Client().post("/messages/undo/")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    # An address elsewhere is not followed.
    assert web_client(bob).post("/messages/undo/", {"next": "https://evil.example/"})["Location"] == "/messages/"
