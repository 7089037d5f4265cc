"""What a hospital software integrator meets on the API's edges: requests built by other
HTTP libraries, and answers read against the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT
from jsonschema import Draft4Validator

from messaging.factories import api_client, personal_mailbox, practitioner
from pli.accounts.models import User
from pli.messaging.forms import ComposeForm
from pli.messaging.models import Attachment, Message
from pli.sharing.api import ApiShareForm
from pli.sharing.models import PatientShare
from pli.testing.accounts import make_user
from sharing.helpers import make_share

CRLF = b"\r\n"
PDF = b"%PDF-1.4 compte rendu"


@pytest.fixture(autouse=True)
def _own_blob_dir(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    yield


@pytest.fixture
def pair(db: None) -> tuple[User, User]:
    return practitioner(), practitioner()


def _body(parts: list[tuple[bytes, bytes]]) -> bytes:
    dash = b"--" + BOUNDARY.encode()
    out = b"".join(dash + CRLF + headers + CRLF + CRLF + value + CRLF for headers, value in parts)
    return out + dash + b"--" + CRLF


def _text(name: str, value: str) -> tuple[bytes, bytes]:
    return (f'Content-Disposition: form-data; name="{name}"'.encode(), value.encode())


def _message_parts(sender: User, recipient: User) -> list[tuple[bytes, bytes]]:
    return [
        _text("sender", personal_mailbox(sender).address),
        _text("to", personal_mailbox(recipient).address),
        _text("subject", "Compte rendu"),
    ]


def _share_parts() -> list[tuple[bytes, bytes]]:
    return [
        _text("patient_given_name", "Jeanne"),
        _text("patient_family_name", "Durand"),
        _text("patient_birth_date", "1980-01-31"),
        _text("patient_email", "jeanne.durand@example.org"),
    ]


# RFC 2231 names whose percent-escapes are not text in the charset they name: Django
# decodes them with replacement characters, so that the file reached its reader as "�.pdf".
UNREADABLE_EXTENDED_NAMES = [b"filename*=UTF-8''%FF.pdf", b"filename*=utf-8''compte-rendu-%C3.pdf"]


@pytest.mark.parametrize("name", UNREADABLE_EXTENDED_NAMES)
def test_a_message_file_name_in_broken_utf8_is_refused(pair: tuple[User, User], name: bytes) -> None:
    alice, bob = pair
    part = (b'Content-Disposition: form-data; name="attachments"; ' + name, PDF)
    response = api_client(alice).generic(
        "POST", "/api/v1/messages", _body([*_message_parts(alice, bob), part]), content_type=MULTIPART_CONTENT
    )
    assert response.status_code == 400, response.content
    assert "UTF-8" in response.json()["attachments"][0]
    assert Message.objects.count() == 0
    assert Attachment.objects.count() == 0


# RFC 2231 names in a charset Pli does not read text in (pli.core.charsets): UTF-7 and
# Python's escape codecs gave lone surrogates, which no name can be stored with (a 500).
UNSUPPORTED_CHARSET_NAMES = [
    b"filename*=UTF-7''+2AA-.pdf",
    b"filename*=unicode_escape''%5Cud800.pdf",
    b"filename*=UTF-16LE''a%00.%00p%00d%00f%00",
]


@pytest.mark.parametrize("name", UNSUPPORTED_CHARSET_NAMES)
@pytest.mark.parametrize(("path", "field"), [("/api/v1/messages", "attachments"), ("/api/v1/shares", "documents")])
def test_a_file_name_in_an_unsupported_charset_is_refused(
    pair: tuple[User, User], name: bytes, path: str, field: str
) -> None:
    alice, bob = pair
    texts = _message_parts(alice, bob) if field == "attachments" else _share_parts()
    part = (f'Content-Disposition: form-data; name="{field}"; '.encode() + name, PDF)
    response = api_client(alice).generic("POST", path, _body([*texts, part]), content_type=MULTIPART_CONTENT)
    assert response.status_code == 400, response.content
    assert "UTF-8" in response.json()[field][0]
    assert Message.objects.count() == 0
    assert PatientShare.objects.count() == 0


@pytest.mark.parametrize("name", UNREADABLE_EXTENDED_NAMES)
def test_a_share_document_name_in_broken_utf8_is_refused(pair: tuple[User, User], name: bytes) -> None:
    alice, _bob = pair
    part = (b'Content-Disposition: form-data; name="documents"; ' + name, PDF)
    response = api_client(alice).generic(
        "POST", "/api/v1/shares", _body([*_share_parts(), part]), content_type=MULTIPART_CONTENT
    )
    assert response.status_code == 400, response.content
    assert "UTF-8" in response.json()["documents"][0]
    assert PatientShare.objects.count() == 0


def test_an_extended_file_name_in_its_charset_is_read(pair: tuple[User, User]) -> None:
    alice, bob = pair
    parts = [
        (b"Content-Disposition: form-data; name=\"attachments\"; filename*=UTF-8''r%C3%A9sultat.pdf", PDF),
        (b"Content-Disposition: form-data; name=\"attachments\"; filename*=ISO-8859-1''%E9t%E9.pdf", PDF),
    ]
    response = api_client(alice).generic(
        "POST", "/api/v1/messages", _body([*_message_parts(alice, bob), *parts]), content_type=MULTIPART_CONTENT
    )
    assert response.status_code == 201, response.content
    assert [item["name"] for item in response.json()["attachments"]] == ["résultat.pdf", "été.pdf"]


def test_forwarded_attachments_are_named_by_ids_in_any_case(pair: tuple[User, User]) -> None:
    """Ids are read in any case (``C35DF0EC-…`` as SQL Server writes them): ``forward_of``
    was, but the attachments to forward beside it were refused as unknown."""
    alice, bob = pair
    file_part = (b'Content-Disposition: form-data; name="attachments"; filename="cr.pdf"', PDF)
    sent = api_client(alice).generic(
        "POST", "/api/v1/messages", _body([*_message_parts(alice, bob), file_part]), content_type=MULTIPART_CONTENT
    )
    assert sent.status_code == 201, sent.content
    message_id, attachment_id = sent.json()["id"], sent.json()["attachments"][0]["id"]
    forward = [
        *_message_parts(bob, alice),
        _text("forward_of", message_id.upper()),
        _text("forward_attachments", attachment_id.upper()),
    ]
    response = api_client(bob).generic("POST", "/api/v1/messages", _body(forward), content_type=MULTIPART_CONTENT)
    assert response.status_code == 201, response.content
    assert [item["name"] for item in response.json()["attachments"]] == ["cr.pdf"]


def _response_schema(path: str, method: str, status: str) -> dict[str, Any]:
    """The schema an operation's answer is documented with, as JSON Schema (draft 4, as
    OpenAPI 3.0's objects are), its references resolved against the document."""
    document = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: convert(value) for key, value in node.items()}
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        if "$ref" in node:
            node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/definitions/")
        return node

    operation = document["paths"][path][method]
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    return {**convert(schema), "definitions": convert(document["components"]["schemas"])}


