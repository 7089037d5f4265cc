"""Messaging behaviour: threads, replies, forwards, folders, shared mailboxes, receipts,
search, pagination, deletion and the orphan blob cleanup."""

from __future__ import annotations

import datetime
import io
import os
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from messaging.conftest import assert_nothing_saved, stored_blobs, temp_files
from messaging.factories import (
    OrganisationFactory,
    api_client,
    patient_fields,
    personal_mailbox,
    practitioner,
    shared_mailbox,
    valid_ins,
    web_client,
)
from pli.accounts.models import Mailbox, User
from pli.audit import services as audit
from pli.audit.models import AuditEvent
from pli.core.models import DataKey, PurposeKey
from pli.messaging import search, services
from pli.messaging.forms import ComposeForm
from pli.messaging.models import Attachment, Delivery, Folder, Message, Reading, Role, SearchToken
from pli.messaging.uploads import blob_store


def _file(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


def send(client: Client, sender: Mailbox, to: list[Mailbox], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sender": sender.address,
        "to": [m.address for m in to],
        "subject": "Objet",
        "body": "Texte",
    }
    if "cc" in extra:
        extra["cc"] = [m.address for m in extra["cc"]]
    data.update(extra)
    response = client.post("/api/v1/messages", data)
    assert response.status_code == 201, response.content
    return dict(response.json())


@pytest.fixture
def trio(db: None) -> tuple[User, User, User]:
    return practitioner(), practitioner(), practitioner()


def test_reply_keeps_the_thread_and_marks_the_original_answered(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first = send(api_client(alice), a_box, [b_box], subject="Avis")
    reply = send(api_client(bob), b_box, [a_box], subject="RE : Avis", in_reply_to=first["id"])
    assert reply["thread_id"] == first["thread_id"]
    original = Delivery.objects.get(message_id=first["id"], mailbox=b_box)
    assert original.answered_at is not None and original.answered_by == bob
    entries = services.open_thread(alice, first["id"])
    assert [str(e.message.pk) for e in entries] == [first["id"], reply["id"]]
    assert Message.objects.get(pk=reply["id"]).in_reply_to_id is not None


def test_forward_copies_attachments_under_new_keys(trio: tuple[User, User, User]) -> None:
    alice, bob, carol = trio
    a_box, b_box, c_box = (personal_mailbox(u) for u in trio)
    content = os.urandom(50_000)
    first = send(api_client(alice), a_box, [b_box], attachments=[_file("irm.pdf", b"%PDF-" + content)])
    original_attachment = first["attachments"][0]
    forwarded = send(
        api_client(bob),
        b_box,
        [c_box],
        forward_of=first["id"],
        forward_attachments=[original_attachment["id"]],
        attachments=[_file("note.txt", b"en plus")],
    )
    assert forwarded["thread_id"] == first["thread_id"]
    names = [a["name"] for a in forwarded["attachments"]]
    assert names == ["note.txt", "irm.pdf"]
    copy = Attachment.objects.get(pk=forwarded["attachments"][1]["id"])
    source = Attachment.objects.get(pk=original_attachment["id"])
    assert copy.data_key_id != source.data_key_id and copy.blob_id != source.blob_id
    assert copy.sha256 == source.sha256
    # Shredding the original leaves the forwarded copy readable: each has its own key.
    source.shred()
    response = api_client(carol).get(f"/api/v1/messages/{forwarded['id']}/attachments/{copy.pk}")
    assert b"".join(response.streaming_content) == b"%PDF-" + content
    # The original answer is not marked "answered" by a forward.
    assert Delivery.objects.get(message_id=first["id"], mailbox=b_box).answered_at is None


def test_reply_all_prefill_and_self_copy(trio: tuple[User, User, User]) -> None:
    alice, bob, _carol = trio
    a_box, b_box, c_box = (personal_mailbox(u) for u in trio)
    first = send(api_client(alice), a_box, [b_box, a_box], cc=[c_box])
    # Sending to oneself gives two copies: "sent" and "inbox".
    folders = sorted(Delivery.objects.filter(message_id=first["id"], mailbox=a_box).values_list("folder", flat=True))
    assert folders == ["inbox", "sent"]
    page = web_client(bob).get(f"/messages/compose/?reply_to={first['id']}&mode=reply_all")
    form = page.context["form"]
    assert form.initial["to"] == [a_box.address]
    assert form.initial["cc"] == [c_box.address]
    assert form.initial["in_reply_to"] == Message.objects.get(pk=first["id"]).pk


def test_folders_moves_and_unread_counts(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    ids = [send(api_client(alice), a_box, [b_box])["id"] for _ in range(3)]
    assert services.unread_counts([b_box.pk]) == {b_box.pk: 3}
    services.open_message(bob, ids[0])
    assert services.unread_counts([b_box.pk]) == {b_box.pk: 2}
    services.move_message(bob, ids[1], Folder.ARCHIVE)
    assert services.unread_counts([b_box.pk]) == {b_box.pk: 1}
    assert [str(c.message_id) for c in services.folder_page(b_box, Folder.ARCHIVE).items] == [ids[1]]
    services.move_message(bob, ids[1], Folder.INBOX)
    services.move_message(alice, ids[2], Folder.TRASH)
    assert Delivery.objects.get(message_id=ids[2], mailbox=a_box).folder == Folder.TRASH
    # "inbox" brings the sender's own copy back to "sent", where it belongs.
    services.move_message(alice, ids[2], Folder.INBOX)
    assert Delivery.objects.get(message_id=ids[2], mailbox=a_box).folder == Folder.SENT
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"message.send", "message.read", "message.move"} <= actions


def test_delete_for_good_shreds_when_the_last_copy_goes(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    sent = send(api_client(alice), a_box, [b_box], attachments=[_file("a.txt", b"secret")])
    attachment = Attachment.objects.get()
    key_ids = [attachment.data_key_id, Message.objects.get().data_key_id]
    with pytest.raises(services.NotInTrash):
        services.delete_message(bob, sent["id"])
    services.move_message(bob, sent["id"], Folder.TRASH)
    assert services.delete_message(bob, sent["id"]) == 1
    assert Message.objects.filter(pk=sent["id"]).exists()  # Alice still has her copy
    assert len(stored_blobs()) == 1
    services.move_message(alice, sent["id"], Folder.TRASH)
    services.delete_message(alice, sent["id"])
    assert not Message.objects.exists() and not Attachment.objects.exists()
    assert not DataKey.objects.filter(pk__in=key_ids).exists()
    assert AuditEvent.objects.filter(action="message.delete").count() == 2
    # Its id, not "None" (the message's primary key once deleted).
    assert AuditEvent.objects.get(action="message.shred").target_id == sent["id"]


def test_a_second_delete_of_the_same_copies_records_nothing(
    trio: tuple[User, User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two requests (a double click) read the copies before either deletes them: the second
    # one finds nothing left to delete and must not record a delete and a shred again.
    alice, bob, _ = trio
    sent = send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)])
    services.open_message(bob, sent["id"])  # its reading goes with the copy, not counted as one
    for user in (alice, bob):
        services.move_message(user, sent["id"], Folder.TRASH)
    services.delete_message(alice, sent["id"])
    stale = services.visible_copies(bob, sent["id"])
    assert services.delete_message(bob, sent["id"]) == 1
    deletes = AuditEvent.objects.filter(action="message.delete").order_by("seq")
    organisation = personal_mailbox(bob).organisation_id
    assert [event.details for event in deletes][-1] == {"copies": 1, "organisation": organisation}
    monkeypatch.setattr(services, "visible_copies", lambda *args, **kwargs: stale)
    with pytest.raises(services.NotVisible):
        services.delete_message(bob, sent["id"])
    assert AuditEvent.objects.filter(action="message.delete").count() == 2
    assert AuditEvent.objects.filter(action="message.shred").count() == 1


def test_the_trash_keeps_a_copy_for_its_days_then_deletes_it_for_good(
    trio: tuple[User, User, User], django_capture_on_commit_callbacks: Any
) -> None:
    """A trash that keeps everything for ever keeps health data no one wants: after
    PLI_TRASH_DAYS (30) in a trash, the copy is deleted for good as its user would, and the
    message shredded with its last copy."""
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    sent = send(api_client(alice), a_box, [b_box], attachments=[_file("a.txt", b"secret")])
    services.move_message(bob, sent["id"], Folder.TRASH)
    bob_copy = Delivery.objects.get(message_id=sent["id"], mailbox=b_box)
    assert bob_copy.trashed_at is not None
    binned = bob_copy.trashed_at
    services.move_message(alice, sent["id"], Folder.TRASH)
    Delivery.objects.filter(mailbox=a_box).update(trashed_at=binned + datetime.timedelta(days=10))
    day = datetime.timedelta(days=1)
    assert services.purge_old_trash(binned + 30 * day - datetime.timedelta(minutes=1)) == 0
    assert services.purge_old_trash(binned + 30 * day + datetime.timedelta(minutes=1)) == 1
    assert not Delivery.objects.filter(mailbox=b_box).exists()
    assert Message.objects.filter(pk=sent["id"]).exists()  # Alice's copy has 10 more days
    # Alice's receipt still shows Bob received it.
    assert [r.mailbox for r in services.message_recipients(Message.objects.get())] == [b_box]
    delete = AuditEvent.objects.get(action="message.delete")
    assert delete.details == {"copies": 1, "reason": "trash_retention", "organisation": b_box.organisation_id}
    assert (delete.actor_type, delete.actor_id) == ("system", "")
    with django_capture_on_commit_callbacks(execute=True):
        assert services.purge_old_trash(binned + 40 * day + datetime.timedelta(minutes=1)) == 1
    assert not Message.objects.exists() and not Attachment.objects.exists()
    assert stored_blobs() == []
    assert AuditEvent.objects.filter(action="message.shred").count() == 1
    assert services.purge_old_trash(binned + 400 * day) == 0


def test_a_copy_taken_out_of_the_trash_is_kept_and_its_days_start_again(
    trio: tuple[User, User, User], settings: Any
) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    sent = send(api_client(alice), a_box, [b_box])
    services.move_message(bob, sent["id"], Folder.TRASH)
    first = Delivery.objects.get(mailbox=b_box).trashed_at
    assert first is not None
    services.move_message(bob, sent["id"], Folder.ARCHIVE)
    assert Delivery.objects.get(mailbox=b_box).trashed_at is None
    assert services.purge_old_trash(first + datetime.timedelta(days=31)) == 0
    # Binned again: counted from then, even by a run that read the copy when it was old.
    long_ago = timezone.now() - datetime.timedelta(days=40)
    Delivery.objects.filter(mailbox=b_box).update(folder=Folder.TRASH, trashed_at=long_ago)
    stale = list(Delivery.objects.filter(mailbox=b_box).select_related("message", "mailbox"))
    services.move_message(bob, sent["id"], Folder.INBOX)
    services.move_message(bob, sent["id"], Folder.TRASH)
    with pytest.raises(services.NotVisible):
        services._delete_copies(stale, actor=None, trashed_before=timezone.now() - datetime.timedelta(days=30))
    assert Delivery.objects.filter(mailbox=b_box, folder=Folder.TRASH).exists()
    assert not AuditEvent.objects.filter(action="message.delete").exists()
    # PLI_TRASH_DAYS=0: the trash keeps what users leave there.
    settings.PLI_TRASH_DAYS = 0
    assert services.purge_old_trash(timezone.now() + datetime.timedelta(days=3650)) == 0
    assert Delivery.objects.filter(mailbox=b_box, folder=Folder.TRASH).exists()


def test_the_worker_s_periodic_run_empties_old_trash(trio: tuple[User, User, User]) -> None:
    from pli.sharing.tasks import schedule_periodic
    from sharing.helpers import run_tasks

    alice, bob, _ = trio
    sent = send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)])
    services.move_message(bob, sent["id"], Folder.TRASH)
    Delivery.objects.filter(folder=Folder.TRASH).update(trashed_at=timezone.now() - datetime.timedelta(days=31))
    schedule_periodic()
    run_tasks()
    assert not Delivery.objects.filter(folder=Folder.TRASH).exists()
    assert Delivery.objects.filter(mailbox=personal_mailbox(alice)).exists()


