"""« Supprimer définitivement » on the letters ticked in the trash, and « Vider la corbeille »:
asked first, then each letter deleted as its own page would delete it."""

from __future__ import annotations

import datetime
import io
import re
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.conftest import stored_blobs
from messaging.factories import api_client, personal_mailbox, practitioner, shared_mailbox, web_client
from pli.accounts.models import Mailbox, Membership, User
from pli.audit.models import AuditEvent
from pli.messaging import services
from pli.messaging.models import Attachment, DeletedCopy, Delivery, Folder, Message


def send(sender: User, box: Mailbox, to: list[Mailbox], subject: str, **extra: Any) -> str:
    data = {"sender": box.address, "to": [m.address for m in to], "subject": subject, "body": "Texte", **extra}
    response = api_client(sender).post("/api/v1/messages", data)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def attachment(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


def flashes(response: Any) -> list[str]:
    assert response.status_code == 302, response.status_code
    page = response.client.get(response["Location"])
    return [str(m) for m in page.context["messages"]]


def select(client: Client, box: Mailbox, folder: str, action: str, ids: list[str], **extra: Any) -> Any:
    return client.post(
        f"/messages/{box.pk}/{folder}/selection/",
        {"action": action, "message": ids, **extra},
        HTTP_ACCEPT_LANGUAGE="fr",
    )


def bin_letters(user: User, box: Mailbox, ids: list[str]) -> None:
    for message_id in ids:
        services.move_message(user, message_id, Folder.TRASH, mailbox_id=box.pk)


def test_ticked_letters_are_deleted_for_good_once_confirmed(db: None, django_capture_on_commit_callbacks: Any) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    shredded = send(alice, a_box, [b_box], "Bilan sanguin", attachments=[attachment("a.txt", b"secret")])
    kept = send(alice, a_box, [b_box], "Compte rendu")
    untouched = send(alice, a_box, [b_box], "Courrier")
    # Alice deleted her copy of the first one: Bob's is the last, and takes the content with it.
    services.move_message(alice, shredded, Folder.TRASH)
    services.delete_message(alice, shredded)
    bin_letters(bob, b_box, [shredded, kept, untouched])
    assert len(stored_blobs()) == 1
    b = web_client(bob)
    trash = b.get(f"/messages/{b_box.pk}/trash/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'name="action" value="delete"' in trash and "Vider la corbeille" in trash
    # Without the script: a page asks, listing the letters; nothing is deleted yet.
    asked = select(b, b_box, "trash", "delete", [shredded, kept])
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Supprimer définitivement 2 messages\u00a0? C\u2019est irréversible." in page
    assert "Bilan sanguin" in page and "Compte rendu" in page and "Courrier" not in page
    assert 'name="confirmed" value="1"' in page and f'href="/messages/{b_box.pk}/trash/"' in page
    assert Delivery.objects.filter(mailbox=b_box).count() == 3
    assert not AuditEvent.objects.filter(action="message.delete", actor_id=str(bob.pk)).exists()
    with django_capture_on_commit_callbacks(execute=True):
        done = select(b, b_box, "trash", "delete", [shredded, kept], confirmed="1")
    assert flashes(done) == ["2 messages supprimés définitivement."]
    assert list(Delivery.objects.filter(mailbox=b_box).values_list("message_id", flat=True)) == [uuid.UUID(untouched)]
    # The last copy gone, the letter is shredded with its blob; the other stays Alice's.
    assert not Message.objects.filter(pk=shredded).exists() and not Attachment.objects.exists()
    assert stored_blobs() == []
    assert Message.objects.filter(pk=kept).exists()
    assert DeletedCopy.objects.filter(message_id=kept, mailbox=b_box).exists()
    deletes = AuditEvent.objects.filter(action="message.delete", actor_id=str(bob.pk))
    assert sorted(e.target_id for e in deletes) == sorted([shredded, kept])
    assert all(e.details == {"copies": 1, "organisation": b_box.organisation_id} for e in deletes)
    assert list(AuditEvent.objects.filter(action="message.shred").values_list("target_id", flat=True)) == [shredded]
    # The confirmation sent again (a double click) is answered as the first, nothing refused.
    again = select(b, b_box, "trash", "delete", [shredded, kept], confirmed="1")
    assert flashes(again) == ["2 messages supprimés définitivement."]
    assert not AuditEvent.objects.filter(action="message.access_denied").exists()


def test_deleting_for_good_is_refused_outside_the_trash(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    letter = send(alice, a_box, [b_box], "Résultats")
    b = web_client(bob)
    inbox = b.get(f"/messages/{b_box.pk}/inbox/").content.decode()
    assert 'value="delete"' not in inbox and "trash/empty/" not in inbox
    for folder in ("inbox", "archive", "sent"):
        refused = select(b, b_box, folder, "delete", [letter], confirmed="1")
        assert flashes(refused) == [
            "Seuls les messages de la corbeille peuvent être supprimés définitivement\u00a0: "
            "mettez-les d\u2019abord à la corbeille."
        ]
    # Ticked in the trash's list, but in the inbox: left where it is, and said so.
    elsewhere = select(b, b_box, "trash", "delete", [letter], confirmed="1")
    assert flashes(elsewhere) == [
        "1 message sélectionné n\u2019est plus dans la corbeille (remis en place entre-temps\u00a0?)\u00a0: "
        "il est resté tel quel."
    ]
    assert select(b, b_box, "trash", "delete", [letter]).status_code == 302  # nothing to ask about
    assert Delivery.objects.get(mailbox=b_box).folder == Folder.INBOX
    assert not AuditEvent.objects.filter(action="message.delete").exists()


def test_a_letter_put_back_by_a_colleague_meanwhile_is_reported_and_the_others_deleted(db: None) -> None:
    alice, claire = practitioner(), practitioner()
    organisation = Membership.objects.get(user=claire).organisation
    jeanne = practitioner(organisation)
    team = shared_mailbox(organisation, [claire, jeanne])
    first, second = (send(alice, personal_mailbox(alice), [team], f"Lettre {n}") for n in range(2))
    bin_letters(claire, team, [first, second])
    theirs = send(alice, personal_mailbox(alice), [personal_mailbox(practitioner())], "Pas à elle")
    c = web_client(claire)
    asked = select(c, team, "trash", "delete", [first, second, theirs]).content.decode()
    assert "Supprimer définitivement 2 messages\u00a0?" in asked
    assert f"Ils sont supprimés pour toute l\u2019équipe de {team.name}." in asked
    assert "1 autre message sélectionné n\u2019est plus dans la corbeille" in asked
    assert "Pas à elle" not in asked
    # Jeanne takes the second one out of the trash before Claire confirms.
    services.move_message(jeanne, second, Folder.ARCHIVE, mailbox_id=team.pk)
    done = select(c, team, "trash", "delete", [first, second, str(uuid.uuid4())], confirmed="1")
    assert flashes(done) == [
        "1 message supprimé définitivement.",
        "1 message sélectionné n\u2019est plus dans la corbeille (remis en place entre-temps\u00a0?)\u00a0: "
        "il est resté tel quel.",
        "1 message sélectionné n\u2019est plus dans cette boîte (supprimé définitivement entre-temps\u00a0?).",
    ]
    assert not Delivery.objects.filter(mailbox=team, message_id=first).exists()
    assert Delivery.objects.get(mailbox=team, message_id=second).folder == Folder.ARCHIVE
    denied = AuditEvent.objects.filter(action="message.access_denied", actor_id=str(claire.pk))
    assert {e.details["step"] for e in denied} == {"selection"}
    assert denied.filter(target_id=theirs).exists() and denied.count() == 2  # on the page, then the other


def test_the_trash_is_emptied_in_batches_once_confirmed(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    services.seed_messages(a_box, b_box, [f"Lettre {n}" for n in range(125)])
    shown = timezone.now()
    copies = Delivery.objects.filter(mailbox=b_box).order_by("sent_at")
    binned = list(copies.values_list("pk", flat=True)[:121])
    Delivery.objects.filter(pk__in=binned).update(folder=Folder.TRASH, trashed_at=shown - datetime.timedelta(hours=1))
    # Binned by a colleague after the page was shown: not what was asked, so kept.
    late = binned[-1]
    Delivery.objects.filter(pk=late).update(trashed_at=shown + datetime.timedelta(seconds=5))
    b = web_client(bob)
    trash = b.get(f"/messages/{b_box.pk}/trash/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    until = re.search(r'name="until" value="([^"]+)"', trash)
    assert until and "Vider la corbeille" in trash
    url = f"/messages/{b_box.pk}/trash/empty/"
    asked = b.post(url, {"until": shown.isoformat()}, HTTP_ACCEPT_LANGUAGE="fr")
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Supprimer définitivement les 120 messages de la corbeille\u00a0? C\u2019est irréversible." in page
    assert "par lots de 100" in page and 'name="confirmed" value="1"' in page
    assert Delivery.objects.filter(mailbox=b_box, folder=Folder.TRASH).count() == 121
    rounds: list[int] = []
    real = services.trash_selection

    def counted(*args: Any, **kwargs: Any) -> services.TrashSelection:
        found = real(*args, **kwargs)
        rounds.append(len(found.letters))
        return found

    monkeypatch.setattr(services, "trash_selection", counted)
    done = b.post(url, {"until": shown.isoformat(), "confirmed": "1"}, HTTP_ACCEPT_LANGUAGE="fr")
    assert flashes(done) == ["Corbeille vidée\u00a0: 120 messages supprimés définitivement."]
    assert rounds == [100, 20]  # each batch its own transaction
    assert list(Delivery.objects.filter(mailbox=b_box, folder=Folder.TRASH).values_list("pk", flat=True)) == [late]
    assert Delivery.objects.filter(mailbox=b_box).count() == 5
    assert AuditEvent.objects.filter(action="message.delete", actor_id=str(bob.pk)).count() == 120
    # Alice still holds every letter: nothing shredded.
    assert Message.objects.count() == 125 and not AuditEvent.objects.filter(action="message.shred").exists()
    # Nothing more to empty (the late one went in after): said so, nothing asked.
    empty = b.post(url, {"until": shown.isoformat()}, HTTP_ACCEPT_LANGUAGE="fr")
    assert flashes(empty) == ["La corbeille est déjà vide."]


def test_a_deletion_of_ticked_letters_takes_every_lock_before_its_audit_events(transactional_db: None) -> None:
    """Lock order (docs/decisions.md): the copies, then what each deletion locks and deletes
    (the messages shredded), and the audit trail's head last, for all the letters."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    letters = [send(alice, a_box, [b_box], f"Lettre {n}") for n in range(3)]
    services.move_message(alice, letters[0], Folder.TRASH)
    services.delete_message(alice, letters[0])
    bin_letters(bob, b_box, letters)
    with CaptureQueriesContext(connection) as queries:
        result = services.delete_selection(bob, b_box, [uuid.UUID(m) for m in letters])
    assert result.deleted == 3
    statements = [q["sql"] for q in queries.captured_queries]
    locks = [i for i, sql in enumerate(statements) if "FOR UPDATE" in sql and "pli_audit" not in sql]
    writes = [i for i, sql in enumerate(statements) if sql.startswith("DELETE")]
    audit = [i for i, sql in enumerate(statements) if "pli_audit" in sql]
    assert writes and audit
    if connection.vendor == "postgresql":
        assert locks and "ORDER BY" in statements[locks[0]] and '"pli_delivery"' in statements[locks[0]]
    else:
        assert locks == []  # SQLite's one writer at a time is the lock; the order of writes still holds
    assert max(locks + writes) < min(audit)


def test_a_deletion_and_a_colleagues_move_of_one_of_its_letters_do_not_deadlock(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claire deletes two ticked letters of the team's trash for good just as Jeanne puts the
    second one back from its page: one waits for the other, whichever first, and neither
    fails with a deadlock (a 500)."""
    from functools import partial

    from interleave import while_committing

    alice, claire = practitioner(), practitioner()
    organisation = Membership.objects.get(user=claire).organisation
    jeanne = practitioner(organisation)
    team = shared_mailbox(organisation, [claire, jeanne])
    first, second = (send(alice, personal_mailbox(alice), [team], f"Lettre {n}") for n in range(2))
    bin_letters(claire, team, [first, second])
    putting_back = partial(services.move_message, jeanne, second, Folder.INBOX, mailbox_id=team.pk)
    join = while_committing(monkeypatch, "message.delete", putting_back, "message.move")
    c = web_client(claire)
    c.raise_request_exception = False
    response = select(c, team, "trash", "delete", [first, second], confirmed="1")
    failures = join()
    assert response.status_code == 302
    assert not Delivery.objects.filter(mailbox=team, message_id=first).exists()
    # Jeanne came second: the letter was gone for good, which her page answers with a 404.
    assert [type(f) for f in failures] == [services.NotVisible]
    assert not Delivery.objects.filter(mailbox=team, message_id=second).exists()
    assert AuditEvent.objects.filter(action="message.delete").count() == 2


def test_two_mailboxes_deleting_their_last_copies_at_once_still_shred_the_letter(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Bob empties his trash just as Alice empties hers, the same letter in both: each deletion
    must not see the other's copy as still there (both would leave the letter, its patient
    data and its attachment, unshredded with no copy anywhere). Deleting several letters
    records its events last, so the audit trail's head does not order them as it orders two
    single deletions."""
    from functools import partial

    from interleave import while_committing

    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    letter = send(alice, a_box, [b_box], "Bilan", attachments=[attachment("a.txt", b"secret")])
    services.move_message(alice, letter, Folder.TRASH)
    bin_letters(bob, b_box, [letter])
    alices = partial(services.empty_trash, alice, a_box, until=timezone.now())
    join = while_committing(monkeypatch, "message.delete", alices, "message.delete")
    with django_capture_on_commit_callbacks(execute=True):
        assert services.empty_trash(bob, b_box, until=timezone.now()) == 1
    assert join() == []
    assert not Delivery.objects.filter(message_id=letter).exists()
    assert not Message.objects.filter(pk=letter).exists() and not Attachment.objects.exists()
    assert list(AuditEvent.objects.filter(action="message.shred").values_list("target_id", flat=True)) == [letter]


def test_two_selections_of_the_same_letters_in_two_mailboxes_shred_them_without_a_deadlock(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice and Bob each delete the same two letters from their own trash, ticked in another
    order: the letters' rows are taken in one order, so one waits for the other (no 500)."""
    from functools import partial

    from interleave import while_committing

    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    letters = [send(alice, a_box, [b_box], f"Lettre {n}") for n in range(2)]
    bin_letters(alice, a_box, letters)
    bin_letters(bob, b_box, letters)
    alices = partial(services.delete_selection, alice, a_box, [uuid.UUID(m) for m in reversed(letters)])
    join = while_committing(monkeypatch, "message.delete", alices, "message.delete")
    result = services.delete_selection(bob, b_box, [uuid.UUID(m) for m in letters])
    assert join() == [] and result.deleted == 2
    assert not Delivery.objects.exists() and not Message.objects.exists()
    assert AuditEvent.objects.filter(action="message.shred").count() == 2


def test_a_time_the_page_could_not_have_been_shown_at_is_refused_without_an_error(db: None) -> None:
    """The form's ``until`` altered: a date Python reads but no database can hold (year 1 at
    UTC+14 is before year 1 in UTC) is taken as garbage is, never a 500."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    letter = send(alice, a_box, [b_box], "Lettre")
    bin_letters(bob, b_box, [letter])
    b = web_client(bob)
    url = f"/messages/{b_box.pk}/trash/empty/"
    for until in ("0001-01-01T00:00:00+14:00", "0001-01-01T08:00:00+23:59"):
        asked = b.post(url, {"until": until}, HTTP_ACCEPT_LANGUAGE="fr")
        assert asked.status_code == 200
        assert "Supprimer définitivement le message de la corbeille" in asked.content.decode()
    done = b.post(url, {"until": "0001-01-01T00:00:00+14:00", "confirmed": "1"}, HTTP_ACCEPT_LANGUAGE="fr")
    assert flashes(done) == ["Corbeille vidée\u00a0: 1 message supprimé définitivement."]


def test_a_letter_binned_while_the_trash_page_is_being_made_is_not_emptied(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time « Vider la corbeille » carries is taken before the list is read: a letter a
    colleague bins just after the list was read, never shown, went in before a time taken
    at the end of the page, and was emptied."""
    alice, claire = practitioner(), practitioner()
    organisation = Membership.objects.get(user=claire).organisation
    jeanne = practitioner(organisation)
    team = shared_mailbox(organisation, [claire, jeanne])
    shown, unseen = (send(alice, personal_mailbox(alice), [team], subject) for subject in ("Montrée", "Jamais vue"))
    bin_letters(claire, team, [shown])
    real = services.record_listing

    def listed_then_binned(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not Delivery.objects.filter(message_id=unseen, folder=Folder.TRASH).exists():
            bin_letters(jeanne, team, [unseen])  # just after Claire's list was read
        return result

    monkeypatch.setattr(services, "record_listing", listed_then_binned)
    c = web_client(claire)
    trash = c.get(f"/messages/{team.pk}/trash/").content.decode()
    assert "Montrée" in trash and "Jamais vue" not in trash
    until = re.search(r'name="until" value="([^"]+)"', trash)
    assert until
    done = c.post(f"/messages/{team.pk}/trash/empty/", {"until": until.group(1), "confirmed": "1"})
    assert done.status_code == 302
    assert not Delivery.objects.filter(mailbox=team, message_id=shown).exists()
    assert Delivery.objects.get(mailbox=team, message_id=unseen).folder == Folder.TRASH


def test_asking_again_about_letters_one_just_deleted_is_no_refused_access(db: None) -> None:
    """Without the script, back to the trash's list (still ticked, from the browser's cache)
    and « Supprimer définitivement » again: the letters this user just deleted are not
    recorded as an attempt on letters that are not theirs, as the confirmation sent again
    is not; another's letter still is."""
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    letter = send(alice, a_box, [b_box], "Lettre")
    bin_letters(bob, b_box, [letter])
    theirs = send(alice, a_box, [personal_mailbox(practitioner())], "Pas à lui")
    b = web_client(bob)
    select(b, b_box, "trash", "delete", [letter], confirmed="1")
    again = select(b, b_box, "trash", "delete", [letter, theirs])
    assert again.status_code == 302
    denied = AuditEvent.objects.filter(action="message.access_denied", actor_id=str(bob.pk))
    assert list(denied.values_list("target_id", flat=True)) == [theirs]


def test_the_trash_retention_and_a_user_emptying_their_trash_do_not_deadlock(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker deletes for good a letter binned a month ago in two organisations' mailboxes
    just as Bob empties his trash: the worker deleted the first organisation's copy and
    recorded its event (the audit trail's head) before locking the second's, which Bob's
    emptying held while it waited for the letter the worker held (PostgreSQL: a deadlock)."""
    from functools import partial

    from interleave import while_committing

    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    letter = send(alice, a_box, [b_box], "Bilan")
    services.move_message(alice, letter, Folder.TRASH)
    bin_letters(bob, b_box, [letter])
    month_ago = timezone.now() - datetime.timedelta(days=31)
    Delivery.objects.filter(message_id=letter).update(trashed_at=month_ago)
    bobs = partial(services.empty_trash, bob, b_box, until=timezone.now())
    join = while_committing(monkeypatch, "message.delete", bobs, "message.delete")
    assert services.purge_old_trash() == 2
    assert join() == []
    assert not Delivery.objects.filter(message_id=letter).exists()
    assert not Message.objects.filter(pk=letter).exists()
    assert AuditEvent.objects.filter(action="message.delete").count() == 2