@pytest.mark.parametrize("action", ["revoke", "resend"])
def test_a_share_action_answers_as_its_schema_says_whatever_the_scopes(db: None, action: str) -> None:
    """A token without ``shares:read`` gets only the share's ``id`` and ``status`` (by
    design); the schema required every field of a share, so that clients generated from
    it failed to read the answer."""
    user = make_user()
    schema = _response_schema(f"/api/v1/shares/{{share_id}}/{action}", "post", "200")
    for scopes in (["shares:write"], ["shares:write", "shares:read"]):
        share, _token = make_share(user)
        response = api_client(user, scopes).post(f"/api/v1/shares/{share.pk}/{action}")
        assert response.status_code == 200, response.content
        errors = [error.message for error in Draft4Validator(schema).iter_errors(response.json())]
        assert errors == [], (scopes, errors)


def _schema_document() -> dict[str, Any]:
    response = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize(
    ("path", "form"), [("/api/v1/messages", ComposeForm), ("/api/v1/shares", ApiShareForm)], ids=["messages", "shares"]
)
def test_request_lengths_in_the_schema_are_those_the_api_checks(db: None, path: str, form: Any) -> None:
    """A client generated from the schema checks lengths before sending: an e-mail address
    of 300 characters passed it, to be refused by the server; an empty optional field
    (sent as the client's database holds it) was refused by the client, accepted here."""
    document = _schema_document()
    body = document["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    properties = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"]
    for name, field in form.base_fields.items():
        documented = properties[name]
        if documented.get("type") != "string" or documented.get("format") == "date":
            continue
        assert documented.get("maxLength") == field.max_length, name
        if not field.required:
            assert "minLength" not in documented, name