def test_copies_in_the_trash_before_the_retention_count_from_the_upgrade(transactional_db: None) -> None:
    """Migration 0007: what users had left in their trash is not deleted on the day of the
    upgrade; its days start then."""
    from django.db.migrations.executor import MigrationExecutor

    alice, bob = practitioner(), practitioner()
    sent = send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)])
    MigrationExecutor(connection).migrate([("messaging", "0006_delivery_fewer_indexes")])
    Delivery.objects.filter(mailbox=personal_mailbox(bob)).update(folder=Folder.TRASH)
    before = timezone.now()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    binned = Delivery.objects.get(message_id=sent["id"], folder=Folder.TRASH)
    assert binned.trashed_at is not None and binned.trashed_at >= before
    assert Delivery.objects.get(message_id=sent["id"], folder=Folder.SENT).trashed_at is None


def test_the_trash_page_says_how_long_it_keeps_messages(trio: tuple[User, User, User], settings: Any) -> None:
    alice, _bob, _ = trio
    box = personal_mailbox(alice)
    client = web_client(alice)
    body = client.get(f"/messages/{box.pk}/trash/").content.decode()
    assert "Les messages restent 30 jours dans la corbeille, puis sont supprimés définitivement." in body
    assert "restent" not in client.get(f"/messages/{box.pk}/inbox/").content.decode()
    settings.PLI_TRASH_DAYS = 0
    assert "restent" not in client.get(f"/messages/{box.pk}/trash/").content.decode()


