"""A practice at work: a secretary and two GPs sharing an organisational mailbox, each with a
personal one too, writing with a hospital department's shared mailbox in another
organisation. Who read and who answered, unread counts, reply to all, receipts, search."""

from __future__ import annotations

import datetime
import io
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.factories import (
    OrganisationFactory,
    api_client,
    personal_mailbox,
    practitioner,
    shared_mailbox,
    valid_ins,
    web_client,
)
from pli.accounts.models import Mailbox, User
from pli.audit.models import AuditEvent
from pli.messaging import search, services
from pli.messaging.models import Delivery, Folder, Message


@dataclass
class Practice:
    claire: User  # the secretary
    jeanne: User  # a GP
    marc: User  # a GP
    team: Mailbox  # the practice's shared mailbox
    paul: User  # a cardiologist at the hospital
    cardio: Mailbox  # the hospital department's shared mailbox

    def own(self, user: User) -> Mailbox:
        return personal_mailbox(user)


@pytest.fixture
def practice(db: None) -> Practice:
    lilas, hospital = OrganisationFactory(name="Cabinet des Lilas"), OrganisationFactory(name="CHU")
    claire, jeanne, marc = practitioner(lilas), practitioner(lilas), practitioner(lilas)
    paul = practitioner(hospital)
    return Practice(
        claire=claire,
        jeanne=jeanne,
        marc=marc,
        team=shared_mailbox(lilas, [claire, jeanne, marc]),
        paul=paul,
        cardio=shared_mailbox(hospital, [paul], name="Cardiologie"),
    )


def _send(user: User, sender: Mailbox, to: list[Mailbox], cc: Sequence[Mailbox] = (), **extra: Any) -> str:
    data = {
        "sender": sender.address,
        "to": [m.address for m in to],
        "cc": [m.address for m in cc],
        "subject": "Compte rendu",
        "body": "Texte",
        **extra,
    }
    response = api_client(user).post("/api/v1/messages", data)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def _unread(user: User) -> dict[str, int]:
    return {m["name"]: m["unread"] for m in api_client(user).get("/api/v1/mailboxes").json()}


# --- reply to all ---------------------------------------------------------------------------


def test_reply_to_all_leaves_out_the_repliers_own_mailbox_and_closed_ones(practice: Practice) -> None:
    """Jeanne answered the hospital to all from the shared mailbox: her own personal
    mailbox was in the copies (her answer came back to her, unread), and so was a colleague's
    mailbox closed since, which the form then refused as an unknown address."""
    p = practice
    leaver = practitioner(p.team.organisation)
    elsewhere = practitioner()
    message_id = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)], [p.own(leaver), p.own(elsewhere)])
    Mailbox.objects.filter(pk=p.own(leaver).pk).update(is_active=False)
    client = web_client(p.jeanne)
    page = client.get(f"/messages/compose/?reply_to={message_id}&mode=reply_all&mailbox={p.team.pk}")
    initial = page.context["form"].initial
    assert initial["sender"] == p.team.address
    assert initial["to"] == [p.cardio.address]
    assert initial["cc"] == [p.own(elsewhere).address]
    # From her own mailbox, the team stays among the recipients: it sees the answer.
    page = client.get(f"/messages/compose/?reply_to={message_id}&mode=reply_all&mailbox={p.own(p.jeanne).pk}")
    initial = page.context["form"].initial
    assert initial["to"] == [p.cardio.address, p.team.address]
    assert initial["cc"] == [p.own(elsewhere).address]
    # What the page offers is sent as it stands.
    sent = client.post(
        "/messages/compose/",
        {
            "sender": initial["sender"],
            "to": ", ".join(initial["to"]),
            "cc": ", ".join(initial["cc"]),
            "in_reply_to": message_id,
            "subject": initial["subject"],
            "body": "Vu.",
        },
    )
    assert sent.status_code == 303, sent.context["form"].errors if sent.context else sent


def test_reply_to_ones_own_sent_message_leaves_out_mailboxes_closed_since(practice: Practice) -> None:
    """Jeanne wrote to the hospital and to a colleague who has left since: answering her
    own sent letter (to add something) put the closed mailbox back among the recipients, and
    the form refused the send as an unknown address."""
    p = practice
    leaver = practitioner(p.team.organisation)
    message_id = _send(p.jeanne, p.own(p.jeanne), [p.cardio, p.own(leaver)])
    Mailbox.objects.filter(pk=p.own(leaver).pk).update(is_active=False)
    client = web_client(p.jeanne)
    for mode in ("reply", "reply_all"):
        page = client.get(f"/messages/compose/?reply_to={message_id}&mode={mode}")
        initial = page.context["form"].initial
        assert initial["to"] == [p.cardio.address], mode
    sent = client.post(
        "/messages/compose/",
        {
            "sender": initial["sender"],
            "to": ", ".join(initial["to"]),
            "in_reply_to": message_id,
            "subject": initial["subject"],
            "body": "J\u2019ajoute le bilan.",
        },
    )
    assert sent.status_code == 303, sent.context["form"].errors if sent.context else sent


