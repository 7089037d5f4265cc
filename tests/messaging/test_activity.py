"""What a page left open asks every minute (/messages/activity/): the navigation's unread
counts and the letters arrived in the inbox being shown, without keeping the session alive."""

from __future__ import annotations

import datetime
import re
import time
from typing import Any

import pytest
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from messaging.factories import (
    api_client,
    enrol_second_factor,
    personal_mailbox,
    practitioner,
    shared_mailbox,
    web_client,
)
from pli.accounts.middleware import SIGNED_IN_AT
from pli.accounts.models import Mailbox, User
from pli.audit.models import AuditEvent

ACTIVITY = "/messages/activity/"
STAY = "/account/session/stay/"


def _send(sender: User, to: Mailbox, subject: str = "Objet", *, sender_box: Mailbox | None = None) -> None:
    data = {
        "sender": (sender_box or personal_mailbox(sender)).address,
        "to": [to.address],
        "subject": subject,
        "body": "Texte",
    }
    response = api_client(sender).post("/api/v1/messages", data)
    assert response.status_code == 201, response.content


def _shown_at(client: Client, mailbox: Mailbox) -> str:
    page = client.get(f"/messages/{mailbox.pk}/inbox/").content.decode()
    found = re.search(r'data-arrivals-mailbox="([^"]+)" data-arrivals-after="(\d+)"', page)
    assert found is not None and found.group(1) == str(mailbox.pk)
    return found.group(2)


@pytest.fixture
def gp(db: None) -> User:
    return practitioner()


def test_the_counts_of_every_mailbox_of_the_caller(gp: User) -> None:
    colleague = practitioner(gp.memberships.get().organisation)
    team = shared_mailbox(gp.memberships.get().organisation, [gp])
    for n in range(2):
        _send(colleague, personal_mailbox(gp), f"Lettre {n}")
    _send(colleague, team)
    answer = web_client(gp).get(ACTIVITY)
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["unread"] == 3
    assert {(entry["id"], entry["unread"]) for entry in body["mailboxes"]} == {
        (str(personal_mailbox(gp).pk), 2),
        (str(team.pk), 1),
    }
    assert "arrived" not in body


def test_letters_arrived_since_the_inbox_was_shown(gp: User) -> None:
    colleague = practitioner()
    box = personal_mailbox(gp)
    _send(colleague, box, "Avant")
    client = web_client(gp)
    after = _shown_at(client, box)
    assert client.get(ACTIVITY, {"mailbox": box.pk, "after": after}).json()["arrived"] == 0
    _send(colleague, box, "Après 1")
    _send(colleague, box, "Après 2")
    # Her own letter, filed in her sent folder with the next number, is no arrival.
    _send(gp, personal_mailbox(colleague), "Envoyée")
    assert client.get(ACTIVITY, {"mailbox": box.pk, "after": after}).json()["arrived"] == 2


