"""Bad input: a clear 4xx naming the field, French by default, nothing half-saved."""

from __future__ import annotations

import io
from typing import Any

import pytest

from messaging.conftest import stored_blobs
from messaging.factories import (
    OrganisationFactory,
    api_client,
    patient_fields,
    personal_mailbox,
    practitioner,
    valid_ins,
    web_client,
)
from pli.accounts import services as accounts
from pli.accounts.models import Mailbox, Membership, User
from pli.audit.models import AuditEvent
from pli.messaging.models import Delivery, Message


@pytest.fixture
def people(db: None) -> dict[str, User]:
    org = OrganisationFactory()
    return {"alice": practitioner(org), "bob": practitioner(org), "carol": practitioner()}


def _base(people: dict[str, User], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sender": personal_mailbox(people["alice"]).address,
        "to": [personal_mailbox(people["bob"]).address],
        "subject": "Objet",
        "body": "Texte",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _pdf() -> io.BytesIO:
    f = io.BytesIO(b"%PDF-1.4 test")
    f.name = "cr.pdf"
    return f


def _wrong_key_ins() -> str:
    good = valid_ins()
    return good[:13] + f"{(int(good[13:]) + 1) % 97:02d}"


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown recipient", {"to": ["personne@pli.localhost"]}, "to", "Adresse inconnue"),
    ("foreign recipient", {"to": ["docteur@gmail.com"]}, "to", "hors de Pli"),
    ("malformed recipient", {"to": ["pas-une-adresse"]}, "to", "pas une adresse"),
    ("unknown cc", {"cc": ["inconnu@pli.localhost"]}, "cc", "Adresse inconnue"),
    ("no recipient", {"to": None}, "to", "au moins un destinataire"),
    ("sender not mine", {"sender": "SENDER_OTHER"}, "sender", "dont vous êtes membre"),
    ("sender unknown", {"sender": "nobody@pli.localhost"}, "sender", "dont vous êtes membre"),
    ("no sender", {"sender": None}, "sender", "obligatoire"),
    ("empty message", {"subject": "", "body": "   "}, "body", "message est vide"),
    ("invalid INS key", patient_fields(patient_ins="WRONG_KEY"), "patient_ins", "clé de cet INS est fausse"),
    ("INS too short", patient_fields(patient_ins="28402991234"), "patient_ins", "15 caractères"),
    ("INS garbage", patient_fields(patient_ins="ABCDEFGHIJKLMNO"), "patient_ins", "pas un INS valide"),
    ("malformed date", patient_fields(patient_birth_date="15/02/1984"), "patient_birth_date", "AAAA-MM-JJ"),
    ("impossible date", patient_fields(patient_birth_date="1984-02-30"), "patient_birth_date", "n\u2019existe pas"),
    ("future birth", patient_fields(patient_birth_date="2999-01-01"), "patient_birth_date", "pas plausible"),
    ("patient without name", patient_fields(patient_family_name=""), "patient_family_name", "Obligatoire"),
    ("bad sex", patient_fields(patient_sex="X"), "patient_sex", "valide"),
    ("sex against INS", patient_fields(patient_sex="M"), "patient_sex", "ne correspond pas"),
    ("subject too long", {"subject": "x" * 301}, "subject", "300"),
    ("body too long", {"body": "x" * 200_001}, "body", "200"),
    ("family name too long", patient_fields(patient_family_name="x" * 101), "patient_family_name", "100"),
    (
        "direction override in a name",
        patient_fields(patient_given_names="Jean\u202efdp.exe"),
        "patient_given_names",
        "caractère de contrôle invisible",
    ),
    (
        "direction override in the subject",
        {"subject": "R\u00e9sultats \u202efdp.exe"},
        "subject",
        "caractère de contrôle invisible",
    ),
    ("control character in the subject", {"subject": "Bilan\x1b[2J"}, "subject", "caractère de contrôle invisible"),
    ("unknown reply", {"in_reply_to": "6b1c6d59-8a8e-4b8b-9d3e-1d1a0e4f5f10"}, "in_reply_to", "Message inconnu"),
    ("malformed reply", {"in_reply_to": "42"}, "in_reply_to", "UUID"),
    ("too many recipients", {"to": [f"x{i}@pli.localhost" for i in range(51)]}, "to", "50"),
]