def test_reply_to_ones_own_letter_with_oneself_in_copy_goes_to_its_recipients(practice: Practice) -> None:
    """Jeanne wrote to the hospital with herself in copy: her own mailbox holds the letter
    sent and received, and "Reply" on it was addressed to her alone (the hospital never got
    the answer); "Reply to all" put her own mailbox among the recipients."""
    p = practice
    own = p.own(p.jeanne)
    message_id = _send(p.jeanne, own, [p.cardio], [own])
    client = web_client(p.jeanne)
    for mode in ("reply", "reply_all"):
        initial = (
            client.get(f"/messages/compose/?reply_to={message_id}&mode={mode}&mailbox={own.pk}").context["form"].initial
        )
        assert initial["sender"] == own.address, mode
        assert initial["to"] == [p.cardio.address], mode
        assert initial["cc"] == [], mode
    # Written from the team to the hospital and to herself: answered from the team, the
    # answer goes to the hospital, not back to her own mailbox.
    message_id = _send(p.jeanne, p.team, [p.cardio, own])
    for mode in ("reply", "reply_all"):
        initial = (
            client.get(f"/messages/compose/?reply_to={message_id}&mode={mode}&mailbox={p.team.pk}")
            .context["form"]
            .initial
        )
        assert initial["to"] == [p.cardio.address], mode
    # A colleague answering the team's letter still writes to everyone it went to.
    initial = (
        web_client(p.marc)
        .get(f"/messages/compose/?reply_to={message_id}&mode=reply_all&mailbox={p.team.pk}")
        .context["form"]
        .initial
    )
    assert sorted(initial["to"]) == sorted([p.cardio.address, own.address])


# --- unread and read ------------------------------------------------------------------------


def test_reading_in_the_shared_mailbox_reads_ones_own_copy_too(practice: Practice) -> None:
    """A message to the team and to Jeanne, which she read in the shared mailbox, still
    counted as unread in her own: her own copy is hers alone, and she has read it. Read in
    her own mailbox, it stays unread for the team (decisions.md, 2026-11-30)."""
    p = practice
    first = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)])
    second = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)])
    assert _unread(p.jeanne)[p.own(p.jeanne).name] == 2
    page = web_client(p.jeanne).get(f"/messages/m/{first}/?mailbox={p.team.pk}")
    assert page.status_code == 200
    api = api_client(p.jeanne).get(f"/api/v1/messages/{second}?mailbox={p.team.pk}")
    assert api.status_code == 200
    # The caller's copies as listed are still those of the mailbox asked for.
    assert [c["mailbox"] for c in api.json()["copies"]] == [str(p.team.pk)]
    assert _unread(p.jeanne) == {p.own(p.jeanne).name: 0, p.team.name: 0}
    own_copy = Delivery.objects.get(message_id=first, mailbox=p.own(p.jeanne))
    assert own_copy.read_by == p.jeanne and own_copy.folder == Folder.INBOX
    # Marc reads his colleague's copy nowhere: hers is read by her only.
    third = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)])
    assert web_client(p.marc).get(f"/messages/m/{third}/?mailbox={p.team.pk}").status_code == 200
    assert _unread(p.jeanne) == {p.own(p.jeanne).name: 1, p.team.name: 0}
    # The web pages count as the API does.
    nav = web_client(p.jeanne).get(f"/messages/{p.team.pk}/inbox/").context["mail_nav"]
    assert {e.mailbox.name: e.unread for e in nav.mailboxes} == _unread(p.jeanne)


def test_opening_the_teams_sent_copy_of_a_letter_unread_in_ones_own_inbox(practice: Practice) -> None:
    """Jeanne wrote from the team's mailbox to the team and to herself, then opened the
    letter in the team's sent folder before reading it in her own inbox: a 404, the
    reading's re-check finding none of the opened copies incoming (only her own copy is)."""
    p = practice
    first = _send(p.jeanne, p.team, [p.own(p.jeanne)])
    second = _send(p.jeanne, p.team, [p.own(p.jeanne)])
    assert web_client(p.jeanne).get(f"/messages/m/{first}/?mailbox={p.team.pk}").status_code == 200
    assert api_client(p.jeanne).get(f"/api/v1/messages/{second}?mailbox={p.team.pk}").status_code == 200
    # Read through the team's copy, it is read in her own mailbox too.
    assert Delivery.objects.get(message_id=first, mailbox=p.own(p.jeanne)).read_by == p.jeanne
    assert _unread(p.jeanne)[p.own(p.jeanne).name] == 0


def _queries(action: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured.captured_queries)