def test_the_inbox_page_carries_the_texts_for_the_notice(gp: User) -> None:
    client = web_client(gp)
    page = client.get(f"/messages/{personal_mailbox(gp).pk}/inbox/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'data-arrivals-one="%(count)s nouveau message est arrivé."' in page
    assert 'data-arrivals-many="%(count)s nouveaux messages sont arrivés."' in page
    assert 'data-activity-url="/messages/activity/"' in page
    # Neither an older page of the inbox nor another folder: nothing new is listed there.
    archive = client.get(f"/messages/{personal_mailbox(gp).pk}/archive/").content.decode()
    assert "data-arrivals-mailbox" not in archive


def test_asking_is_not_activity(gp: User) -> None:
    """A tab left open all day must not keep its session alive: the poll does not push the
    session's idle expiry back, does not show as the session's last activity, and is not a
    use of the mailbox nor a read."""
    client = web_client(gp)
    client.get("/messages/")  # the last real request
    key = client.session.session_key
    expiry = Session.objects.get(session_key=key).expire_date
    UserSession.objects.filter(session_key=key).update(last_seen_at="2026-01-01T00:00:00Z")
    seen = UserSession.objects.get(session_key=key).last_seen_at
    events = AuditEvent.objects.count()
    box = personal_mailbox(gp)
    used = Mailbox.objects.get(pk=box.pk).last_used_at
    answer = client.get(ACTIVITY, {"mailbox": box.pk, "after": 0})
    assert answer.status_code == 200
    assert settings.SESSION_COOKIE_NAME not in answer.cookies  # no new expiry sent to the browser
    assert Session.objects.get(session_key=key).expire_date == expiry
    assert UserSession.objects.get(session_key=key).last_seen_at == seen
    assert AuditEvent.objects.count() == events
    assert Mailbox.objects.get(pk=box.pk).last_used_at == used
    # A real request still is.
    client.get("/messages/")
    assert Session.objects.get(session_key=key).expire_date > expiry


def test_once_the_session_has_ended_the_poll_is_sent_to_sign_in(gp: User) -> None:
    client = web_client(gp)
    Session.objects.filter(session_key=client.session.session_key).update(expire_date="2000-01-01T00:00:00Z")
    answer = client.get(ACTIVITY)
    assert answer.status_code == 302 and answer["Location"].startswith("/login/")


@pytest.mark.parametrize(
    "query",
    [{"mailbox": "x", "after": "1"}, {"after": "1"}, {"mailbox": "MAILBOX"}, {"mailbox": "MAILBOX", "after": "-1"}],
)
def test_bad_questions_are_refused_in_french(gp: User, query: dict[str, Any]) -> None:
    box = personal_mailbox(gp)
    query = {name: str(box.pk) if value == "MAILBOX" else value for name, value in query.items()}
    answer = web_client(gp).get(ACTIVITY, query, HTTP_ACCEPT_LANGUAGE="fr")
    assert answer.status_code == 400
    assert answer.json() == {"detail": "Indiquez ensemble mailbox (un identifiant) et after (un nombre)."}


def test_another_persons_mailbox_is_unknown(gp: User) -> None:
    other = practitioner(gp.memberships.get().organisation)
    _send(gp, personal_mailbox(other))
    answer = web_client(gp).get(
        ACTIVITY, {"mailbox": personal_mailbox(other).pk, "after": 0}, HTTP_ACCEPT_LANGUAGE="fr"
    )
    assert answer.status_code == 404 and answer.json() == {"detail": "Boîte inconnue."}
    refused = AuditEvent.objects.get(action="mailbox.access_denied")
    assert refused.actor_id == str(gp.pk) and refused.target_id == str(personal_mailbox(other).pk)


def _warning(page: str) -> dict[str, str]:
    tag = re.search(r"<div class=\"session-warning\"[^>]*>", page)
    assert tag is not None
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', tag.group(0)))


def test_each_page_says_when_its_session_ends(gp: User) -> None:
    client = web_client(gp)
    client.get("/messages/")  # signed in now: the session's lifetime starts
    inbox = f"/messages/{personal_mailbox(gp).pk}/inbox/"
    warning = _warning(client.get(inbox, HTTP_ACCEPT_LANGUAGE="fr").content.decode())
    assert warning["data-ends-in"] == str(settings.SESSION_COOKIE_AGE) and warning["data-extendable"] == "1"
    assert warning["data-soon"] == "Sans activité de votre part, votre session se fermera dans moins de 2\u00a0minutes."
    assert warning["data-stay"] == "Rester connecté" and warning["data-sign-in"] == "Se reconnecter (nouvel onglet)"
    assert warning["data-sign-in-url"] == "/login/"  # the page's own address added by the script
    # Near PLI_SESSION_MAX_HOURS, activity no longer helps: the page says so instead.
    session = client.session
    session[SIGNED_IN_AT] = int(time.time()) - settings.PLI_SESSION_MAX_HOURS * 3600 + 90
    session.save()
    warning = _warning(client.get(inbox, HTTP_ACCEPT_LANGUAGE="fr").content.decode())
    assert 80 <= int(warning["data-ends-in"]) <= 90 and warning["data-extendable"] == "0"
    assert warning["data-limit"].startswith("Votre session atteint sa durée maximale (12\u00a0heures)")
    # The poll tells the same, from what is stored.
    answer = client.get(ACTIVITY).json()["session"]
    assert 80 <= answer["ends_in"] <= 90 and answer["extendable"] is False


def test_the_poll_says_how_long_the_session_has_left(gp: User) -> None:
    client = web_client(gp)
    client.get("/messages/")
    Session.objects.filter(session_key=client.session.session_key).update(
        expire_date=timezone.now() + datetime.timedelta(seconds=100)
    )
    answer = client.get(ACTIVITY).json()["session"]
    assert 95 <= answer["ends_in"] <= 100 and answer["extendable"] is True


def test_staying_signed_in_pushes_the_end_back(gp: User) -> None:
    client = web_client(gp)
    client.get("/messages/")
    key = client.session.session_key
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + datetime.timedelta(seconds=60))
    assert client.get(STAY).status_code == 405
    assert client.post(STAY).status_code == 204
    left = (Session.objects.get(session_key=key).expire_date - timezone.now()).total_seconds()
    assert left > settings.SESSION_COOKIE_AGE - 60


def test_staying_signed_in_needs_the_pages_csrf_token_and_a_session(gp: User) -> None:
    enrol_second_factor(gp)
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(gp)
    assert checked.post(STAY).status_code == 403
    ended = Client().post(STAY)
    assert ended.status_code == 302 and ended["Location"].startswith("/login/")
