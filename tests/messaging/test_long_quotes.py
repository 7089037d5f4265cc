"""A reply quotes, and a forward carries, a long letter so that the form still sends."""

from __future__ import annotations

from messaging.factories import api_client, personal_mailbox, practitioner, web_client
from pli.accounts.models import User
from pli.messaging.forms import BODY_MAX
from pli.messaging.models import Message

# A long report pasted in a letter: 40,000 short lines, 180,000 characters. Quoted ("> "
# before every line) it alone was 260,000, past the limit the form then refused.
LONG = "\n".join(f"Résultat {n % 1000:03d}" for n in range(16_000))[:180_000]
# A letter at the limit itself: forwarded whole, its header would take it past.
LONGEST = "\n".join(f"Résultat {n % 1000:03d}" for n in range(16_000))[:BODY_MAX]


def _send(sender: User, to: User, body: str) -> str:
    response = api_client(sender).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(sender).address,
            "to": [personal_mailbox(to).address],
            "subject": "CR",
            "body": body,
        },
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def _answer(user: User, message_id: str, mode: str) -> Message:
    client = web_client(user)
    query = f"forward={message_id}" if mode == "forward" else f"reply_to={message_id}&mode={mode}"
    page = client.get(f"/messages/compose/?{query}")
    initial = page.context["form"].initial
    body = "Merci, je le vois demain.\n" + "Détail. " * 500 + initial["body"]
    assert len(initial["body"]) <= BODY_MAX - 19_000 and len(body) <= BODY_MAX
    data = {
        "sender": initial["sender"],
        "to": initial.get("to") or [personal_mailbox(practitioner()).address],
        "subject": initial["subject"],
        "body": body,
    }
    if initial.get("in_reply_to"):
        data["in_reply_to"] = initial["in_reply_to"]
    before = set(Message.objects.values_list("pk", flat=True))
    response = client.post("/messages/compose/", data)
    assert response.status_code in (302, 303), response.content.decode()[:2000]
    (new,) = Message.objects.exclude(pk__in=before)
    return new


def test_a_reply_to_a_long_letter_quotes_its_start_and_sends(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    message_id = _send(alice, bob, LONG)
    answer = _answer(bob, message_id, "reply")
    body = answer.body
    assert "> Résultat 000" in body
    assert "> […] (coupé ici\u00a0: le message entier est dans la conversation)" in body  # where the rest is


def test_a_forward_of_a_long_letter_sends(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    message_id = _send(alice, bob, LONGEST)
    forwarded = _answer(bob, message_id, "forward")
    assert "Résultat 000" in forwarded.body and "> Résultat" not in forwarded.body
    assert forwarded.body.endswith("(la suite de ce message est trop longue pour être transférée)")