def test_reading_ones_own_copy_too_costs_no_extra_query(practice: Practice) -> None:
    """Reading a message held by the team and by oneself marks one's own copy read from the
    copies already loaded: it cost a query more than reading a message held by oneself only,
    and a thread in one's own mailbox loaded the team's readers and answers it never shows."""
    p = practice
    both = [_send(p.paul, p.cardio, [p.team, p.own(p.jeanne)]) for _ in range(2)]
    alone = [_send(p.paul, p.cardio, [p.own(p.jeanne)]) for _ in range(2)]
    client = api_client(p.jeanne)
    client.get("/api/v1/mailboxes")
    # Both mailboxes already used today: a reading records a use at most every 12 hours.
    for mailbox in (p.team, p.own(p.jeanne)):
        services.touch_mailbox(mailbox)
    baseline = _queries(lambda: client.get(f"/api/v1/messages/{alone[0]}"))
    # The team's copy adds who of the team read and answered it (copies[].read_by and
    # .answered_by): a query each, and nothing else.
    team_activity = 2
    assert _queries(lambda: client.get(f"/api/v1/messages/{both[0]}")) == baseline + team_activity
    assert _queries(lambda: client.get(f"/api/v1/messages/{both[1]}?mailbox={p.team.pk}")) == baseline + team_activity
    assert _unread(p.jeanne) == {p.own(p.jeanne).name: 1, p.team.name: 0}
    web = web_client(p.jeanne)
    with CaptureQueriesContext(connection) as captured:
        assert web.get(f"/messages/m/{alone[1]}/").status_code == 200
    reads = " ".join(q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT"))
    assert "pli_reading" not in reads and "pli_answer" not in reads


# --- who answered ---------------------------------------------------------------------------


def test_an_answer_from_ones_own_mailbox_shows_in_the_shared_one(practice: Practice) -> None:
    """Jeanne answered from her own mailbox a letter the hospital sent to her and to the
    team: the team's copy did not say so, and Claire answered the hospital a second time."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)])
    _send(p.jeanne, p.own(p.jeanne), [p.cardio], in_reply_to=message_id)
    team_copy = Delivery.objects.get(message_id=message_id, mailbox=p.team)
    assert team_copy.answered_by == p.jeanne and team_copy.answered_at is not None
    html = web_client(p.claire).get(f"/messages/m/{message_id}/?mailbox={p.team.pk}").content.decode()
    assert "répondu par" in html and p.jeanne.display_name in html
    inbox = web_client(p.claire).get(f"/messages/{p.team.pk}/inbox/").content.decode()
    assert "répondu" in inbox
    # Reading is still per mailbox: her answer did not mark the team's copy read.
    assert team_copy.read_at is None


def test_the_list_names_the_colleague_who_answered(practice: Practice) -> None:
    """The team's inbox said « répondu » on a letter: Marc could not tell, without opening
    it, whether the secretary had taken it in hand or a colleague had. The list names who
    answered first; to the one who answered, plain « répondu ». Searches list the same."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team], subject="Demande de RDV")
    _send(p.claire, p.team, [p.cardio], in_reply_to=message_id)
    _send(p.jeanne, p.own(p.jeanne), [p.cardio], in_reply_to=message_id)

    def row(user: User, url: str) -> str:
        html = web_client(user).get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
        start = html.index('class="mail-row')
        return html[start : html.index("</li>", start)]

    inbox = f"/messages/{p.team.pk}/inbox/"
    assert f"répondu par {p.claire.display_name}" in row(p.marc, inbox)
    assert f"répondu par {p.claire.display_name}" in row(p.jeanne, inbox)
    own = row(p.claire, inbox)
    assert "répondu" in own and "répondu par" not in own
    search = web_client(p.marc).post(f"/messages/{p.team.pk}/search/", {"q": "RDV"})
    assert search.status_code in (200, 302, 303), search.status_code
    found = web_client(p.marc).get(search["Location"]) if search.status_code != 200 else search
    html = found.content.decode()
    assert "Demande de RDV" in html and f"répondu par {p.claire.display_name}" in html


def test_two_members_who_answer_are_both_shown(practice: Practice) -> None:
    """Claire and Marc answered the same letter (at once, each unaware of the other): the
    team saw one name only, the last, and the time of the last answer."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    _send(p.claire, p.team, [p.cardio], in_reply_to=message_id)
    first = Delivery.objects.get(message_id=message_id, mailbox=p.team).answered_at
    _send(p.marc, p.own(p.marc), [p.cardio], in_reply_to=message_id)
    copy = Delivery.objects.get(message_id=message_id, mailbox=p.team)
    # The sender's receipt keeps the first answer's time, and who gave it.
    assert copy.answered_at == first and copy.answered_by == p.claire
    html = web_client(p.jeanne).get(f"/messages/m/{message_id}/?mailbox={p.team.pk}").content.decode()
    team_line = html[html.index('class="mail-team') :]
    team_line = team_line[: team_line.index("</p>")]
    assert "répondu par" in team_line
    assert p.claire.display_name in team_line and p.marc.display_name in team_line


def test_the_team_sees_which_member_wrote_from_the_shared_mailbox(practice: Practice) -> None:
    """Claire wrote to the hospital from the team's mailbox: Jeanne, reading the team's sent
    letter, saw only « Secrétariat » and could not tell whom to ask about it. The team sees
    who wrote it; the hospital, outside the team, still sees the mailbox only."""
    p = practice
    message_id = _send(p.claire, p.team, [p.cardio])
    html = web_client(p.jeanne).get(f"/messages/m/{message_id}/?mailbox={p.team.pk}").content.decode()
    head = html[html.index('class="mail-from') :]
    head = head[: head.index("</p>")]
    assert "envoyé par" in head and p.claire.display_name in head
    received = web_client(p.paul).get(f"/messages/m/{message_id}/?mailbox={p.cardio.pk}").content.decode()
    assert "envoyé par" not in received and p.claire.display_name not in received


def test_a_shared_mailbox_is_labelled_in_agreement_with_any_name(practice: Practice) -> None:
    """The badge read « partagée » after the mailbox's name: « Secrétariat partagée », a
    heading read aloud as such on every page of the secretary's day. It names the mailbox
    (« boîte partagée »), whatever the gender of the name the organisation chose."""
    p = practice
    html = web_client(p.claire).get(f"/messages/{p.team.pk}/inbox/").content.decode()
    heading = html[html.index(f"{p.team.name} <span") :]
    assert heading[: heading.index("</h2>")].endswith(">boîte partagée</span>")
    profile = web_client(p.claire).get("/account/").content.decode()
    assert f'{p.team.name} <span class="badge">boîte partagée</span>' in profile


def test_who_read_and_answered_stays_once_a_member_has_left(practice: Practice) -> None:
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    assert web_client(p.marc).get(f"/messages/m/{message_id}/?mailbox={p.team.pk}").status_code == 200
    _send(p.marc, p.team, [p.cardio], in_reply_to=message_id)
    from pli.accounts.models import Membership
    from pli.accounts.services import remove_member

    remove_member(Membership.objects.get(user=p.marc, organisation=p.team.organisation))
    html = web_client(p.claire).get(f"/messages/m/{message_id}/?mailbox={p.team.pk}").content.decode()
    team_line = html[html.index('class="mail-team') :]
    assert "lu par" in team_line and "répondu par" in team_line and p.marc.display_name in team_line


def test_an_answer_while_a_colleague_deletes_the_teams_copy_is_sent(
    transactional_db: None, practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jeanne answered from her own mailbox a letter sent to her and to the team while Claire
    deleted the team's copy for good: the answer was recorded on a copy that no longer
    existed, and the send failed with a 500 (the foreign key of who answered)."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)])
    services.move_message(p.claire, message_id, Folder.TRASH, mailbox_id=p.team.pk)
    answered_read, deleted = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def claire_deletes() -> None:
        try:
            answered_read.wait(10)
            services.delete_message(p.claire, message_id, mailbox_id=p.team.pk)
        except BaseException as exc:
            failures.append(exc)
        finally:
            deleted.set()
            connection.close()

    real = services._answered_copies

    def answered_copies(author: User, parent: Message) -> list[int]:
        found = real(author, parent)
        answered_read.set()
        # Claire's delete commits now, unless Jeanne's send holds what it answers (then
        # it waits for the send).
        deleted.wait(2)
        return found

    monkeypatch.setattr(services, "_answered_copies", answered_copies)
    claire = threading.Thread(target=claire_deletes)
    claire.start()
    client = api_client(p.jeanne)
    client.raise_request_exception = False
    data = {"sender": p.own(p.jeanne).address, "to": [p.cardio.address], "subject": "RE", "body": "Vu."}
    response = client.post("/api/v1/messages", {**data, "in_reply_to": message_id})
    claire.join()
    assert response.status_code == 201, response.content
    assert failures == []
    own_copy = Delivery.objects.get(message_id=message_id, mailbox=p.own(p.jeanne))
    assert own_copy.answered_by == p.jeanne
    assert not Delivery.objects.filter(message_id=message_id, mailbox=p.team).exists()


def _after_reading(
    monkeypatch: pytest.MonkeyPatch, interleaved: Callable[[], object], reader: str = "visible_copies"
) -> None:
    """Run ``interleaved`` (a colleague's request, committed) once, right after the next
    service call has read what ``reader`` returns (its copies of the message, by default),
    before it writes anything."""
    real, pending = getattr(services, reader), [interleaved]

    def read(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        if pending:
            pending.pop()()
        return found

    monkeypatch.setattr(services, reader, read)


def test_a_delete_for_good_spares_a_copy_a_colleague_took_out_of_the_trash(
    transactional_db: None, practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claire deleted for good a letter in the team's trash while Marc moved it to the
    archive: the letter Marc had just filed was gone (the delete had seen it in the trash)."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    services.move_message(p.claire, message_id, Folder.TRASH, mailbox_id=p.team.pk)
    _after_reading(monkeypatch, lambda: services.move_message(p.marc, message_id, Folder.ARCHIVE, mailbox_id=p.team.pk))
    with pytest.raises(services.NotInTrash):
        services.delete_message(p.claire, message_id, mailbox_id=p.team.pk)
    assert Delivery.objects.get(message_id=message_id, mailbox=p.team).folder == Folder.ARCHIVE
    assert not AuditEvent.objects.filter(action__in=["message.delete", "message.shred"]).exists()


def test_a_move_after_a_colleague_deleted_the_copy_for_good_is_not_found(
    transactional_db: None, practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marc filed a letter from the team's trash while Claire deleted it for good: he was
    told it was archived, and the trail recorded a move after its deletion."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    services.move_message(p.claire, message_id, Folder.TRASH, mailbox_id=p.team.pk)
    _after_reading(monkeypatch, lambda: services.delete_message(p.claire, message_id, mailbox_id=p.team.pk))
    with pytest.raises(services.NotVisible):
        services.move_message(p.marc, message_id, Folder.ARCHIVE, mailbox_id=p.team.pk)
    assert not AuditEvent.objects.filter(action="message.move", actor_id=str(p.marc.pk)).exists()


def test_a_move_files_the_copy_where_asked_whatever_a_colleague_did_meanwhile(
    transactional_db: None, practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marc put back into the inbox a letter that Claire took out of the archive meanwhile:
    the move, seeing it already in the inbox, left it where Claire had put it."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    _after_reading(
        monkeypatch, lambda: services.move_message(p.claire, message_id, Folder.ARCHIVE, mailbox_id=p.team.pk)
    )
    copies = services.move_message(p.marc, message_id, Folder.INBOX, mailbox_id=p.team.pk)
    assert [c.folder for c in copies] == [Folder.INBOX]
    assert Delivery.objects.get(message_id=message_id, mailbox=p.team).folder == Folder.INBOX


@pytest.mark.parametrize(
    ("page", "reader"),
    [
        ("/messages/m/{id}/?mailbox={mailbox}", "visible_copies"),
        ("/messages/m/{id}/?mailbox={mailbox}", "message_recipients_for"),
        ("/api/v1/messages/{id}?mailbox={mailbox}", "visible_copies"),
    ],
)
def test_opening_a_copy_a_colleague_deletes_for_good_is_not_found(
    transactional_db: None, practice: Practice, monkeypatch: pytest.MonkeyPatch, page: str, reader: str
) -> None:
    """Marc opened a letter in the team's trash while Claire deleted it for good: the page
    failed with a 500, either finding no copy left to show or recording his reading on a
    copy that no longer existed (the foreign key of who read)."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    services.move_message(p.claire, message_id, Folder.TRASH, mailbox_id=p.team.pk)
    _after_reading(monkeypatch, lambda: services.delete_message(p.claire, message_id, mailbox_id=p.team.pk), reader)
    client = api_client(p.marc) if page.startswith("/api/") else web_client(p.marc)
    client.raise_request_exception = False
    response = client.get(page.format(id=message_id, mailbox=p.team.pk))
    assert response.status_code == 404
    assert not Delivery.objects.filter(message_id=message_id, mailbox=p.team).exists()
    assert not AuditEvent.objects.filter(action="message.read").exists()


# --- receipts -------------------------------------------------------------------------------


def test_the_sender_keeps_recipients_and_receipts_once_a_recipient_deletes(practice: Practice) -> None:
    """Jeanne read the hospital's letter, then deleted it for good: the hospital's sent copy
    lost her from its "Cc" line and her receipt with it, as if she had never received it."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team], [p.own(p.jeanne)])
    client = api_client(p.jeanne)
    own = p.own(p.jeanne).pk
    assert client.get(f"/api/v1/messages/{message_id}?mailbox={own}").status_code == 200
    moved = client.post(
        f"/api/v1/messages/{message_id}/move", {"folder": "trash", "mailbox": str(own)}, content_type="application/json"
    )
    assert moved.status_code == 200
    assert client.delete(f"/api/v1/messages/{message_id}?mailbox={own}").status_code == 204
    assert client.get(f"/api/v1/messages/{message_id}?mailbox={own}").status_code == 404
    seen = api_client(p.paul).get(f"/api/v1/messages/{message_id}").json()
    assert seen["to"] == [p.team.address] and seen["cc"] == [p.own(p.jeanne).address]
    receipts = {r["address"]: r for r in seen["receipts"]}
    assert receipts[p.own(p.jeanne).address]["read_at"] is not None
    assert receipts[p.team.address]["read_at"] is None
    # Recipients in the order of the message: "to" first, then "cc".
    assert [r["role"] for r in seen["receipts"]] == ["to", "cc"]
    html = web_client(p.paul).get(f"/messages/m/{message_id}/?mailbox={p.cardio.pk}").content.decode()
    assert html.count('class="receipt-row"') == 2 and p.own(p.jeanne).address in html
    # The team still sees her among the recipients too.
    html = web_client(p.claire).get(f"/messages/m/{message_id}/?mailbox={p.team.pk}").content.decode()
    assert p.own(p.jeanne).address in html
    # Once the last copy goes, nothing is left of the message, receipts included.
    for user, box in ((p.paul, p.cardio), (p.claire, p.team)):
        services.move_message(user, message_id, Folder.TRASH, mailbox_id=box.pk)
        services.delete_message(user, message_id, mailbox_id=box.pk)
    assert not services.message_recipients_for([message_id])


# --- search ---------------------------------------------------------------------------------


def _found(box: Mailbox, **query: Any) -> list[str]:
    page = services.folder_page(box, None, query=services.SearchQuery(**query))
    return [str(c.message_id) for c in page.items]


def _patient(family: str, given: str, ins: str = "") -> dict[str, str]:
    return {
        "patient_ins": ins,
        "patient_family_name": family,
        "patient_given_names": given,
        "patient_birth_date": "1958-04-02",
        "patient_sex": "M",
    }


def test_search_finds_compound_names_however_they_are_typed(practice: Practice) -> None:
    """N'Diaye was found as "N'Diaye" or "n diaye", never as "NDIAYE", the way many
    systems write it; nor Le Gall as "LEGALL", nor Jean-Pierre as "Jeanpierre"."""
    p = practice
    ndiaye = _send(p.paul, p.cardio, [p.team], **_patient("N'Diaye", "Jean-Pierre", valid_ins("1580469999001")))
    legall = _send(p.paul, p.cardio, [p.team], subject="Bilan", **_patient("Le Gall", "Yann"))
    for typed in ("N'Diaye", "n\u2019diaye", "NDIAYE", "ndiaye", "Jean-Pierre", "jean pierre", "JEANPIERRE"):
        assert _found(p.team, text=typed) == [ndiaye], typed
    for typed in ("Le Gall", "LEGALL", "le-gall", "legall yann"):
        assert _found(p.team, text=typed) == [legall], typed
    # A married woman's name as French letters write it: only the birth name is known.
    assert _found(p.team, text="née Le Gall") == [legall]
    assert _found(p.team, text="N'Diaye 1 58 04 69 999 001") == [ndiaye]
    assert _found(p.team, text="Bilan") == [legall]


def test_search_finds_a_patient_named_as_letters_name_her(practice: Practice) -> None:
    """Only birth names are known, yet « Mme Dupont née Le Gall » or « Le Gall épouse
    Dupont », as a letter names her, found nothing: the name in use (before « née », after
    « épouse ») and the title were required words. They are left out of the search."""
    p = practice
    legall = _send(p.paul, p.cardio, [p.team], subject="Bilan", **_patient("Le Gall", "Anne"))
    for typed in (
        "Mme Dupont née Le Gall",
        "Madame Anne DUPONT n\u00e9e LE GALL",
        "Dupont-Martin née Le Gall",
        "Le Gall épouse Dupont",
        "Mme LE GALL ép. DUPONT",
        "Anne Le Gall epoux Dupont",
        "Le Gall née",
    ):
        assert _found(p.team, text=typed) == [legall], typed
    # The birth name is still required, and so is anything typed besides the names.
    assert _found(p.team, text="Mme Dupont née Martin") == []
    assert _found(p.team, text="scanner Le Gall épouse Dupont") == []
    assert _found(p.team, text="bilan Le Gall épouse Dupont") == [legall]
    assert _found(p.team, text="Mme Le Gall bilan") == [legall]


@pytest.mark.parametrize("typed", ["a", "l'", "-", "à", "' -"])
def test_a_search_with_no_word_to_look_for_finds_nothing(practice: Practice, typed: str) -> None:
    """ "a", an apostrophe or a dash searched for gave back the whole mailbox: words of one
    letter are not indexed, and no word left meant no condition at all."""
    p = practice
    _send(p.paul, p.cardio, [p.team], subject="À voir")
    assert _found(p.team, text=typed) == []
    response = api_client(p.claire).get(f"/api/v1/mailboxes/{p.team.pk}/messages", {"q": typed})
    assert response.status_code == 200 and response.json()["results"] == []
    page = web_client(p.claire).post(f"/messages/{p.team.pk}/search/", {"q": typed})
    assert page.status_code == 400
    assert 'aria-invalid="true"' in page.content.decode() and "au moins" in page.content.decode()


def test_search_by_sender_ignores_accents_case_and_dashes(practice: Practice) -> None:
    """On SQLite a name in capitals with an accent ("HÔPITAL") or typed without one did not
    match the sender "Hôpital Édouard-Herriot"."""
    p = practice
    Mailbox.objects.filter(pk=p.cardio.pk).update(name="Hôpital Édouard-Herriot — Cardiologie")
    message_id = _send(p.paul, p.cardio, [p.team])
    _send(p.jeanne, p.own(p.jeanne), [p.team])
    for typed in ("Hôpital", "HÔPITAL", "hopital", "édouard herriot", "EDOUARD-HERRIOT", "cardiologie"):
        assert _found(p.team, sender=typed) == [message_id], typed
    assert _found(p.team, sender="hopital nord") == []
    # With the other criteria: the same search, the same answer.
    today = datetime.date.today()
    assert _found(p.team, sender="hopital", date_from=today, date_to=today) == [message_id]


def test_search_by_sender_finds_compound_names_typed_as_one_word(practice: Practice) -> None:
    """A patient's N'Diaye is found as NDIAYE, as many systems write it, but a sender's was
    not: « ndiaye » or « legall » as the sender found nothing from « Dr Awa N'Diaye » or
    « Yann Le Gall »."""
    p = practice
    Mailbox.objects.filter(pk=p.cardio.pk).update(name="Dr Awa N\u2019Diaye")
    Mailbox.objects.filter(pk=p.own(p.marc).pk).update(name="Yann Le Gall")
    from_ndiaye = _send(p.paul, p.cardio, [p.team])
    from_legall = _send(p.marc, p.own(p.marc), [p.team])
    for typed in ("NDIAYE", "awa ndiaye", "n'diaye"):
        assert _found(p.team, sender=typed) == [from_ndiaye], typed
    for typed in ("LEGALL", "yann legall", "Le Gall"):
        assert _found(p.team, sender=typed) == [from_legall], typed


def test_search_never_reaches_another_mailbox_nor_the_trash(practice: Practice) -> None:
    p = practice
    word = "Coronarographie"
    to_team = _send(p.paul, p.cardio, [p.team], subject=word)
    to_jeanne = _send(p.paul, p.cardio, [p.own(p.jeanne)], subject=word)
    assert _found(p.team, text=word) == [to_team]
    assert _found(p.own(p.jeanne), text=word) == [to_jeanne]
    services.move_message(p.claire, to_team, Folder.TRASH, mailbox_id=p.team.pk)
    assert _found(p.team, text=word) == []
    assert search.query_tokens(word)  # the word itself is searchable


# --- forward --------------------------------------------------------------------------------


def test_a_forward_keeps_the_files_the_patient_and_every_recipient(practice: Practice) -> None:
    """Forwarded from the shared mailbox, the hospital's letter kept its file (once) and the
    patient, but its header named only the "To" recipients: the GP in copy was left out."""
    p = practice
    pdf = io.BytesIO(b"%PDF-1.4 compte rendu")
    pdf.name = "cr.pdf"
    message_id = _send(p.paul, p.cardio, [p.team], [p.own(p.jeanne)], attachments=[pdf], **_patient("Le Gall", "Yann"))
    client = web_client(p.claire)
    page = client.get(f"/messages/compose/?forward={message_id}&mailbox={p.team.pk}")
    initial = page.context["form"].initial
    assert f"Cc\u00a0: {p.own(p.jeanne).name} <{p.own(p.jeanne).address}>" in initial["body"]
    assert initial["patient_family_name"] == "Le Gall"
    sent = client.post(
        "/messages/compose/",
        {
            "sender": p.team.address,
            "to": p.own(p.marc).address,
            "subject": initial["subject"],
            "body": initial["body"],
            "forward_of": message_id,
            "forward_attachments": initial["forward_attachments"],
            **{name: initial[name] for name in initial if name.startswith("patient_")},
        },
    )
    assert sent.status_code == 303
    forwarded = Message.objects.exclude(pk=message_id).get()
    assert [a.name for a in forwarded.attachments.all()] == ["cr.pdf"]
    assert forwarded.patient["family_name"] == "Le Gall"
    assert forwarded.thread_id == Message.objects.get(pk=message_id).thread_id
    # A forward is not an answer: the letter stays unanswered, and the API says it answers nothing.
    assert Delivery.objects.get(message_id=message_id, mailbox=p.team).answered_at is None
    assert api_client(p.marc).get(f"/api/v1/messages/{forwarded.pk}").json()["in_reply_to"] is None


def test_answers_given_before_the_answer_table_are_carried_into_it(practice: Practice, transactional_db: None) -> None:
    """Migration 0003 fills pli_answer from the copies answered until then."""
    from django.db.migrations.executor import MigrationExecutor

    from pli.messaging.models import Answer

    p = practice
    letter = _send(p.paul, p.cardio, [p.team])
    _send(p.jeanne, p.team, [p.cardio], in_reply_to=letter)
    answered = set(Delivery.objects.filter(answered_by__isnull=False).values_list("pk", "answered_by", "answered_at"))
    assert answered and set(Answer.objects.values_list("delivery", "user", "answered_at")) == answered
    MigrationExecutor(connection).migrate([("messaging", "0002_message_external_sender")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert set(Answer.objects.values_list("delivery", "user", "answered_at")) == answered


def test_an_empty_mailbox_parameter_is_refused_not_taken_as_every_mailbox(practice: Practice) -> None:
    """``?mailbox=`` (a variable left empty) read the message in every mailbox, the team's
    included, where the schema takes a mailbox id only, and the move refuses an empty one."""
    p = practice
    message = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)])
    client = api_client(p.jeanne)
    for response in (
        client.get(f"/api/v1/messages/{message}?mailbox="),
        client.delete(f"/api/v1/messages/{message}?mailbox="),
    ):
        assert response.status_code == 400 and set(response.json()) == {"mailbox"}
    assert _unread(p.jeanne) == {p.own(p.jeanne).name: 1, p.team.name: 1}


def test_a_letter_arriving_as_an_admin_edits_the_shared_mailbox_is_delivered(
    transactional_db: None, practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hospital's letter to the practice's shared mailbox committed just as an
    administrator renamed the mailbox or changed its members: on PostgreSQL the send held
    the audit trail's head and, at COMMIT, checked its copy's mailbox (a key-share lock),
    while the edit held the mailbox's row (FOR UPDATE) and waited for the head: one of
    them failed with a 500."""
    from interleave import while_committing
    from pli.accounts import services as accounts
    from pli.accounts.models import Membership

    p = practice
    admin = practitioner(p.team.organisation, role=Membership.Role.ADMIN)
    edit = partial(accounts.update_shared_mailbox, p.team, name="Accueil", members=[p.claire, p.marc], actor=admin)
    join = while_committing(monkeypatch, "message.send", edit, "mailbox.members_changed")
    client = api_client(p.paul)
    client.raise_request_exception = False
    response = client.post(
        "/api/v1/messages", {"sender": p.cardio.address, "to": [p.team.address], "subject": "CR", "body": "Texte"}
    )
    assert join() == []
    assert response.status_code == 201, response.content
    assert Delivery.objects.filter(mailbox=p.team).count() == 1
    assert Mailbox.objects.get(pk=p.team.pk).name == "Accueil"


def test_a_reply_locks_the_copies_it_answers_in_key_order(practice: Practice) -> None:
    """A reply locks the copies it answers (her own and the team's) as reading and deleting
    lock them, by primary key: in another order, on PostgreSQL, a reply and the same copies
    being read or deleted at that moment could each hold one and wait for the other (a
    deadlock, one of them a 500). Checked on the statement, the interleaving being too
    narrow to reproduce at will."""
    p = practice
    first = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)])
    with CaptureQueriesContext(connection) as queries:
        _send(p.jeanne, p.own(p.jeanne), [p.cardio], in_reply_to=first)
    locking = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "pli_delivery"."id"') and '"pli_delivery"."role" IN' in q["sql"]
    ]
    assert len(locking) == 1
    # The primary key, by name or as the first (and only) column selected.
    assert re.search(
        r'SELECT "pli_delivery"\."id"( AS "pk")? FROM .* ORDER BY ("pli_delivery"\."id"|1) ASC', locking[0]
    )
    assert Delivery.objects.filter(message_id=first, answered_by=p.jeanne).count() == 2


