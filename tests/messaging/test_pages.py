"""The web mailbox pages: lists, thread, compose (new, reply, forward), attachments,
filing, search; safe rendering of user text; CSP-clean markup."""

from __future__ import annotations

import io
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone

from messaging.factories import (
    OrganisationFactory,
    api_client,
    patient_fields,
    personal_mailbox,
    practitioner,
    shared_mailbox,
    web_client,
)
from pli.accounts.models import Mailbox, User
from pli.audit.models import AuditEvent
from pli.messaging import search_links, services
from pli.messaging.models import Delivery, Folder, Message
from pli.messaging.views import content_disposition


def _file(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


@pytest.fixture
def pair(db: None) -> tuple[User, User]:
    return practitioner(), practitioner()


def _send(sender: User, recipient: User, **extra: Any) -> dict[str, Any]:
    data = {
        "sender": personal_mailbox(sender).address,
        "to": [personal_mailbox(recipient).address],
        "subject": "Objet",
        "body": "Texte",
        **extra,
    }
    response = api_client(sender).post("/api/v1/messages", data)
    assert response.status_code == 201, response.content
    return dict(response.json())


def _no_inline_code(html: str) -> None:
    assert " style=" not in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"


def test_folder_lists_and_nav_count_unread(pair: tuple[User, User]) -> None:
    alice, bob = pair
    _send(alice, bob, subject="Premier")
    _send(alice, bob, subject="Second")
    client = web_client(bob)
    response = client.get("/messages/")
    assert response.status_code == 302
    page = client.get(response["Location"])
    html = page.content.decode()
    assert "Premier" in html and "Second" in html
    assert html.count("is-unread") == 2
    assert 'class="badge unread-count">2' in html
    _no_inline_code(html)
    sent = web_client(alice).get(f"/messages/{personal_mailbox(alice).pk}/sent/").content.decode()
    assert personal_mailbox(bob).name in sent


def test_folder_pages_by_cursor(pair: tuple[User, User]) -> None:
    alice, bob = pair
    box = personal_mailbox(bob)
    services.seed_messages(personal_mailbox(alice), box, [f"Sujet {i:03d}" for i in range(60)])
    client = web_client(bob)
    first = client.get(f"/messages/{box.pk}/inbox/")
    assert "Sujet 059" in first.content.decode() and "Sujet 009" not in first.content.decode()
    older = re.search(r'href="\?cursor=([^"]+)" rel="next"', first.content.decode())
    assert older is not None
    second = client.get(f"/messages/{box.pk}/inbox/?cursor={older.group(1)}").content.decode()
    assert "Sujet 009" in second and "Sujet 059" not in second
    assert client.get(f"/messages/{box.pk}/inbox/?cursor=garbage").status_code == 404
    assert client.get(f"/messages/{box.pk}/spam/").status_code == 404


def test_thread_page_shows_banner_links_and_attachments_safely(pair: tuple[User, User]) -> None:
    alice, bob = pair
    sent = _send(
        alice,
        bob,
        body='<script>alert("x")</script> voir https://example.fr/a?b=1&c=2 et javascript:alert(1)',
        attachments=[_file("cr.pdf", b"%PDF-1.4 x"), _file("données.hprim", b"HPRIM")],
        **patient_fields(),
    )
    html = web_client(bob).get(f"/messages/m/{sent['id']}/").content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert '<a href="https://example.fr/a?b=1&amp;c=2" rel="noopener noreferrer nofollow"' in html
    assert 'href="javascript' not in html
    # The month in words: 02/03/1985 is 3 February in French and 2 March in English.
    assert "patient-banner" in html and "DURAND" in html and "15 février 1984" in html
    # Agreed with the sex when it is known (« né(e) le » otherwise).
    assert "née le 15 février 1984" in html and "né(e)" not in html
    pdf, other = sent["attachments"]
    assert f'/a/{pdf["id"]}/" target="_blank"' in html  # PDFs can be viewed
    assert f"{pdf['name']} (s\u2019ouvre dans un nouvel onglet)</span>" in html  # in a new tab, said first
    assert f'/a/{other["id"]}/" target' not in html  # other files are only downloaded
    _no_inline_code(html)


def test_attachment_sizes_read_as_phones_show_them(pair: tuple[User, User]) -> None:
    """« 1,4 Mio » beside limits of « 100 Mo »: the thread's sizes are in powers of 1000 too."""
    alice, bob = pair
    sent = _send(alice, bob, attachments=[_file("irm.dcm", b"\0" * 1_500_000)])
    html = web_client(bob).get(f"/messages/m/{sent['id']}/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    found = re.search(r"irm\.dcm</span> <span class=\"help\">\(([^)]*)\)", html)
    assert found is not None and found.group(1) == "1,5 Mo", found and found.group(1)


def test_attachment_headers(pair: tuple[User, User]) -> None:
    alice, bob = pair
    sent = _send(alice, bob, attachments=[_file("cr.pdf", b"%PDF-1.4 x"), _file("résultat été.hprim", b"HPRIM")])
    client = web_client(bob)
    pdf, other = sent["attachments"]
    inline = client.get(f"/messages/m/{sent['id']}/a/{pdf['id']}/")
    assert inline["Content-Type"] == "application/pdf"
    assert inline["Content-Disposition"] == "inline; filename=\"cr.pdf\"; filename*=UTF-8''cr.pdf"
    assert inline["X-Content-Type-Options"] == "nosniff"
    assert inline["Content-Security-Policy"].startswith("sandbox")
    assert inline["Content-Length"] == str(len(b"%PDF-1.4 x"))
    assert inline["Cache-Control"] == "no-store"
    forced = client.get(f"/messages/m/{sent['id']}/a/{pdf['id']}/?download=1")
    assert forced["Content-Disposition"].startswith("attachment;")
    download = client.get(f"/messages/m/{sent['id']}/a/{other['id']}/")
    assert download["Content-Disposition"] == (
        "attachment; filename=\"r_sultat _t_.hprim\"; filename*=UTF-8''r%C3%A9sultat%20%C3%A9t%C3%A9.hprim"
    )
    assert b"".join(download.streaming_content) == b"HPRIM"


def test_content_disposition_cannot_be_broken_out_of() -> None:
    value = content_disposition("attachment", 'a";\r\nX-Evil: 1.pdf')
    assert "\r" not in value and "\n" not in value
    assert value.startswith('attachment; filename="a____X-Evil: 1.pdf"')


def test_compose_prefills_reply_and_forward(pair: tuple[User, User]) -> None:
    alice, bob = pair
    sent = _send(alice, bob, subject="Bilan", attachments=[_file("cr.pdf", b"%PDF-1.4")], **patient_fields())
    client = web_client(bob)
    reply = client.get(f"/messages/compose/?reply_to={sent['id']}")
    form = reply.context["form"]
    assert form.initial["subject"] == "RE : Bilan"
    # An answer to an answer keeps one prefix, whichever client wrote it.
    answer = _send(bob, alice, subject="Re: Bilan", in_reply_to=sent["id"])
    again = web_client(alice).get(f"/messages/compose/?reply_to={answer['id']}")
    assert again.context["form"].initial["subject"] == "Re: Bilan"
    assert form.initial["to"] == [personal_mailbox(alice).address]
    assert form.initial["patient_family_name"] == "Durand"
    assert form.initial["body"].splitlines()[-1] == "> Texte"
    # Quoted in the reader's time zone, with the author's name.
    sent_at = timezone.localtime(Message.objects.get(pk=sent["id"]).sent_at).strftime("%d/%m/%Y %H:%M")
    author = f"{personal_mailbox(alice).name} <{personal_mailbox(alice).address}>"
    assert f"Le {sent_at}, {author} a écrit\u00a0:" in form.initial["body"]
    forward = client.get(f"/messages/compose/?forward={sent['id']}")
    html = forward.content.decode()
    assert forward.context["form"].initial["subject"] == "TR : Bilan"
    forwarded = forward.context["form"].initial["body"]
    assert "Message transféré" in forwarded and f"De\u00a0: {author}" in forwarded and "Objet\u00a0: Bilan" in forwarded
    assert forwarded.splitlines()[-1] == "Texte"
    assert 'name="forward_attachments"' in html and "cr.pdf" in html and "checked" in html
    _no_inline_code(html)
    # Each form showed the message: each is a recorded read, by whom and for what.
    reads = AuditEvent.objects.filter(action="message.read", target_id=sent["id"], actor_id=str(bob.pk))
    assert sorted(e.details["for"] for e in reads) == ["forward", "reply"]
    web_client(bob).get(f"/messages/compose/?reply_to={sent['id']}&mode=<script>")
    assert reads.filter(details__for="reply").count() == 2


def test_a_message_page_title_does_not_name_its_subject(pair: tuple[User, User]) -> None:
    """Titles stay in the browser's history and tabs; subjects name patients."""
    alice, bob = pair
    sent = _send(alice, bob, subject="Henri Exemple a répondu")
    html = web_client(bob).get(f"/messages/m/{sent['id']}/").content.decode()
    title = re.search(r"<title>(.*?)</title>", html, re.S)
    assert title and "Exemple" not in title.group(1) and "Message" in title.group(1)


def test_compose_post_then_redirect_and_xhr_json(pair: tuple[User, User]) -> None:
    alice, bob = pair
    client = web_client(alice)
    data = {"sender": personal_mailbox(alice).address, "to": personal_mailbox(bob).address, "subject": "Hello"}
    response = client.post("/messages/compose/", data)
    assert response.status_code == 303
    message = Message.objects.get()
    assert response["Location"] == f"/messages/m/{message.pk}/?mailbox={message.sender_id}"  # the sent copy
    assert "Message envoyé" in client.get(response["Location"]).content.decode()
    response = client.post("/messages/compose/", data, HTTP_X_PLI_UPLOAD="1")
    assert response.status_code == 201
    assert response.json()["location"].startswith("/messages/m/")


def test_compose_requires_csrf(pair: tuple[User, User]) -> None:
    from django.test import Client

    from messaging.factories import enrol_second_factor

    alice, bob = pair
    enrol_second_factor(alice)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    data = {
        "sender": personal_mailbox(alice).address,
        "to": personal_mailbox(bob).address,
        "subject": "x",
        "attachments": [_file("a.txt", b"a")],
    }
    response = client.post("/messages/compose/", data)
    assert response.status_code == 403
    assert not Message.objects.exists()
    from messaging.conftest import stored_blobs

    assert stored_blobs() == []


def test_move_and_delete_buttons(pair: tuple[User, User]) -> None:
    alice, bob = pair
    sent = _send(alice, bob)
    client = web_client(bob)
    box = personal_mailbox(bob)
    response = client.post(f"/messages/m/{sent['id']}/move/", {"folder": "archive"})
    assert response.status_code == 302 and response["Location"] == f"/messages/{box.pk}/inbox/"
    assert Delivery.objects.get(message_id=sent["id"], mailbox=box).folder == Folder.ARCHIVE
    response = client.post(f"/messages/m/{sent['id']}/delete/")
    assert response.status_code == 302  # refused: not in the trash
    assert Delivery.objects.filter(message_id=sent["id"], mailbox=box).exists()
    client.post(f"/messages/m/{sent['id']}/move/", {"folder": "trash"})
    response = client.post(f"/messages/m/{sent['id']}/delete/", {"confirmed": "1"})
    assert response["Location"] == f"/messages/{box.pk}/trash/"
    assert not Delivery.objects.filter(message_id=sent["id"], mailbox=box).exists()
    assert client.get(f"/messages/m/{sent['id']}/move/").status_code == 405
    assert client.post(f"/messages/m/{sent['id']}/move/", {"folder": "x", "next": "https://evil.example"}).status_code


def test_search_page(pair: tuple[User, User]) -> None:
    alice, bob = pair
    _send(alice, bob, subject="Radiographie du genou")
    _send(alice, bob, subject="Autre")
    client = web_client(bob)
    box = personal_mailbox(bob)
    html = client.post(f"/messages/{box.pk}/search/", {"q": "genou"}, follow=True).content.decode()
    assert "Radiographie du genou" in html and "Autre" not in html
    bad = client.post(f"/messages/{box.pk}/search/", {"date_from": "2024-05-02", "date_to": "2024-05-01"})
    assert bad.status_code == 400 and "précède" in bad.content.decode()
    _no_inline_code(html)


def test_a_sender_s_name_in_the_words_offers_the_search_by_sender(db: None) -> None:
    """« Durand » in the search box found nothing when Durand wrote the letters: the empty
    result now offers the same search by sender, its words still out of the URL."""
    durand, bob = practitioner(), practitioner()
    Mailbox.objects.filter(owner=durand).update(name="Paul Durand")
    _send(durand, bob, subject="Radiographie du genou")
    client = web_client(bob)
    box = personal_mailbox(bob)
    empty = client.post(f"/messages/{box.pk}/search/", {"q": "durand"}, follow=True).content.decode()
    assert "Radiographie du genou" not in empty
    offer = re.search(r'<p class="card" id="search-by-sender">([^<]*)<a href="(\?s=[^"]+)">', empty)
    assert offer and "expéditeur de ce nom" in offer.group(1) and "durand" not in offer.group(2).lower()
    found = client.get(f"/messages/{box.pk}/search/" + offer.group(2)).content.decode()
    assert "Radiographie du genou" in found and 'id="search-by-sender"' not in found
    assert 'name="sender" value="durand"' in found
    # Words that are nobody's name: no offer.
    nothing = client.post(f"/messages/{box.pk}/search/", {"q": "zorglub"}, follow=True).content.decode()
    assert 'id="search-by-sender"' not in nothing
    # Said as a search's outcome, not as an empty folder.
    assert "Aucun message ne correspond à cette recherche." in nothing and "Aucun message ici." not in nothing

    # A result opened leads back to the results, not to its folder; a link altered, or
    # another's, back to the folder.
    link = re.search(r'href="(/messages/m/[^"]+&amp;from=([^"]+))"', found)
    assert link is not None
    opened = client.get(link.group(1).replace("&amp;", "&")).content.decode()
    back = f'href="/messages/{box.pk}/search/?s={link.group(2)}">← Retour aux résultats de la recherche</a>'
    assert back in opened
    altered = client.get(link.group(1).replace("&amp;", "&").replace("from=", "from=x")).content.decode()
    assert "Retour aux résultats" not in altered and "← Retour au dossier" in altered


def test_the_trash_is_searched_from_the_trash(pair: tuple[User, User]) -> None:
    """A letter binned by mistake: the search (every folder but the trash) never found it,
    from the trash page itself either."""
    alice, bob = pair
    binned = _send(alice, bob, subject="Radiographie du genou")["id"]
    _send(alice, bob, subject="Genou gauche, contrôle")
    services.move_message(bob, binned, Folder.TRASH)
    client = web_client(bob)
    box = personal_mailbox(bob)
    trash = client.get(f"/messages/{box.pk}/trash/").content.decode()
    assert '<input type="hidden" name="folder" value="trash">' in trash
    found = client.post(f"/messages/{box.pk}/search/", {"q": "genou", "folder": "trash"}, follow=True)
    html = found.content.decode()
    assert "Radiographie du genou" in html and "Genou gauche" not in html
    assert '<option value="trash" selected>' in html  # the page says where it looked
    everywhere = client.post(f"/messages/{box.pk}/search/", {"q": "genou"}, follow=True).content.decode()
    assert "Genou gauche" in everywhere and "Radiographie du genou" not in everywhere
    assert client.post(f"/messages/{box.pk}/search/", {"q": "genou", "folder": "sent"}).status_code == 400


def test_search_words_never_travel_in_the_url(pair: tuple[User, User]) -> None:
    """Patient names and INS are searched for: in a URL they would stay in the browser's
    history, the next page's Referer and proxies' logs. The results are still a page (a GET)
    one can go back to, whose link holds the words sealed."""
    alice, bob = pair
    box = personal_mailbox(bob)
    services.seed_messages(personal_mailbox(alice), box, [f"Radiographie du genou {n}" for n in range(55)])
    client = web_client(bob)
    for page in (client.get(f"/messages/{box.pk}/inbox/"), client.get(f"/messages/{box.pk}/search/")):
        forms = re.findall(r"<form[^>]*role=\"search\"[^>]*>", page.content.decode())
        assert forms and all('method="post"' in f for f in forms)
    posted = client.post(f"/messages/{box.pk}/search/", {"q": "genou"})
    assert posted.status_code == 303
    results_url = posted["Location"]
    assert "genou" not in results_url and "?s=" in results_url
    first = client.get(results_url).content.decode()
    # Each result's subject, not its box's label ("Select « … »").
    listed = re.compile(r"Radiographie du genou \d+</span>")
    assert len(listed.findall(first)) == services.PAGE_SIZE and 'value="genou"' in first
    more = re.search(r'href="(\?s=[^"]+&amp;cursor=[^"]+)" rel="next"', first)
    assert more and "genou" not in more.group(1)
    second = client.get(f"/messages/{box.pk}/search/" + more.group(1).replace("&amp;", "&")).content.decode()
    assert len(listed.findall(second)) == 55 - services.PAGE_SIZE
    # The same link opens nothing for another account, nor once altered.
    other = web_client(alice).get(results_url.replace(str(box.pk), str(personal_mailbox(alice).pk)))
    assert other.status_code == 302 and "Radiographie" not in other.content.decode()
    tampered = client.get(results_url[:-3] + ("AAA" if not results_url.endswith("AAA") else "BBB"))
    assert tampered.status_code == 302
    # The longest words the form takes still make a link a server accepts (under 4 KB), of a
    # length that does not tell one word from another of about the same size.
    # (Letters of four bytes: a query of emoji alone has no word to search for.)
    longest = client.post(f"/messages/{box.pk}/search/", {"q": "\U0001d49c" * 200, "sender": "é" * 200})
    assert longest.status_code == 303 and len(longest["Location"]) < 3000
    assert client.get(longest["Location"]).status_code == 200
    ins = client.post(f"/messages/{box.pk}/search/", {"q": "269054958815780"})["Location"]
    name = client.post(f"/messages/{box.pk}/search/", {"q": "Dupont"})["Location"]
    assert len(ins) == len(name)
    # Dates are sealed as dates, whatever the language they were typed in.
    dated = client.post(f"/messages/{box.pk}/search/", {"q": "genou", "date_from": "2020-01-31"})
    assert 'value="2020-01-31"' in client.get(dated["Location"]).content.decode()
    # An old link with the words in clear is sealed and redirected, once.
    legacy = client.get(f"/messages/{box.pk}/search/?q=genou")
    assert legacy.status_code == 303 and "genou" not in legacy["Location"]


def test_a_search_link_opens_only_in_the_mailbox_it_was_made_in(db: None) -> None:
    """The same person's other mailbox (a shared one, whose team may include others): the
    words sealed for one mailbox are not searched in another."""
    org = OrganisationFactory()
    bob = practitioner(org)
    box, shared = personal_mailbox(bob), shared_mailbox(org, [bob])
    client = web_client(bob)
    results_url = client.post(f"/messages/{box.pk}/search/", {"q": "genou"})["Location"]
    assert client.get(results_url).status_code == 200
    moved = client.get(results_url.replace(str(box.pk), str(shared.pk)))
    assert moved.status_code == 302 and moved["Location"] == f"/messages/{shared.pk}/search/"


def test_a_search_link_expires_after_a_working_day(pair: tuple[User, User], monkeypatch: pytest.MonkeyPatch) -> None:
    _alice, bob = pair
    box = personal_mailbox(bob)
    client = web_client(bob)
    # Sealed a working day and a minute ago (the clock moved for the sealing only).
    sealed_at = time.time() - search_links.LIFETIME_SECONDS - 60
    monkeypatch.setattr(search_links, "time", SimpleNamespace(time=lambda: sealed_at))
    old = client.post(f"/messages/{box.pk}/search/", {"q": "genou"})["Location"]
    monkeypatch.undo()
    response = client.get(old)
    assert response.status_code == 302 and response["Location"] == f"/messages/{box.pk}/search/"
    fresh = client.post(f"/messages/{box.pk}/search/", {"q": "genou"})["Location"]
    assert client.get(fresh).status_code == 200


@pytest.mark.parametrize(
    "query", ["date_to=9999-12-31", "date_from=0001-01-01", "date_from=2024-13-01", "q=" + "x" * 300]
)
def test_search_page_refuses_bad_dates_and_sizes(pair: tuple[User, User], query: str) -> None:
    alice, _ = pair
    name, _, value = query.partition("=")
    response = web_client(alice).post(f"/messages/{personal_mailbox(alice).pk}/search/", {name: value})
    assert response.status_code == 400
    assert 'aria-invalid="true"' in response.content.decode()
    assert "<title>Erreur\u00a0: " in response.content.decode()


def test_patient_fields_are_not_remembered_by_the_browser(pair: tuple[User, User]) -> None:
    """A practice's computer is shared: its browser must not offer the last patient's name."""
    alice, _ = pair
    client = web_client(alice)
    for url, names in [
        ("/messages/compose/", ["subject", "patient_ins", "patient_family_name", "patient_given_names"]),
        ("/shares/new", ["patient_family_name", "patient_given_name", "patient_ins", "message"]),
    ]:
        html = client.get(url).content.decode()
        for name in names:
            tag = re.search(rf'<(?:input|textarea)[^>]*name="{name}"[^>]*>', html)
            assert tag and 'autocomplete="off"' in tag.group(), (url, name)


def test_one_unreadable_message_does_not_take_the_mailbox_down(pair: tuple[User, User], caplog: Any) -> None:
    """A message whose key cannot be opened (a master key missing or wrong, a damaged row):
    the lists name it unreadable and log why; the others are listed; opening it still fails."""
    from pli.core.models import DataKey

    alice, bob = pair
    _send(alice, bob, subject="Lisible")
    broken = _send(alice, bob, subject="Abîmé")
    key = Message.objects.get(pk=broken["id"]).data_key_id
    DataKey.objects.filter(pk=key).update(wrapped=b"\x01" + bytes(60))  # a damaged wrapping
    box = personal_mailbox(bob)
    with caplog.at_level("ERROR", logger="pli.messaging.models"):
        page = web_client(bob).get(f"/messages/{box.pk}/inbox/")
        listed = api_client(bob).get(f"/api/v1/mailboxes/{box.pk}/messages").json()["results"]
    assert page.status_code == 200
    html = page.content.decode()
    assert "Lisible" in html and "illisible" in html and "Abîmé" not in html
    assert sorted(m["subject"] for m in listed) == ["(illisible\u00a0: prévenez votre administrateur)", "Lisible"]
    assert f"message {broken['id']}: subject unreadable" in caplog.text


def test_a_refused_search_or_message_puts_the_focus_on_the_field_to_correct(pair: tuple[User, User]) -> None:
    """Without the page's script (or for the search, always) a refused form came back with
    the focus nowhere: the person had to find the field again among the mailboxes' links."""
    alice, _bob = pair
    client = web_client(alice)
    box = personal_mailbox(alice)
    bad = client.post(f"/messages/{box.pk}/search/", {"date_from": "2024-05-02", "date_to": "2024-05-01"})
    assert bad.status_code == 400
    assert re.search(r'<input type="date" name="date_to"[^>]* autofocus[^>]*>', bad.content.decode())
    assert bad.content.decode().count("autofocus") == 1
    refused = client.post("/messages/compose/", {"sender": box.address, "subject": "Sans destinataire", "body": "x"})
    assert refused.status_code == 400
    assert re.search(r'<input type="text" name="to"[^>]* autofocus[^>]*>', refused.content.decode())
    assert refused.content.decode().count("autofocus") == 1


def test_delete_for_good_asks_first_without_javascript(pair: tuple[User, User]) -> None:
    """The page's script asks before « Supprimer définitivement »; without it the form was
    sent at once and the message was gone. The server now asks on a page of its own."""
    alice, bob = pair
    sent = _send(alice, bob)
    client = web_client(bob)
    box = personal_mailbox(bob)
    client.post(f"/messages/m/{sent['id']}/move/", {"folder": "trash"})
    thread = client.get(f"/messages/m/{sent['id']}/?mailbox={box.pk}").content.decode()
    assert "data-confirm=" in thread  # the script's question, when it runs
    response = client.post(f"/messages/m/{sent['id']}/delete/", {"mailbox": str(box.pk)})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Supprimer définitivement ce message\u00a0? C\u2019est irréversible." in page
    assert 'name="confirmed" value="1"' in page and f'name="mailbox" value="{box.pk}"' in page
    assert f'href="/messages/m/{sent["id"]}/?mailbox={box.pk}"' in page  # « Annuler »
    assert Delivery.objects.get(message_id=sent["id"], mailbox=box).folder == Folder.TRASH
    response = client.post(f"/messages/m/{sent['id']}/delete/", {"mailbox": str(box.pk), "confirmed": "1"})
    assert response.status_code == 302 and response["Location"] == f"/messages/{box.pk}/trash/"
    assert not Delivery.objects.filter(message_id=sent["id"], mailbox=box).exists()


def test_delete_for_good_sent_twice_answers_as_the_first(pair: tuple[User, User]) -> None:
    """A double click on the confirmation's « Supprimer définitivement »: the second request
    found nothing left and answered « page introuvable », recorded as an access refused."""
    alice, bob = pair
    sent = _send(alice, bob)
    client = web_client(bob)
    box = personal_mailbox(bob)
    client.post(f"/messages/m/{sent['id']}/move/", {"folder": "trash"})
    data = {"mailbox": str(box.pk), "confirmed": "1"}
    first = client.post(f"/messages/m/{sent['id']}/delete/", data)
    second = client.post(f"/messages/m/{sent['id']}/delete/", data)
    assert first.status_code == second.status_code == 302
    assert second["Location"] == first["Location"] == f"/messages/{box.pk}/trash/"
    assert not AuditEvent.objects.filter(action="message.access_denied").exists()
    # Someone else posting the same form still finds nothing, recorded.
    carol = practitioner()
    other = web_client(carol)
    assert other.post(f"/messages/m/{sent['id']}/delete/", data).status_code == 404
    assert AuditEvent.objects.filter(action="message.access_denied", actor_id=str(carol.pk)).exists()


def test_delete_for_good_sent_again_for_another_users_mailbox_is_refused_and_recorded(pair: tuple[User, User]) -> None:
    """The double click's allowance is for the user's own mailbox: naming someone else's
    with a message they once deleted is a refused access like any other."""
    alice, bob = pair
    sent = _send(alice, bob)
    client = web_client(bob)
    box = personal_mailbox(bob)
    client.post(f"/messages/m/{sent['id']}/move/", {"folder": "trash"})
    assert (
        client.post(f"/messages/m/{sent['id']}/delete/", {"mailbox": str(box.pk), "confirmed": "1"}).status_code == 302
    )
    foreign = personal_mailbox(practitioner())
    response = client.post(f"/messages/m/{sent['id']}/delete/", {"mailbox": str(foreign.pk), "confirmed": "1"})
    assert response.status_code == 404
    assert AuditEvent.objects.filter(action="message.access_denied", actor_id=str(bob.pk)).exists()


def test_without_a_mailbox_the_page_names_the_organisation_as_every_other_page(db: None) -> None:
    """It sent the user to « l\u2019administrateur de votre structure », the one page where Pli's
    organisation was called a « structure »."""
    user = practitioner()
    mailbox = personal_mailbox(user)
    mailbox.is_active = False
    mailbox.save(update_fields=["is_active"])
    page = web_client(user).get("/messages/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "l\u2019administrateur de votre organisation" in page, page
    assert "structure" not in page