@pytest.mark.parametrize(("path", "field"), [("/api/v1/messages", "detail"), ("/api/v1/shares", "documents")])
@pytest.mark.parametrize("ending", [b"--" + BOUNDARY.encode() + CRLF, b""], ids=["closing-without-dashes", "none"])
def test_a_complete_body_without_its_closing_boundary_is_not_called_cut_off(
    pair: tuple[User, User], path: str, field: str, ending: bytes
) -> None:
    """Every byte arrived, but the body does not end as multipart must (a hand-built body
    without the final ``--boundary--``, or a header naming another boundary): the client
    was told the upload had been cut off and to send it again, which fails the same way."""
    alice, bob = pair
    texts = _message_parts(alice, bob) if path.endswith("messages") else _share_parts()
    body = _body(texts).removesuffix(b"--" + BOUNDARY.encode() + b"--" + CRLF) + ending
    response = api_client(alice).generic("POST", path, body, content_type=MULTIPART_CONTENT, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400, response.content
    refusal = response.json()[field]
    message = refusal if field == "detail" else refusal[0]
    assert "closing boundary" in message and "cut off" not in message
    assert Message.objects.count() == 0
    assert PatientShare.objects.count() == 0


def test_the_missing_closing_boundary_is_said_in_french_by_default(pair: tuple[User, User]) -> None:
    alice, bob = pair
    body = _body(_message_parts(alice, bob)).removesuffix(b"--" + BOUNDARY.encode() + b"--" + CRLF)
    response = api_client(alice).generic("POST", "/api/v1/messages", body, content_type=MULTIPART_CONTENT)
    assert response.status_code == 400, response.content
    assert "ne se termine pas par sa limite de fin" in response.json()["detail"]
    assert "rien n\u2019a été enregistré" in response.json()["detail"]


def _sent(client: Any, alice: User, bob: User) -> str:
    """The id of a message alice sends bob (no attachment)."""
    response = client.post(
        "/api/v1/messages",
        {"sender": personal_mailbox(alice).address, "to": personal_mailbox(bob).address, "subject": "CR"},
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def test_a_json_field_given_twice_is_refused_not_the_last_one_kept(pair: tuple[User, User]) -> None:
    """``{"folder": "archive", "folder": "trash"}`` binned the message, as
    ``folder=archive&folder=trash`` used to: the JSON parser keeps the last name."""
    alice, bob = pair
    client = api_client(alice)
    sent = _sent(client, alice, bob)
    body = b'{"folder": "archive", "folder": "trash"}'
    response = client.generic("POST", f"/api/v1/messages/{sent}/move", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json() == {"folder": ["Ce champ est donné plusieurs fois\u00a0: envoyez-le une seule fois."]}
    assert client.get(f"/api/v1/messages/{sent}").json()["copies"][0]["folder"] == "sent"


def test_a_json_null_body_is_answered_in_the_callers_language(pair: tuple[User, User]) -> None:
    """DRF answers ``null`` with "No data provided", never translated, inside French answers."""
    alice, bob = pair
    client = api_client(alice)
    sent = _sent(client, alice, bob)
    path = f"/api/v1/messages/{sent}/move"
    response = client.generic("POST", path, b"null", content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json() == {"detail": "Aucune donnée envoyée\u00a0: envoyez les champs dans un objet JSON."}
    response = client.generic("POST", path, b"null", content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    assert response.json() == {"detail": "No data sent: send the fields in a JSON object."}


def test_the_schema_documents_the_response_headers_clients_must_read(db: None) -> None:
    """The next page of shares is only in a ``Link`` header, when to retry after a 429 only
    in ``Retry-After``: the schema named neither, so generated clients exposed neither."""
    document = _schema_document()
    listing = document["paths"]["/api/v1/shares"]["get"]["responses"]
    assert "Link" in listing["200"]["headers"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "Retry-After" in responses["429"].get("headers", {}), (method, path)
            assert "WWW-Authenticate" in responses["401"].get("headers", {}), (method, path)


def test_bad_input_answers_have_the_documented_shape(pair: tuple[User, User]) -> None:
    """400s are field → list of messages, with what concerns no field as one text under
    ``detail``; the schema said ``detail`` held a list too, and described nothing else."""
    alice, bob = pair
    client = api_client(alice)
    schema = _response_schema("/api/v1/messages/{message_id}/move", "post", "400")
    assert schema["$ref"] == "#/definitions/ValidationError"
    assert schema["definitions"]["ValidationError"]["properties"]["detail"]["type"] == "string"
    sent = _sent(client, alice, bob)
    move = f"/api/v1/messages/{sent}/move"
    refusals = [
        client.generic("POST", move, b'["archive"]', content_type="application/json"),
        client.generic("POST", move, b'{"folder": "x", "mailbox": "y"}', content_type="application/json"),
        client.generic("POST", move, b"{folder", content_type="application/json"),
        client.post("/api/v1/messages", {"sender": "x"}),
        client.get(f"/api/v1/mailboxes/{personal_mailbox(alice).pk}/messages?folder=x&date_from=y"),
        client.get("/api/v1/shares?status=x"),
    ]
    for response in refusals:
        assert response.status_code == 400, response.content
        errors = [error.message for error in Draft4Validator(schema).iter_errors(response.json())]
        assert errors == [], (response.json(), errors)


def test_a_django_validation_error_for_no_field_is_one_text(db: None) -> None:
    from django.core.exceptions import ValidationError as DjangoValidationError

    from pli.core.api import exception_handler

    response = exception_handler(DjangoValidationError(["Premier.", "Second."]), {})
    assert response is not None and response.status_code == 400
    assert response.data == {"detail": "Premier. Second."}


@pytest.mark.parametrize(("path", "field"), [("/api/v1/messages", "attachments"), ("/api/v1/shares", "documents")])
def test_a_stalled_upload_answer_matches_its_schema(db: None, path: str, field: str) -> None:
    """An upload that stops arriving is refused naming the part it stopped in
    (``{"attachments": ["…"]}``, tests/messaging/test_stalled_clients.py); the schema
    documented a 408 as ``{"detail": "…"}`` only."""
    from pli.core.api import field_error_body

    schema = _response_schema(path, "post", "408")
    body = field_error_body(field, "The upload stopped arriving before its end; nothing was saved.")
    assert [error.message for error in Draft4Validator(schema).iter_errors(body)] == []


@pytest.mark.parametrize(
    "params",
    [
        b'filename*0="a"; filename*1="b.pdf"; filename*=utf-8\'\'a.pdf',
        b'filename*=UTF-8\'en\'%E2%82%AC.pdf; filename*0="a"; filename*1="b.pdf"',
    ],
)
def test_a_disposition_the_header_parser_trips_on_is_refused_not_a_500(pair: tuple[User, User], params: bytes) -> None:
    """RFC 2231 continuations mixed with a whole extended value make Python's header parser
    raise (a TypeError): Django skips such a line, and Pli refuses it."""
    alice, bob = pair
    part = (b'Content-Disposition: form-data; name="attachments"; ' + params, PDF)
    response = api_client(alice).generic(
        "POST", "/api/v1/messages", _body([*_message_parts(alice, bob), part]), content_type=MULTIPART_CONTENT
    )
    assert response.status_code == 400, response.content
    assert Message.objects.count() == 0


def test_the_schema_says_when_an_idempotency_conflict_is_final(db: None) -> None:
    """A 409 also answers a key whose message or share was deleted since: retrying, as the
    schema's "still being processed" invited, never succeeds."""
    document = _schema_document()
    for path in ("/api/v1/messages", "/api/v1/shares"):
        description = document["paths"][path]["post"]["responses"]["409"]["description"]
        assert "still being processed" in description and "no longer exists" in description


def test_a_json_body_starting_with_a_byte_order_mark_is_read(pair: tuple[User, User]) -> None:
    """Windows tools (PowerShell's ``Out-File -Encoding utf8``, .NET's ``StreamWriter``)
    start UTF-8 files with a byte order mark, which RFC 8259 lets a parser ignore: the body
    was refused as "not valid JSON (line 1, column 1)"."""
    alice, bob = pair
    client = api_client(alice)
    sent = _sent(client, alice, bob)
    body = b'\xef\xbb\xbf{"folder": "archive"}'
    response = client.generic("POST", f"/api/v1/messages/{sent}/move", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["copies"][0]["folder"] == "archive"


def test_an_unknown_folder_in_a_listing_names_the_folders(pair: tuple[User, User]) -> None:
    """The move named the four folders; the listing answered « « x » n'est pas un choix
    valide. » (DRF's French, with its ASCII apostrophe), leaving the integrator to guess."""
    alice, _bob = pair
    response = api_client(alice).get(f"/api/v1/mailboxes/{personal_mailbox(alice).pk}/messages?folder=Inbox")
    assert response.status_code == 400
    assert response.json() == {
        "folder": ["Dossier «\u00a0Inbox\u00a0» inconnu\u00a0: choisissez inbox, sent, archive ou trash."]
    }