def test_deleting_for_good_from_the_team_trash_says_it_is_for_the_whole_team(db: None, practice: Practice) -> None:
    """« Supprimer définitivement » in the shared mailbox's trash deletes the letter for every
    member, but was asked as if for oneself."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    services.move_message(p.claire, message_id, Folder.TRASH, mailbox_id=p.team.pk)
    client = web_client(p.claire)
    thread = client.get(f"/messages/m/{message_id}/?mailbox={p.team.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    team_wide = f"pour toute l\u2019équipe de {p.team.name}"
    assert team_wide in thread
    # Without the page's script, the question is asked on a page of its own: the same.
    asked = client.post(f"/messages/m/{message_id}/delete/", {"mailbox": p.team.pk}, HTTP_ACCEPT_LANGUAGE="fr")
    assert asked.status_code == 200 and team_wide in asked.content.decode()
    assert Delivery.objects.filter(message_id=message_id, mailbox=p.team).exists()
    # In one's own mailbox it is one's own copy: no team named.
    own = _send(p.paul, p.cardio, [p.own(p.jeanne)])
    services.move_message(p.jeanne, own, Folder.TRASH, mailbox_id=p.own(p.jeanne).pk)
    mine = web_client(p.jeanne).get(f"/messages/m/{own}/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "pour toute l\u2019équipe" not in mine and "Supprimer définitivement ce message" in mine


def test_the_api_shows_the_team_who_read_and_who_answered(practice: Practice) -> None:
    """What the shared mailbox's page shows its team, an integrator reads too: each member
    who opened the letter and each who answered it, first first; nothing for one's own copy."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team, p.own(p.jeanne)])
    team = str(p.team.pk)
    assert api_client(p.claire).get(f"/api/v1/messages/{message_id}?mailbox={team}").status_code == 200
    _send(p.jeanne, p.team, [p.cardio], subject="RE : Compte rendu", in_reply_to=message_id)
    seen = api_client(p.marc).get(f"/api/v1/messages/{message_id}?mailbox={team}").json()
    (copy,) = seen["copies"]
    assert copy["mailbox"] == team
    assert [r["name"] for r in copy["read_by"]] == [p.claire.display_name, p.marc.display_name]
    assert [a["name"] for a in copy["answered_by"]] == [p.jeanne.display_name]
    assert all(r["at"] for r in copy["read_by"] + copy["answered_by"])
    own = api_client(p.jeanne).get(f"/api/v1/messages/{message_id}?mailbox={p.own(p.jeanne).pk}").json()
    assert own["copies"][0]["read_by"] == [] and own["copies"][0]["answered_by"] == []