def _resolve(people: dict[str, User], overrides: dict[str, Any]) -> dict[str, Any]:
    resolved = dict(overrides)
    if resolved.get("sender") == "SENDER_OTHER":
        resolved["sender"] = personal_mailbox(people["carol"]).address
    if resolved.get("patient_ins") == "WRONG_KEY":
        resolved["patient_ins"] = _wrong_key_ins()
    return resolved


@pytest.mark.parametrize(("case", "overrides", "field", "french"), CASES, ids=[c[0] for c in CASES])
def test_api_names_the_field_in_french(
    people: dict[str, User], case: str, overrides: dict[str, Any], field: str, french: str
) -> None:
    client = api_client(people["alice"])
    events = AuditEvent.objects.count()
    files = [] if case == "empty message" else [_pdf()]
    response = client.post("/api/v1/messages", _base(people, attachments=files, **_resolve(people, overrides)))
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    assert french.lower() in " ".join(body[field]).lower(), body
    assert Message.objects.count() == 0
    assert stored_blobs() == []
    # A refused send writes nothing, not even to the audit trail beyond token bookkeeping.
    assert not AuditEvent.objects.filter(action="message.send").exists()
    assert AuditEvent.objects.count() - events <= 1


@pytest.mark.parametrize(("case", "overrides", "field", "french"), CASES, ids=[c[0] for c in CASES])
def test_web_form_shows_the_error_next_to_the_field(
    people: dict[str, User], case: str, overrides: dict[str, Any], field: str, french: str
) -> None:
    client = web_client(people["alice"])
    data = _base(people, **_resolve(people, overrides))
    response = client.post("/messages/compose/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="id_{field}_error"' in html
    segment = html[html.index(f'id="id_{field}_error"') :][:2000]
    assert french.lower() in segment.lower().replace("&#x27;", "'").replace("&nbsp;", " ")
    assert Message.objects.count() == 0


def test_line_breaks_and_tabs_in_a_subject_become_spaces(people: dict[str, User]) -> None:
    """A subject pasted from another program keeps its words, on one line."""
    client = api_client(people["alice"])
    response = client.post("/api/v1/messages", _base(people, subject="Bilan\r\ndu\t\tjour\n"))
    assert response.status_code == 201, response.content
    assert client.get(f"/api/v1/messages/{response.json()['id']}").json()["subject"] == "Bilan du jour"


def test_english_when_asked(people: dict[str, User]) -> None:
    client = api_client(people["alice"])
    response = client.post("/api/v1/messages", _base(people, to=["nobody@pli.localhost"]), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert response.json()["to"] == ["Unknown address: nobody@pli.localhost."]


def test_inactive_recipient_mailbox_is_unknown(people: dict[str, User]) -> None:
    box = personal_mailbox(people["bob"])
    Mailbox.objects.filter(pk=box.pk).update(is_active=False)
    response = api_client(people["alice"]).post("/api/v1/messages", _base(people))
    assert response.status_code == 400
    assert "to" in response.json()


def test_writing_to_a_colleague_who_left_says_the_mailbox_is_closed(people: dict[str, User]) -> None:
    """Bob left the practice (his account was switched off with his mailbox): Alice, who
    answers one of his letters, is told his mailbox is closed, not that she mistyped an
    address she took from his letter."""
    org = people["bob"].memberships.get().organisation
    admin = practitioner(org)
    Membership.objects.filter(user=admin).update(role="admin")
    accounts.remove_member(Membership.objects.get(user=people["bob"]), actor=admin)
    bob = personal_mailbox(people["bob"]).address
    unknown = "personne@pli.localhost"
    response = api_client(people["alice"]).post("/api/v1/messages", _base(people, to=[bob, unknown]))
    assert response.status_code == 400
    assert response.json()["to"] == [
        f"Cette bo\u00eete n\u2019est plus active\u00a0: {bob}. \u00c9crivez \u00e0 une autre adresse.",
        f"Adresse inconnue\u00a0: {unknown}.",
    ]
    response = web_client(people["alice"]).post("/messages/compose/", _base(people, cc=[bob]))
    assert response.status_code == 400
    assert f"n\u2019est plus active\u00a0: {bob}." in response.content.decode()
    assert Message.objects.count() == 0


def test_json_body_is_unsupported_not_a_crash(people: dict[str, User]) -> None:
    response = api_client(people["alice"]).post("/api/v1/messages", _base(people), content_type="application/json")
    assert response.status_code == 415


def test_a_send_in_the_wrong_media_type_is_told_what_to_send(people: dict[str, User]) -> None:
    """A POST without a Content-Type was answered « Type de média «  » non supporté. », and
    one in JSON named only the type refused: neither said what the endpoint takes."""
    client = api_client(people["alice"])
    response = client.post("/api/v1/messages", b"", content_type="")
    assert response.status_code == 415
    assert response.json() == {
        "detail": "La requ\u00eate n\u2019a pas d\u2019en-t\u00eate Content-Type\u00a0: "
        "envoyez-la en multipart/form-data."
    }
    response = client.post("/api/v1/messages", b"", content_type="", HTTP_ACCEPT_LANGUAGE="en")
    assert response.json() == {"detail": "The request has no Content-Type header: send it as multipart/form-data."}
    response = client.post(
        "/api/v1/messages", _base(people), content_type="application/json", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 415
    assert response.json() == {
        "detail": 'Media type "application/json" is not accepted here: send the request as multipart/form-data.'
    }
    assert Message.objects.count() == 0


def test_head_neither_reads_a_message_nor_downloads_its_files(people: dict[str, User]) -> None:
    """A proxy's or link checker's HEAD set the sender's read receipt and was recorded as a
    read (and, on an attachment, as a download)."""
    sent = api_client(people["alice"]).post("/api/v1/messages", _base(people, attachments=[_pdf()])).json()
    bob = api_client(people["bob"])
    message = f"/api/v1/messages/{sent['id']}"
    assert bob.head(message).status_code == 405
    assert bob.head(f"{message}/attachments/{sent['attachments'][0]['id']}").status_code == 405
    assert [box["unread"] for box in bob.get("/api/v1/mailboxes").json()] == [1]
    assert not AuditEvent.objects.filter(action__in=["message.read", "attachment.download"]).exists()
    assert bob.get(message).status_code == 200
    assert AuditEvent.objects.filter(action="message.read").count() == 1


def test_ids_in_capitals_are_the_same_ids(people: dict[str, User]) -> None:
    """Software built on SQL Server or .NET writes GUIDs in capitals: a 404 told it the
    message did not exist."""
    sent = api_client(people["alice"]).post("/api/v1/messages", _base(people, attachments=[_pdf()])).json()
    bob = api_client(people["bob"])
    message = f"/api/v1/messages/{sent['id'].upper()}"
    assert bob.get(message).json()["id"] == sent["id"]
    attachment = bob.get(f"{message}/attachments/{sent['attachments'][0]['id'].upper()}")
    assert attachment.status_code == 200
    assert bob.post(f"{message}/move", {"folder": "archive"}, content_type="application/json").status_code == 200


@pytest.mark.parametrize(
    ("ins_prefix", "birth_date", "refused"),
    [
        ("2840299123456", "1985-02-15", True),  # the INS says born in 1984
        ("2840299123456", "1984-03-15", True),  # ... in February
        ("2842099123456", "1984-07-15", False),  # month 20: unknown, not compared
        ("2840299123456", "1984-02-29", False),
    ],
)
def test_a_birth_date_the_ins_contradicts_is_refused(
    people: dict[str, User], ins_prefix: str, birth_date: str, refused: bool
) -> None:
    """Identity vigilance: a birth date typed wrong went out beside a valid INS."""
    data = _base(people, **patient_fields(patient_ins=valid_ins(ins_prefix), patient_birth_date=birth_date))
    response = api_client(people["alice"]).post("/api/v1/messages", data)
    if refused:
        assert response.status_code == 400 and "INS" in response.json()["patient_birth_date"][0]
        assert Message.objects.count() == 0
    else:
        assert response.status_code == 201, response.content


def test_a_name_typed_without_picking_the_suggestion_is_explained(people: dict[str, User]) -> None:
    """It read «sophie» n'est pas une adresse de messagerie, of "Sophie Leroy"."""
    response = api_client(people["alice"]).post("/api/v1/messages", _base(people, to=["Sophie Leroy"]))
    assert response.status_code == 400
    message = response.json()["to"][0]
    assert "Sophie Leroy" in message and "suggestions" in message


def test_a_name_typed_among_addresses_is_named_whole(people: dict[str, User]) -> None:
    """Beside an address in the page's field, the name came back cut and lower-cased:
    «paul» is not an address, of "Paul Durand, …"."""
    typed = f"Sophie Leroy, {personal_mailbox(people['bob']).address}"
    response = web_client(people["alice"]).post("/messages/compose/", _base(people, to=typed))
    assert response.status_code == 400
    (message,) = response.context["form"].errors["to"]
    assert "«\u00a0Sophie Leroy\u00a0»" in message and "suggestions" in message
    # Named addresses as a mail program copies them are still read, commas in names too.
    bob, carol = personal_mailbox(people["bob"]).address, personal_mailbox(people["carol"]).address
    named = f'"Leroy, Sophie" <{bob}>; Bob <{carol}>'
    response = api_client(people["alice"]).post("/api/v1/messages", _base(people, to=[named]))
    assert response.status_code == 201, response.content


def test_cross_organisation_recipient_is_fine(people: dict[str, User]) -> None:
    """Any mailbox of the same Pli instance can be reached, whatever its organisation."""
    data = _base(people, to=[personal_mailbox(people["carol"]).address])
    response = api_client(people["alice"]).post("/api/v1/messages", data)
    assert response.status_code == 201


def test_addresses_are_case_insensitive_and_comma_lists_work(people: dict[str, User]) -> None:
    bob, carol = personal_mailbox(people["bob"]).address, personal_mailbox(people["carol"]).address
    data = _base(people, to=[f"{bob.upper()}, {carol}"], cc=[bob])
    response = api_client(people["alice"]).post("/api/v1/messages", data)
    assert response.status_code == 201
    detail = api_client(people["alice"]).get(f"/api/v1/messages/{response.json()['id']}").json()
    assert sorted(detail["to"]) == sorted([bob, carol])
    assert detail["cc"] == []  # already a "to" recipient: one copy only


def test_addresses_copied_with_their_display_names(people: dict[str, User]) -> None:
    bob, carol = personal_mailbox(people["bob"]).address, personal_mailbox(people["carol"]).address
    data = _base(people, to=[f'"Durand, Bob" <{bob}>; Carol Petit <{carol}>'])
    response = api_client(people["alice"]).post("/api/v1/messages", data)
    assert response.status_code == 201, response.content
    detail = api_client(people["alice"]).get(f"/api/v1/messages/{response.json()['id']}").json()
    assert sorted(detail["to"]) == sorted([bob, carol])


def test_a_recipient_list_beyond_any_real_one_is_refused(people: dict[str, User]) -> None:
    data = _base(people, to=["Paul Durand " * 3000])
    response = api_client(people["alice"]).post("/api/v1/messages", data)
    assert response.status_code == 400 and "trop longue" in response.json()["to"][0]


def test_bad_folder_and_cursor(people: dict[str, User]) -> None:
    client = api_client(people["alice"])
    box = personal_mailbox(people["alice"])
    bad_folder = client.get(f"/api/v1/mailboxes/{box.pk}/messages?folder=spam")
    assert bad_folder.status_code == 400 and "folder" in bad_folder.json()
    bad_cursor = client.get(f"/api/v1/mailboxes/{box.pk}/messages?cursor=%%%")
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()
    bad_limit = client.get(f"/api/v1/mailboxes/{box.pk}/messages?limit=0")
    assert bad_limit.status_code == 400 and "limit" in bad_limit.json()


def test_bad_move(people: dict[str, User]) -> None:
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    response = client.post(f"/api/v1/messages/{sent}/move", {"folder": "spam"}, content_type="application/json")
    assert response.status_code == 400
    assert "spam" in response.json()["folder"][0]
    response = client.post(f"/api/v1/messages/{sent}/move", {}, content_type="application/json")
    assert response.status_code == 400 and "folder" in response.json()
    response = client.delete(f"/api/v1/messages/{sent}")
    assert response.status_code == 400 and "folder" in response.json()


@pytest.mark.parametrize("path", ["move", "unread"])
@pytest.mark.parametrize("value", [123, 0, ["00000000-0000-0000-0000-000000000000"], True])
def test_a_mailbox_given_as_anything_but_text_is_a_400_naming_it(
    people: dict[str, User], path: str, value: object
) -> None:
    """JSON ``"mailbox": 123`` was read as the UUID whose number is 123 (DRF's UUIDField takes
    integers): a 404 « Introuvable » recorded as an access denied, where the schema asks for a
    UUID string and a wrong one is a 400."""
    alice, bob = people["alice"], people["bob"]
    sent = (
        api_client(bob)
        .post(
            "/api/v1/messages",
            _base(people, sender=personal_mailbox(bob).address, to=[personal_mailbox(alice).address]),
        )
        .json()["id"]
    )
    denied = AuditEvent.objects.filter(action="message.access_denied").count()
    body = {"folder": "archive", "mailbox": value} if path == "move" else {"mailbox": value}
    response = api_client(alice).post(f"/api/v1/messages/{sent}/{path}", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["mailbox"]
    assert AuditEvent.objects.filter(action="message.access_denied").count() == denied


@pytest.mark.parametrize("value", [1, True, ["archive"], {"a": 1}])
def test_a_folder_given_as_anything_but_text_is_refused_without_pythons_spelling(
    people: dict[str, User], value: object
) -> None:
    """``"folder": ["archive"]`` was answered « Dossier « ['archive'] » inconnu », ``true``
    « Dossier « True » inconnu »: Python's spelling of the value, not the one sent."""
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    response = client.post(f"/api/v1/messages/{sent}/move", {"folder": value}, content_type="application/json")
    assert response.status_code == 400
    message = response.json()["folder"][0]
    assert "True" not in message and "[" not in message and "{" not in message
    assert "inbox, sent, archive" in message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "imbriqué"),
        ('{"folder": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}", "imbriqué"),
        ('{"folder": "\\ud800"}', "Unicode"),
    ],
)
def test_json_python_cannot_take_is_a_400_not_a_500(people: dict[str, User], body: str, reason: str) -> None:
    """Nesting past the recursion limit, and a lone surrogate (which no error message quoting
    it could render), each made a 500."""
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    response = client.generic("POST", f"/api/v1/messages/{sent}/move", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert reason in response.json()["detail"]


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/json", '{"folder": "archive", "note": "' + "x" * 3_000_000 + '"}', "trop volumineux"),
        ("application/x-www-form-urlencoded", "folder=archive&note=" + "x" * 3_000_000, "trop volumineux"),
        ("application/x-www-form-urlencoded", "folder=archive&" + "&".join(f"f{i}=x" for i in range(1100)), "champs"),
    ],
    ids=["JSON too large", "form too large", "too many fields"],
)
def test_a_move_body_past_djangos_limits_is_a_400_not_a_500(
    people: dict[str, User], content_type: str, body: str, reason: str
) -> None:
    """DATA_UPLOAD_MAX_MEMORY_SIZE and DATA_UPLOAD_MAX_NUMBER_FIELDS, met while DRF parsed the
    body, reached the API as unhandled errors."""
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    response = client.generic("POST", f"/api/v1/messages/{sent}/move", body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert reason in response.json()["detail"]


@pytest.mark.parametrize(
    "raw", ["MTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwLjE", "MS45OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "LTEuMQ", "eA"]
)
def test_out_of_range_cursors_are_400(people: dict[str, User], raw: str) -> None:
    """Huge times or ids must be refused, not reach the database as an overflow."""
    box = personal_mailbox(people["alice"])
    response = api_client(people["alice"]).get(f"/api/v1/mailboxes/{box.pk}/messages?cursor={raw}")
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert "cursor" in response.json()


@pytest.mark.parametrize("field", ["sender", "to", "cc"])
def test_control_characters_in_addresses_are_refused(people: dict[str, User], field: str) -> None:
    """A NUL byte can't even be sent to PostgreSQL: it must be refused before any query."""
    data = _base(people)
    data[field] = "a\x00b@pli.localhost" if field == "sender" else ["a\x00b@pli.localhost"]
    response = api_client(people["alice"]).post("/api/v1/messages", data)
    assert response.status_code == 400
    assert field in response.json()


def _urlencoded(people: dict[str, User], subject: bytes) -> bytes:
    sender = personal_mailbox(people["alice"]).address.replace("@", "%40").encode()
    to = personal_mailbox(people["bob"]).address.replace("@", "%40").encode()
    return b"sender=" + sender + b"&to=" + to + b"&subject=" + subject + b"&body=Texte"


@pytest.mark.parametrize("charset", ["utf8", "UTF-8", "us-ascii"])
def test_an_urlencoded_form_in_utf8_spelled_any_way_is_sent(people: dict[str, User], charset: str) -> None:
    """Django refuses any charset not spelled "utf-8" on such a form: "utf8" made a 500."""
    response = api_client(people["alice"]).post(
        "/api/v1/messages",
        _urlencoded(people, b"R%C3%A9sultats" if charset != "us-ascii" else b"Resultats"),
        content_type=f"application/x-www-form-urlencoded; charset={charset}",
    )
    assert response.status_code == 201, response.content
    assert Message.objects.get().subject == ("Résultats" if charset != "us-ascii" else "Resultats")


@pytest.mark.parametrize("path", ["/api/v1/messages", "/api/v1/shares", "MOVE"])
def test_an_urlencoded_form_in_another_charset_is_a_415_not_a_500(people: dict[str, User], path: str) -> None:
    client = api_client(people["alice"])
    if path == "MOVE":
        path = f"/api/v1/messages/{client.post('/api/v1/messages', _base(people)).json()['id']}/move"
    response = client.post(
        path,
        _urlencoded(people, b"R%E9sultats") + b"&folder=archive",
        content_type="application/x-www-form-urlencoded; charset=ISO-8859-1",
    )
    assert response.status_code == 415, response.content
    assert "UTF-8" in response.json()["detail"]


@pytest.mark.parametrize("subject", [b"R%E9sultats", b"R\xe9sultats"], ids=["percent-encoded", "raw byte"])
def test_an_urlencoded_form_not_in_utf8_is_refused_not_garbled(people: dict[str, User], subject: bytes) -> None:
    """Django read Latin-1 bytes as U+FFFD (or, for a raw byte, the whole body as Latin-1)
    and the message went out with a garbled subject."""
    response = api_client(people["alice"]).post(
        "/api/v1/messages", _urlencoded(people, subject), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400, response.content
    # In French, as every other answer (the translation was left fuzzy, so never compiled).
    assert response.json()["subject"] == [
        "Ce texte est illisible\u00a0: un formulaire envoy\u00e9 en application/x-www-form-urlencoded doit "
        "\u00eatre en UTF-8\u00a0; rien n\u2019a \u00e9t\u00e9 enregistr\u00e9."
    ]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "french", "english"),
    [
        (b'{folder: "archive"}', "pas du JSON valide (ligne 1, colonne 2)", "not valid JSON (line 1, column 2)"),
        (b'{"folder": "archiv\xe9"}', "pas encodé en UTF-8", "not encoded in UTF-8"),
        (b'{"folder": NaN}', "pas du JSON valide.", "not valid JSON."),
    ],
    ids=["syntax", "not UTF-8", "NaN"],
)
def test_unreadable_json_is_explained_in_the_callers_language(
    people: dict[str, User], body: bytes, french: str, english: str
) -> None:
    """The answer quoted Python's parser, in English, inside a French sentence."""
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    path = f"/api/v1/messages/{sent}/move"
    response = client.generic("POST", path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Requête mal formée\u00a0: le ")
    assert french in response.json()["detail"] and "Expecting" not in response.json()["detail"]
    response = client.generic("POST", path, body, content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    assert english in response.json()["detail"]


@pytest.mark.parametrize("body", ['["archive"]', '"archive"', "42"])
def test_a_json_body_that_is_not_an_object_is_answered_under_detail(people: dict[str, User], body: str) -> None:
    """DRF's "non_field_errors" key is in neither the README nor the schema's error shapes."""
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    response = client.generic("POST", f"/api/v1/messages/{sent}/move", body, content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()) == ["detail"]
    assert isinstance(response.json()["detail"], str) and "objet JSON" in response.json()["detail"]


def test_a_field_given_twice_is_refused_not_the_last_one_kept(people: dict[str, User]) -> None:
    """folder=inbox&folder=trash filed the message in the trash; folder=sent&folder=inbox
    listed the inbox."""
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    response = client.post(
        f"/api/v1/messages/{sent}/move",
        "folder=archive&folder=trash",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response.json() == {"folder": ["Ce champ est donné plusieurs fois\u00a0: envoyez-le une seule fois."]}
    assert client.get(f"/api/v1/messages/{sent}").json()["copies"][0]["folder"] == "sent"
    box = personal_mailbox(people["alice"]).pk
    response = client.get(f"/api/v1/mailboxes/{box}/messages?folder=sent&folder=inbox&limit=5")
    assert response.status_code == 400 and list(response.json()) == ["folder"]
    response = client.get(f"/api/v1/messages/{sent}?mailbox={box}&mailbox={box}")
    assert response.status_code == 400 and list(response.json()) == ["mailbox"]


@pytest.mark.parametrize("name", ["folder", "limit", "cursor", "date_from", "date_to"])
def test_an_empty_listing_parameter_is_refused_not_taken_as_absent(people: dict[str, User], name: str) -> None:
    """folder= listed the inbox and date_to= set no bound, where the schema allows only a
    folder or a date (schemathesis: schema-violating request accepted)."""
    box = personal_mailbox(people["alice"]).pk
    response = api_client(people["alice"]).get(f"/api/v1/mailboxes/{box}/messages?{name}=")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [name]


def test_an_empty_search_is_no_search(people: dict[str, User]) -> None:
    client = api_client(people["alice"])
    client.post("/api/v1/messages", _base(people))
    box = personal_mailbox(people["alice"]).pk
    response = client.get(f"/api/v1/mailboxes/{box}/messages?folder=sent&q=&sender=")
    assert response.status_code == 200 and len(response.json()["results"]) == 1


def test_a_file_sent_to_a_move_never_reaches_the_disk_in_clear(
    people: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DRF's multipart parser handed it to Django's default handlers, which write a file
    over FILE_UPLOAD_MAX_MEMORY_SIZE to a plaintext temporary file."""
    from django.core.files import uploadedfile

    written: list[str] = []
    original = uploadedfile.TemporaryUploadedFile.__init__

    def recording(self: Any, name: str, *args: Any, **kwargs: Any) -> None:
        written.append(name)
        original(self, name, *args, **kwargs)

    monkeypatch.setattr(uploadedfile.TemporaryUploadedFile, "__init__", recording)
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    document = io.BytesIO(b"%PDF-1.4 " + b"x" * 3_000_000)
    document.name = "compte-rendu.pdf"
    response = client.post(f"/api/v1/messages/{sent}/move", {"folder": "archive", "file": document})
    # A move takes no file: refused, naming it, once read without a plaintext copy.
    assert response.status_code == 400 and set(response.json()) == {"file"}, response.content
    assert written == []


def test_one_answer_names_every_refused_listing_parameter(people: dict[str, User]) -> None:
    box = personal_mailbox(people["alice"]).pk
    response = api_client(people["alice"]).get(f"/api/v1/mailboxes/{box}/messages?folder=spam&date_from=01/02/2026")
    assert response.status_code == 400
    assert set(response.json()) == {"folder", "date_from"}


@pytest.mark.parametrize("code", ["7505", "750561", "ABCDE", "2C004", "75 056", "2A0O4"])
def test_a_birthplace_that_is_no_insee_code_is_refused(people: dict[str, User], code: str) -> None:
    data = _base(people, **patient_fields(patient_birthplace_code=code))
    response = api_client(people["alice"]).post("/api/v1/messages", data, HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 400
    assert "code INSEE" in response.json()["patient_birthplace_code"][0] or "caractères" in str(response.json())
    assert Message.objects.count() == 0


def test_the_birthplace_travels_with_the_patient_context(people: dict[str, User]) -> None:
    """The INS traits include the birthplace (INSEE code): sent by software with the INS, it
    reaches the recipient's software and the banner, and a reply keeps it."""
    data = _base(people, **patient_fields(patient_birthplace_code=" 2a004 "))
    sent = api_client(people["alice"]).post("/api/v1/messages", data)
    assert sent.status_code == 201, sent.content
    message_id = sent.json()["id"]
    read = api_client(people["bob"]).get(f"/api/v1/messages/{message_id}").json()
    assert read["patient"]["birthplace_code"] == "2A004"
    page = web_client(people["bob"]).get(f"/messages/m/{message_id}/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "née à (code INSEE)" in page and "2A004" in page
    reply = web_client(people["bob"]).get(f"/messages/compose/?reply_to={message_id}&mode=reply")
    assert reply.context["form"].initial["patient_birthplace_code"] == "2A004"
    # Without it, as before: an empty trait.
    other = api_client(people["alice"]).post("/api/v1/messages", _base(people, **patient_fields()))
    assert (
        api_client(people["bob"]).get(f"/api/v1/messages/{other.json()['id']}").json()["patient"]["birthplace_code"]
        == ""
    )


def test_a_misspelt_field_is_named_not_ignored(people: dict[str, User]) -> None:
    """Ignored, « patient_nir » (for patient_ins) sent the letter without its patient, and
    « attachment » (for attachments) without its file."""
    client = api_client(people["alice"])
    response = client.post("/api/v1/messages", _base(people, patient_nir=valid_ins(), attachments=[_pdf()]))
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"patient_nir"}, body
    assert "aucun champ de ce nom" in body["patient_nir"][0] and "patient_ins" in body["patient_nir"][0]
    misplaced = client.post("/api/v1/messages", _base(people, attachment=_pdf()))
    assert misplaced.status_code == 400 and set(misplaced.json()) == {"attachment"}
    assert Message.objects.count() == 0 and stored_blobs() == []
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    moved = client.post(
        f"/api/v1/messages/{sent}/move", {"folder": "archive", "mailbox_id": "x"}, content_type="application/json"
    )
    assert moved.status_code == 400 and set(moved.json()) == {"mailbox_id"}
    english = client.post(f"/api/v1/messages/{sent}/unread", {"mailbox_id": "x"}, HTTP_ACCEPT_LANGUAGE="en")
    assert english.json() == {
        "mailbox_id": ["This request has no field of this name: check its spelling. Its fields: mailbox."]
    }


def test_a_misspelt_query_parameter_is_named_not_ignored(people: dict[str, User]) -> None:
    """« mailbox_id » ignored on a DELETE deleted for good the copies of every mailbox."""
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    box = personal_mailbox(people["alice"])
    assert client.post(f"/api/v1/messages/{sent}/move", {"folder": "trash"}).status_code == 200
    refused = client.delete(f"/api/v1/messages/{sent}?mailbox_id={box.pk}")
    assert refused.status_code == 400 and set(refused.json()) == {"mailbox_id"}
    assert Delivery.objects.filter(message_id=sent, mailbox=box).exists()
    assert client.get(f"/api/v1/messages/{sent}?mailbx={box.pk}").status_code == 400
    listing = client.get(f"/api/v1/mailboxes/{box.pk}/messages?folder=trash&unread_only=true")
    assert listing.status_code == 400 and set(listing.json()) == {"unread_only"}
    assert "unread" in listing.json()["unread_only"][0]
    assert client.get(f"/api/v1/mailboxes/{box.pk}/messages?folder=trash&unread=false").status_code == 200


def test_a_mailbox_given_where_the_endpoint_does_not_read_it_is_refused(people: dict[str, User]) -> None:
    """A move reads its mailbox from its body, a deletion from its query: given in the
    other place, it was ignored, and the copies of every mailbox (a team's included) were
    filed, or deleted for good."""
    client = api_client(people["alice"])
    sent = client.post("/api/v1/messages", _base(people)).json()["id"]
    box = personal_mailbox(people["alice"])
    moved = client.post(f"/api/v1/messages/{sent}/move?mailbox={box.pk}", {"folder": "trash"})
    assert moved.status_code == 400 and set(moved.json()) == {"mailbox"}
    assert moved.json()["mailbox"] == ["Cette requête ne prend aucun paramètre."]
    assert Delivery.objects.get(message_id=sent, mailbox=box).folder == "sent"
    assert client.post(f"/api/v1/messages/{sent}/move", {"folder": "trash"}).status_code == 200
    deleted = client.delete(f"/api/v1/messages/{sent}", {"mailbox": str(box.pk)}, content_type="application/json")
    assert deleted.status_code == 400 and deleted.json() == {"mailbox": ["Cette requête ne prend aucun champ."]}
    assert Delivery.objects.filter(message_id=sent, mailbox=box).exists()
    assert client.get("/api/v1/mailboxes?all=1").status_code == 400
    assert client.delete(f"/api/v1/messages/{sent}?mailbox={box.pk}").status_code == 204


def test_forwarded_attachments_need_their_message_and_a_forward_is_no_reply(people: dict[str, User]) -> None:
    bob = api_client(people["bob"])
    letter = api_client(people["alice"]).post("/api/v1/messages", _base(people, attachments=[_pdf()])).json()
    attachment = letter["attachments"][0]["id"]
    reply_to = {"sender": personal_mailbox(people["bob"]).address, "to": [personal_mailbox(people["alice"]).address]}
    alone = bob.post("/api/v1/messages", {**reply_to, "subject": "Tr", "forward_attachments": [attachment]})
    assert alone.status_code == 400
    assert alone.json() == {
        "forward_attachments": ["Donnez forward_of, le message dont ces pièces jointes font partie."]
    }
    both = bob.post(
        "/api/v1/messages",
        {**reply_to, "subject": "Re", "in_reply_to": letter["id"], "forward_of": letter["id"]},
    )
    assert both.status_code == 400 and list(both.json()) == ["forward_of"]
    assert "pas les deux" in both.json()["forward_of"][0]
    assert Message.objects.count() == 1


def test_a_refused_subject_is_the_only_error_named(people: dict[str, User]) -> None:
    """Not also « the message is empty »: it had a subject, which was refused."""
    response = api_client(people["alice"]).post("/api/v1/messages", _base(people, subject="Bilan\x00", body=""))
    assert response.status_code == 400 and list(response.json()) == ["subject"], response.json()