def test_purged_blob_is_removed_after_commit(transactional_db: None) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    sent = send(api_client(alice), a_box, [b_box], attachments=[_file("a.txt", b"secret")])
    for user in (alice, bob):
        services.move_message(user, sent["id"], Folder.TRASH)
        services.delete_message(user, sent["id"])
    assert stored_blobs() == []


def _deleted_for_good_once_checked(monkeypatch: pytest.MonkeyPatch, message_id: str, holders: list[User]) -> None:
    """Every holder deletes the message for good right after the compose form accepted it as
    the one answered or forwarded: what a concurrent request does in that window."""
    real_draft = ComposeForm.draft

    def draft(form: ComposeForm) -> Any:
        result = real_draft(form)
        for user in holders:
            services.move_message(user, message_id, Folder.TRASH)
            services.delete_message(user, message_id)
        return result

    monkeypatch.setattr(ComposeForm, "draft", draft)


def test_reply_to_a_message_deleted_meanwhile_is_refused(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first = send(api_client(alice), a_box, [b_box], subject="Avis")
    _deleted_for_good_once_checked(monkeypatch, first["id"], [alice, bob])
    data = {"sender": b_box.address, "to": [a_box.address], "subject": "RE", "body": "Texte"}
    response = api_client(bob).post("/api/v1/messages", {**data, "in_reply_to": first["id"]})
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["in_reply_to"]
    assert not Message.objects.exists() and not Delivery.objects.exists()


def test_forward_of_a_message_deleted_meanwhile_is_refused(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol = practitioner(), practitioner(), practitioner()
    a_box, b_box, c_box = (personal_mailbox(u) for u in (alice, bob, carol))
    first = send(api_client(alice), a_box, [b_box], attachments=[_file("irm.pdf", b"%PDF-" + os.urandom(5000))])
    _deleted_for_good_once_checked(monkeypatch, first["id"], [alice, bob])
    data = {"sender": b_box.address, "to": [c_box.address], "subject": "TR", "body": "Texte"}
    forward = {"forward_of": first["id"], "forward_attachments": [first["attachments"][0]["id"]]}
    response = api_client(bob).post("/api/v1/messages", {**data, **forward})
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["forward_of"]
    assert_nothing_saved()


def test_forward_without_attachments_of_a_message_deleted_meanwhile_is_refused_on_the_page(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = practitioner(), practitioner()
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    first = send(api_client(alice), a_box, [b_box], subject="Avis")
    _deleted_for_good_once_checked(monkeypatch, first["id"], [alice, bob])
    data = {"sender": b_box.address, "to": [a_box.address], "subject": "TR", "body": "Texte"}
    response = web_client(bob).post("/messages/compose/", {**data, "forward_of": first["id"]})
    assert response.status_code == 400
    assert response.context["form"].errors["forward_of"]
    assert not Message.objects.exists() and not Delivery.objects.exists()


def test_shared_mailbox_team_sees_who_read_and_answered(db: None) -> None:
    org = OrganisationFactory()
    nurse, doctor, outsider = practitioner(org), practitioner(org), practitioner()
    team = shared_mailbox(org, [nurse, doctor])
    sent = send(api_client(outsider), personal_mailbox(outsider), [team], subject="Bilan")
    assert services.unread_counts([team.pk])[team.pk] == 1
    services.open_message(nurse, sent["id"])
    services.open_message(doctor, sent["id"])
    copy = Delivery.objects.get(message_id=sent["id"], mailbox=team)
    assert copy.read_by == nurse
    assert set(Reading.objects.filter(delivery=copy).values_list("user_id", flat=True)) == {nurse.pk, doctor.pk}
    send(api_client(doctor), team, [personal_mailbox(outsider)], in_reply_to=sent["id"])
    copy.refresh_from_db()
    assert copy.answered_by == doctor
    html = web_client(nurse).get(f"/messages/m/{sent['id']}/").content.decode()
    assert "lu par" in html and "répondu par" in html and doctor.display_name in html
    # The sender sees receipts per recipient.
    receipts = api_client(outsider).get(f"/api/v1/messages/{sent['id']}").json()["receipts"]
    assert receipts[0]["read_at"] is not None and receipts[0]["answered_at"] is not None
    # In the pages too: the answer's time beside the reading's.
    page = web_client(outsider).get(f"/messages/m/{sent['id']}/").content.decode()
    row = page[page.index('class="receipt-row"') : page.index("</tr>", page.index('class="receipt-row"'))]
    assert "receipt-read" in row and "receipt-answered" in row and "répondu" in row


def test_reading_through_one_mailbox_leaves_the_shared_copy_unread(db: None) -> None:
    org = OrganisationFactory()
    doctor, nurse, outsider = practitioner(org), practitioner(org), practitioner()
    team, own = shared_mailbox(org, [doctor, nurse]), personal_mailbox(doctor)
    sent = send(api_client(outsider), personal_mailbox(outsider), [own, team], subject="Bilan")
    client = api_client(doctor)
    read = client.get(f"/api/v1/messages/{sent['id']}?mailbox={own.pk}")
    assert read.status_code == 200
    assert Delivery.objects.get(message_id=sent["id"], mailbox=own).read_at is not None
    assert Delivery.objects.get(message_id=sent["id"], mailbox=team).read_at is None
    assert services.unread_counts([team.pk])[team.pk] == 1
    # Not in that mailbox, or not a mailbox id: as for any other message.
    elsewhere = personal_mailbox(nurse)
    assert client.get(f"/api/v1/messages/{sent['id']}?mailbox={elsewhere.pk}").status_code == 404
    assert "mailbox" in client.get(f"/api/v1/messages/{sent['id']}?mailbox=x").json()
    # Without it, every copy of the caller's becomes read.
    client.get(f"/api/v1/messages/{sent['id']}")
    assert Delivery.objects.get(message_id=sent["id"], mailbox=team).read_at is not None


def test_reading_through_the_shared_mailbox_reads_ones_own_copy_as_documented(db: None) -> None:
    """Read through the team's mailbox, a letter is read in one's own mailbox too (decisions:
    "Unread is per person in one's own mailbox"). The schema said the copies in one's other
    mailboxes stay unread, and the README "only in that one": software that polled the team's
    mailbox, then the GP's own with unread=true, waited there for a letter that never came."""
    from pathlib import Path

    org = OrganisationFactory()
    doctor, outsider = practitioner(org), practitioner()
    team, own = shared_mailbox(org, [doctor]), personal_mailbox(doctor)
    sent = send(api_client(outsider), personal_mailbox(outsider), [own, team], subject="Bilan")
    client = api_client(doctor)
    assert client.get(f"/api/v1/messages/{sent['id']}?mailbox={team.pk}").status_code == 200
    assert Delivery.objects.get(message_id=sent["id"], mailbox=own).read_at is not None
    polled = client.get(f"/api/v1/mailboxes/{own.pk}/messages?unread=true").json()
    assert polled["results"] == []
    schema = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/messages/{message_id}"]["get"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "mailbox"]
    assert "personal mailbox is read too" in parameter["description"]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in readme.splitlines() if line.startswith("| `GET /api/v1/messages/{id}` |")]
    assert "personal mailbox is read too" in row


def test_recipient_does_not_see_receipts(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    sent = send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)])
    assert api_client(bob).get(f"/api/v1/messages/{sent['id']}").json()["receipts"] == []