def test_a_letter_opened_as_a_colleague_marks_it_unread_is_read(
    db: None, practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marc opened a letter of the team's inbox just as Jeanne marked it unread: his opening
    went by the copy as read before her click (read: nothing to do), and the letter he had
    just read waited for the team as unread."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    services.open_message(p.claire, message_id, mailbox_id=p.team.pk)
    _after_reading(monkeypatch, lambda: services.mark_unread(p.jeanne, message_id, mailbox_id=p.team.pk))
    services.open_message(p.marc, message_id, mailbox_id=p.team.pk)
    copy = Delivery.objects.get(message_id=message_id, mailbox=p.team)
    assert copy.read_at is not None and copy.read_by == p.marc
    assert _unread(p.marc)[p.team.name] == 0


def test_the_reply_form_says_who_in_the_team_already_answered(practice: Practice) -> None:
    """Paul's colleague and the secretary both answered « Demande de RDV urgent », one for
    Thursday, one for Friday: nothing on the reply form said it had been answered."""
    p = practice
    message_id = _send(p.paul, p.cardio, [p.team])
    reply = f"/messages/compose/?reply_to={message_id}&mailbox={p.team.pk}"
    page = web_client(p.claire).get(reply, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "a déjà répondu" not in page
    assert "<h1>Répondre</h1>" in page
    to_all = web_client(p.claire).get(reply + "&mode=reply_all", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "<h1>Répondre à tous</h1>" in to_all
    _send(p.jeanne, p.team, [p.cardio], in_reply_to=message_id)
    page = web_client(p.claire).get(reply, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    answered = Delivery.objects.get(message_id=message_id, mailbox=p.team).answers.get()
    at = timezone.localtime(answered.answered_at)
    said = f"{p.jeanne.display_name} a déjà répondu à ce message le {at:%d/%m/%Y} à {at:%H:%M}."
    assert said in page
    # Not to Jeanne herself, who knows; nor on a forward, which is no answer.
    assert "a déjà répondu" not in web_client(p.jeanne).get(reply).content.decode()
    forward = web_client(p.claire).get(f"/messages/compose/?forward={message_id}", HTTP_ACCEPT_LANGUAGE="fr")
    assert "a déjà répondu" not in forward.content.decode() and "<h1>Transférer</h1>" in forward.content.decode()


def _flashes(response: Any) -> list[str]:
    assert response.status_code == 302, response.status_code
    return [str(m) for m in response.client.get(response["Location"]).context["messages"]]


def test_filing_from_a_page_a_colleague_has_overtaken_says_so(practice: Practice) -> None:
    """Jeanne archived the letter; Claire, on the page she had open, put it in the trash:
    « Déplacé vers : Corbeille », and the archived letter was to be deleted in 30 days
    without either knowing."""
    p = practice
    first, second = _send(p.paul, p.cardio, [p.team]), _send(p.paul, p.cardio, [p.team])
    claire = web_client(p.claire)
    claire.defaults["HTTP_ACCEPT_LANGUAGE"] = "fr"
    page = claire.get(f"/messages/m/{first}/?mailbox={p.team.pk}").content.decode()
    assert '<input type="hidden" name="shown" value="inbox">' in page
    services.move_message(p.jeanne, first, Folder.ARCHIVE, mailbox_id=p.team.pk)
    said = _flashes(
        claire.post(f"/messages/m/{first}/move/", {"folder": "trash", "mailbox": str(p.team.pk), "shown": "inbox"})
    )
    assert (
        "Entre-temps, quelqu\u2019un avait déplacé ce message vers «\u00a0Archives\u00a0»\u00a0: il a été déplacé "
        "quand même\u00a0; «\u00a0Annuler\u00a0» l\u2019y remet."
    ) in said
    assert Delivery.objects.get(message_id=first, mailbox=p.team).folder == Folder.TRASH
    services.move_message(p.jeanne, first, Folder.INBOX, mailbox_id=p.team.pk)
    # From the list: the ticked letters, one binned by Jeanne since.
    services.move_message(p.jeanne, second, Folder.TRASH, mailbox_id=p.team.pk)
    listed = claire.get(f"/messages/{p.team.pk}/inbox/").content.decode()
    assert '<input type="hidden" name="shown" value="inbox">' in listed
    ticked = {"action": "archive", "message": [first, second], "shown": "inbox"}
    response = claire.post(f"/messages/{p.team.pk}/inbox/selection/", ticked)
    assert (
        "1 de ces messages avait été déplacé ailleurs par quelqu\u2019un entre-temps\u00a0: il a été déplacé quand "
        "même\u00a0; «\u00a0Annuler\u00a0» l\u2019y remet."
    ) in _flashes(response)
    # Nothing of the kind when the page was current.
    quiet = _flashes(
        claire.post(f"/messages/m/{first}/move/", {"folder": "trash", "mailbox": str(p.team.pk), "shown": "archive"})
    )
    assert not any("Entre-temps" in text for text in quiet)