def test_search_through_keyed_tokens_only(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    ins = valid_ins()
    hit = send(
        api_client(alice),
        a_box,
        [b_box],
        subject="Échographie abdominale de contrôle",
        **patient_fields(patient_family_name="Lefèvre", patient_ins=ins),
    )
    send(api_client(alice), a_box, [b_box], subject="Autre chose")

    def found(**query: Any) -> list[str]:
        page = services.folder_page(b_box, None, query=services.SearchQuery(**query))
        return [str(c.message_id) for c in page.items]

    assert found(text="echographie") == [hit["id"]]
    assert found(text="ÉCHOGRAPHIE controle") == [hit["id"]]
    assert found(text="lefevre") == [hit["id"]]
    assert found(text="élodie") == [hit["id"]]
    # A patient's name by its first letters (three or more), as practice software finds
    # patients; subject words only whole.
    assert found(text="lef") == [hit["id"]] and found(text="LEFÈV élo") == [hit["id"]]
    assert found(text="le") == [] and found(text="efe") == [] and found(text="lefevres") == []
    assert found(text="echo") == [] and found(text="abdo") == []
    assert found(text=ins) == [hit["id"]]
    assert found(text=ins[:13]) == [hit["id"]]
    # As printed on a carte Vitale, and beside a name.
    spaced = " ".join([ins[0], ins[1:3], ins[3:5], ins[5:7], ins[7:10], ins[10:13], ins[13:]])
    assert found(text=spaced) == [hit["id"]]
    assert found(text=f"lefèvre {spaced[:-3]}") == [hit["id"]]
    assert found(text=f"{spaced} autre") == []
    assert found(text="echographie inexistant") == []
    assert len(found(sender=alice.first_name)) == 2
    assert found(sender="personne") == []
    today = datetime.date.today()
    assert len(found(date_from=today, date_to=today)) == 2
    assert found(date_to=today - datetime.timedelta(days=1)) == []
    # Tokens are keyed hashes: no plaintext word in the table.
    tokens = list(SearchToken.objects.values_list("token", flat=True))
    assert tokens and all(len(t) == 16 and t != "echographie" for t in tokens)
    assert search.token(search.SUBJECT, "echographie") in tokens
    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM pli_search_token")
        raw = " ".join(row[0] for row in cursor.fetchall())
    assert "chographie" not in raw and "lefevre" not in raw.lower()


def test_api_search_parameter(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    hit = send(api_client(alice), a_box, [b_box], subject="Scanner thoracique")
    send(api_client(alice), a_box, [b_box], subject="Biologie")
    page = api_client(bob).get(f"/api/v1/mailboxes/{b_box.pk}/messages?q=thoracique").json()
    assert [r["id"] for r in page["results"]] == [hit["id"]]


def test_api_searches_by_sender_and_dates_as_the_web_page_does(trio: tuple[User, User, User]) -> None:
    alice, bob, carol = trio
    a_box, b_box, c_box = personal_mailbox(alice), personal_mailbox(bob), personal_mailbox(carol)
    Mailbox.objects.filter(pk=a_box.pk).update(name="Hôpital Édouard-Herriot")
    from_alice = send(api_client(alice), a_box, [b_box], subject="Scanner")
    send(api_client(carol), c_box, [b_box], subject="Biologie")
    url = f"/api/v1/mailboxes/{b_box.pk}/messages"
    client = api_client(bob)
    today = timezone.localdate()

    def found(**params: str) -> list[str]:
        response = client.get(url, params)
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert found(sender="HOPITAL edouard") == [from_alice["id"]]
    assert found(sender="hopital", q="scanner", date_from=today.isoformat()) == [from_alice["id"]]
    assert found(date_to=(today - datetime.timedelta(days=1)).isoformat()) == []
    assert len(found(date_from=today.isoformat(), date_to=today.isoformat())) == 2
    refused = client.get(url, {"date_from": today.isoformat(), "date_to": "2020-01-01"})
    assert refused.status_code == 400 and list(refused.json()) == ["date_to"]
    refused = client.get(url, {"date_from": "31/02/2026"}, HTTP_ACCEPT_LANGUAGE="fr")
    assert refused.status_code == 400 and "date" in refused.json()["date_from"][0].lower()


def test_api_dates_mean_the_same_day_whatever_the_language(trio: tuple[User, User, User]) -> None:
    """The API's dates are YYYY-MM-DD, as documented: a day typed the French or the American
    way is refused with the format, rather than read as 1 February in French and as 2 January
    in English, by the request's Accept-Language."""
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    send(api_client(alice), a_box, [b_box], subject="Scanner")
    url = f"/api/v1/mailboxes/{b_box.pk}/messages"
    client = api_client(bob)
    for language in ("fr", "en"):
        for name in ("date_from", "date_to"):
            refused = client.get(url, {name: "01/02/2026"}, HTTP_ACCEPT_LANGUAGE=language)
            assert refused.status_code == 400, (language, name)
            assert ("AAAA-MM-JJ" if language == "fr" else "YYYY-MM-DD") in refused.json()[name][0]
    french = client.get(url, {"date_from": "01/02/2026"}, HTTP_ACCEPT_LANGUAGE="fr").json()
    assert french == {"date_from": ["Saisissez une date au format AAAA-MM-JJ."]}


def test_cursor_pagination_walks_every_message_once(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    services.seed_messages(a_box, b_box, [f"Message {i}" for i in range(23)])
    client = api_client(bob)
    url: str | None = f"/api/v1/mailboxes/{b_box.pk}/messages?limit=5"
    seen: list[str] = []
    pages = 0
    while url:
        body = client.get(url).json()
        seen += [r["subject"] for r in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 5
    assert seen == [f"Message {i}" for i in reversed(range(23))]
    assert len(set(seen)) == 23


def test_seeded_messages_are_encrypted_and_readable(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    services.seed_messages(a_box, b_box, ["Alpha", "Beta"], body="Corps")
    message = Message.objects.order_by("sent_at").first()
    assert message is not None and message.subject == "Alpha" and message.body == "Corps"
    assert Delivery.objects.filter(role=Role.TO, mailbox=b_box).count() == 2


def _age(blob_id: str, seconds: float) -> None:
    path = blob_store().path_for(blob_id)
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_cleanup_removes_only_old_unreferenced_blobs(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    sent = send(
        api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)], attachments=[_file("a.txt", b"kept")]
    )
    kept = sent["attachments"][0]["id"].replace("-", "")
    store = blob_store()
    old_orphan, young_orphan = "a" * 32, "b" * 32
    for blob_id in (old_orphan, young_orphan):
        store.put(blob_id, [b"orphan"], os.urandom(32), b"aad")
    _age(old_orphan, 7200)
    _age(kept, 7200)
    stale = store.temp_dir / f"{'c' * 32}.x.part"
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    result = services.cleanup_orphan_blobs()
    assert (result.orphans, result.temporary) == (1, 1)
    assert sorted(stored_blobs()) == sorted([kept, young_orphan])
    assert temp_files() == []


def test_cleanup_command(trio: tuple[User, User, User]) -> None:
    store = blob_store()
    store.put("d" * 32, [b"orphan"], os.urandom(32), b"aad")
    _age("d" * 32, 4000)
    out = io.StringIO()
    call_command("messaging", "cleanup-blobs", "--schedule", stdout=out)
    assert "removed 1 orphan blobs" in out.getvalue()
    assert "scheduled" in out.getvalue()
    assert stored_blobs() == []
    from django_tasks_db.models import DBTaskResult

    assert DBTaskResult.objects.filter(task_path="pli.messaging.tasks.cleanup_orphan_blobs").count() == 1
    call_command("messaging", "cleanup-blobs", "--schedule", stdout=out)
    assert DBTaskResult.objects.filter(task_path="pli.messaging.tasks.cleanup_orphan_blobs").count() == 1
    with pytest.raises(CommandError, match="at least 3600"):
        call_command("messaging", "cleanup-blobs", "--older-than", "60")


def test_reindex_command_indexes_older_messages_as_new_ones(
    trio: tuple[User, User, User], caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob, _ = trio
    a_box, b_box = personal_mailbox(alice), personal_mailbox(bob)
    patient = patient_fields(patient_family_name="N\u2019Diaye")
    older = send(api_client(alice), a_box, [b_box], subject="Bilan", **patient)
    stale = send(api_client(alice), a_box, [b_box], subject="Radio")
    unreadable = send(api_client(alice), a_box, [b_box], subject="Scanner")
    # As indexed by a version that did not join compound names, and a token of a word the
    # message no longer holds (rules that changed).
    SearchToken.objects.filter(message_id=older["id"], token=search.token(search.PATIENT_NAME, "ndiaye")).delete()
    SearchToken.objects.create(message_id=stale["id"], token=search.token(search.SUBJECT, "perime"))
    # A message whose data key row is gone cannot be decrypted: it keeps what it had.
    DataKey.objects.filter(pk=Message.objects.get(pk=unreadable["id"]).data_key_id).delete()
    kept = set(SearchToken.objects.filter(message_id=unreadable["id"]).values_list("token", flat=True))

    def found(text: str) -> list[str]:
        page = services.folder_page(b_box, None, query=services.SearchQuery(text=text))
        return [str(c.message_id) for c in page.items]

    assert found("ndiaye") == [] and found("perime") == [stale["id"]]
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 messages and 0 patient shares could not be decrypted"):
        call_command("messaging", "reindex", stdout=out)
    assert "reindexed 2 messages and 0 patient shares" in out.getvalue()
    assert found("ndiaye") == [older["id"]] and found("diaye") == [older["id"]] and found("bilan") == [older["id"]]
    assert found("perime") == [] and found("radio") == [stale["id"]]
    assert set(SearchToken.objects.filter(message_id=unreadable["id"]).values_list("token", flat=True)) == kept
    assert any(unreadable["id"] in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    event = AuditEvent.objects.get(action="message.reindex")
    assert event.actor_type == "system" and event.details == {"messages": 2, "unreadable": 1}
    # Running it again changes nothing.
    before = sorted(SearchToken.objects.values_list("message_id", "token"))
    with pytest.raises(CommandError):
        call_command("messaging", "reindex", stdout=io.StringIO())
    assert sorted(SearchToken.objects.values_list("message_id", "token")) == before


def test_cleanup_refuses_a_data_dir_bound_to_another_database(trio: tuple[User, User, User], caplog: Any) -> None:
    """Against another database (a freshly migrated one, staging, a restore in progress),
    every blob would look orphaned: the clean-up would delete every document for good."""
    from pli.core import instance
    from pli.messaging import tasks
    from pli.sharing import services as sharing_services
    from pli.sharing.uploads import share_blob_store

    store = blob_store()
    store.put("f" * 32, [b"orphan"], os.urandom(32), b"aad")
    _age("f" * 32, 4000)
    share_store = share_blob_store()
    share_store.put("9" * 32, [b"orphan"], os.urandom(32), b"aad")
    os.utime(share_store.path_for("9" * 32), (time.time() - 7200, time.time() - 7200))
    instance.check_blob_dir()  # binds the data dir to this database
    marker = instance.marker_path()
    bound = marker.read_text()
    assert bound.strip() == instance.database_instance_id()
    marker.write_text("00000000-0000-4000-8000-000000000000\n")  # another instance's data dir
    try:
        with pytest.raises(CommandError, match="belong to different Pli instances"):
            call_command("messaging", "cleanup-blobs")
        assert tasks.cleanup_orphan_blobs.call(reschedule=False) == {"refused": 1}
        assert sharing_services.cleanup()["orphans"] == 0
        assert store.path_for("f" * 32).exists() and share_store.path_for("9" * 32).exists()
        assert "blob cleanup refused" in caplog.text
        marker.unlink()
        marker.mkdir()  # unreadable as a file (as one written by root is to the service user)
        with pytest.raises(CommandError, match=r"cannot read .*instance"):
            call_command("messaging", "cleanup-blobs")
        marker.rmdir()  # the operator confirms the pairing: bound again at the next run
        assert services.cleanup_orphan_blobs().orphans == 1
        assert marker.read_text() == bound
    finally:
        marker.write_text(bound)


def test_a_restored_database_beside_an_empty_data_dir_is_not_bound(trio: tuple[User, User, User]) -> None:
    """A database restored into a fresh data dir without its blobs/ (forgotten, or a mistyped
    PLI_DATA_DIR) was bound to it at the first start: the server and worker ran, /healthz said
    ok, and every document was missing, with nothing left to say the pairing was wrong."""
    from pli.core import instance

    alice, bob, _ = trio
    send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)], attachments=[_file("a.pdf", b"%PDF-1")])
    root = blob_store().root
    marker = instance.marker_path()
    assert not marker.exists()
    aside = root.with_name("restored-later")
    root.rename(aside)  # the data dir as restored: no blobs
    # `pli serve`, `pli worker` and the clean-ups all start with this check.
    for run in (instance.check_blob_dir, lambda: call_command("messaging", "cleanup-blobs")):
        with pytest.raises(
            (instance.DataDirMismatch, CommandError),
            match=r"the database has 1 message attachment\(s\) whose encrypted content belongs in .*messages, "
            r"but that directory holds none",
        ):
            run()
        assert not marker.exists()  # nothing bound: once the blobs are back, the check passes
    aside.rename(root)
    instance.check_blob_dir()
    assert marker.read_text().strip() == instance.database_instance_id()
    assert blob_store().exists(Attachment.objects.get().blob_id)


def test_cleanup_task_runs_and_reschedules(trio: tuple[User, User, User]) -> None:
    from pli.messaging import tasks

    store = blob_store()
    store.put("e" * 32, [b"orphan"], os.urandom(32), b"aad")
    _age("e" * 32, 4000)
    assert tasks.cleanup_orphan_blobs.call() == {"orphans": 1, "temporary": 0}
    from django_tasks_db.models import DBTaskResult

    assert DBTaskResult.objects.filter(task_path="pli.messaging.tasks.cleanup_orphan_blobs").count() == 1


def test_expired_pending_upload_is_refused(trio: tuple[User, User, User], monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob finished long ago might already be collected: it is never committed."""
    from pli.messaging import uploads

    alice, bob, _ = trio
    monkeypatch.setattr(uploads, "MAX_PENDING_AGE", -1.0)
    monkeypatch.setattr(services, "MAX_PENDING_AGE", -1.0)
    response = api_client(alice).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(alice).address,
            "to": [personal_mailbox(bob).address],
            "attachments": [_file("a.txt", b"late")],
        },
    )
    assert response.status_code == 400 and "attachments" in response.json()
    assert not Message.objects.exists() and stored_blobs() == []


def test_audit_records_send_read_download_move_delete(trio: tuple[User, User, User]) -> None:
    alice, bob, _ = trio
    client = api_client(bob)
    sent = send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)], attachments=[_file("a", b"1")])
    client.get(f"/api/v1/messages/{sent['id']}")
    b"".join(client.get(f"/api/v1/messages/{sent['id']}/attachments/{sent['attachments'][0]['id']}").streaming_content)
    client.post(f"/api/v1/messages/{sent['id']}/move", {"folder": "trash"}, content_type="application/json")
    client.delete(f"/api/v1/messages/{sent['id']}")
    events = {e.action: e for e in AuditEvent.objects.filter(action__startswith=("message")).order_by("seq")}
    events.update({e.action: e for e in AuditEvent.objects.filter(action="attachment.download")})
    for action in ("message.send", "message.read", "attachment.download", "message.move", "message.delete"):
        event = events[action]
        assert event.actor_id == str((alice if action == "message.send" else bob).pk)
        assert event.ip == "127.0.0.1"
    assert events["message.send"].target_id == sent["id"]
    assert events["attachment.download"].details["message"] == sent["id"]


def test_every_reading_is_recorded_not_only_the_first(trio: tuple[User, User, User]) -> None:
    """A message already read, read again (by the API, on the page, by its sender): each
    reading shows health data, each is in the trail."""
    alice, bob, _ = trio
    sent = send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)])
    client = api_client(bob)
    for _ in range(2):
        assert client.get(f"/api/v1/messages/{sent['id']}").status_code == 200
    assert web_client(bob).get(f"/messages/m/{sent['id']}/").status_code == 200
    assert api_client(alice).get(f"/api/v1/messages/{sent['id']}").status_code == 200
    reads = AuditEvent.objects.filter(action="message.read", target_id=sent["id"])
    assert sorted(reads.values_list("actor_id", flat=True)) == sorted([str(bob.pk)] * 3 + [str(alice.pk)])


def test_listing_a_folder_is_recorded(trio: tuple[User, User, User]) -> None:
    """A list shows subjects and patients' names: it is a read."""
    alice, bob, _ = trio
    box = personal_mailbox(bob)
    send(api_client(alice), personal_mailbox(alice), [box])
    assert api_client(bob).get(f"/api/v1/mailboxes/{box.pk}/messages?folder=inbox").status_code == 200
    assert web_client(bob).get(f"/messages/{box.pk}/archive/").status_code == 200
    listed = AuditEvent.objects.filter(action="mailbox.list", target_id=str(box.pk), actor_id=str(bob.pk))
    assert [(e.details["folder"], e.details["count"]) for e in listed.order_by("seq")] == [("inbox", 1), ("archive", 0)]


def test_a_send_that_fails_at_its_last_write_leaves_nothing(
    trio: tuple[User, User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message, its attachments, copies and search tokens commit together or not at all."""
    alice, bob, _ = trio
    client = api_client(alice)
    # Data keys of objects (not the instance's purpose keys, made once on first use).
    object_keys = DataKey.objects.exclude(pk__in=PurposeKey.objects.values("data_key_id"))
    keys_before = object_keys.count()
    real_record = audit.record

    def failing_record(action: str, **kwargs: Any) -> Any:
        if action == "message.send":  # the last write of the send's transaction
            raise RuntimeError("disk full")
        return real_record(action, **kwargs)

    monkeypatch.setattr(audit, "record", failing_record)
    data = {
        "sender": personal_mailbox(alice).address,
        "to": [personal_mailbox(bob).address],
        "subject": "Objet",
        "attachments": [_file("a.pdf", b"%PDF-1.4 1")],
    }
    assert client.post("/api/v1/messages", data).status_code == 500
    assert_nothing_saved()
    assert not SearchToken.objects.exists()
    assert object_keys.count() == keys_before


def test_first_send_plans_the_hourly_cleanup(transactional_db: None) -> None:
    from django_tasks_db.models import DBTaskResult

    from pli.messaging import tasks

    tasks._scheduled_in_this_process.clear()
    alice, bob = practitioner(), practitioner()
    send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)])
    send(api_client(alice), personal_mailbox(alice), [personal_mailbox(bob)])
    (planned,) = DBTaskResult.objects.filter(task_path="pli.messaging.tasks.cleanup_orphan_blobs")
    assert planned.run_after > planned.enqueued_at + datetime.timedelta(minutes=59)


def test_the_next_cleanup_is_planned_before_this_one_works(
    trio: tuple[User, User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next hourly clean-up was queued only once this one ended (in `finally`). A worker
    killed during a run, or a database lost during one (so that re-queueing failed too, and
    the worker's reconnection loop plans nothing), ended the chain: orphan blobs then stayed
    on the disk until some worker restarted."""
    from django.db import OperationalError
    from django_tasks_db.models import DBTaskResult

    from pli.messaging import tasks

    planned: list[bool] = []
    lost = False
    schedule = tasks.schedule_cleanup
    runs = DBTaskResult.objects.filter(task_path=tasks.cleanup_orphan_blobs.module_path)

    def cleanup(older_than: float | None = None) -> services.CleanupResult:
        nonlocal lost
        planned.append(runs.filter(status="READY").exists())
        lost = True
        raise OperationalError("server closed the connection unexpectedly")

    def schedule_unless_lost(delay: datetime.timedelta = tasks.CLEANUP_INTERVAL) -> bool:
        if lost:
            raise OperationalError("server closed the connection unexpectedly")
        return schedule(delay)

    monkeypatch.setattr(services, "cleanup_orphan_blobs", cleanup)
    monkeypatch.setattr(tasks, "schedule_cleanup", schedule_unless_lost)
    with pytest.raises(OperationalError):
        tasks.cleanup_orphan_blobs.call()
    assert planned == [True]
    assert runs.get(status="READY").run_after > timezone.now() + datetime.timedelta(minutes=59)
