"""Every endpoint of the API, called on its success paths and its main error paths, answers
as the schema it serves says: a listed status code, and a JSON body valid against that
answer's schema, with no field the schema does not name (integrators generate their clients
from /api/v1/schema/; an undocumented field or a null where none is allowed breaks them)."""

from __future__ import annotations

import datetime
import json
import re
import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client, RequestFactory
from django.utils import timezone
from jsonschema import Draft202012Validator, FormatChecker

from messaging.factories import patient_fields, personal_mailbox, practitioner, shared_mailbox
from pli.accounts.models import User
from pli.api.models import ApiToken
from pli.api.scopes import SCOPES
from pli.api.services import create_token
from pli.audit import services as audit
from pli.core.wsgi import PliWSGIHandler
from pli.messaging.models import Message
from pli.sharing import mailbox as share_mailbox
from pli.sharing.models import PatientShare
from sharing.helpers import make_share, pdf_bytes

FORMATS = FormatChecker()


@FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(uuid.UUID(value))


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.datetime.fromisoformat(value).tzinfo is not None


@FORMATS.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    return not isinstance(value, str) or bool(datetime.date.fromisoformat(value))


def json_schema(openapi: dict[str, Any], node: Any) -> Any:
    """An OpenAPI 3.0 schema as a strict JSON Schema: references resolved, ``nullable``
    spelt as JSON Schema spells it, and objects closed to the properties they list."""
    if isinstance(node, list):
        return [json_schema(openapi, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/components/schemas/")
        return json_schema(openapi, openapi["components"]["schemas"][name])
    converted = {key: json_schema(openapi, value) for key, value in node.items() if key != "nullable"}
    if "properties" in converted and "additionalProperties" not in converted:
        converted["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


class Api:
    """A token's client that checks each answer against the served schema."""

    def __init__(self, openapi: dict[str, Any], user: User, scopes: list[str] | None = None) -> None:
        self.openapi = openapi
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {create_token(user, 'schema', scopes)[1]}")

    def call(self, method: str, template: str, expected: int, path: str | None = None, **kwargs: Any) -> Any:
        client: Client = kwargs.pop("client", self.client)
        response = getattr(client, method)(path or template, **kwargs)
        assert response.status_code == expected, (method, path or template, response.status_code, response.content)
        check(self.openapi, method, template, response)
        return response


def check(openapi: dict[str, Any], method: str, template: str, response: Any) -> None:
    operation = openapi["paths"][template][method]
    code = str(response.status_code)
    assert code in operation["responses"], f"{method.upper()} {template}: {code} not in the schema"
    documented = operation["responses"][code]
    if response.status_code == 204:
        assert not response.content and not documented.get("content")
        return
    content = documented.get("content", {})
    if "*/*" in content and response.status_code < 300:
        return  # a file, as it was sent
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    assert "application/json" in content, f"{method.upper()} {template} {code}: no JSON body documented"
    schema = json_schema(openapi, content["application/json"]["schema"])
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in Draft202012Validator(schema, format_checker=FORMATS).iter_errors(json.loads(response.content))
    ]
    assert not errors, f"{method.upper()} {template} {code}: {errors}"
    for header in ("Retry-After", "WWW-Authenticate", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        if header in documented.get("headers", {}):
            assert response.has_header(header), (template, code, header)


@pytest.fixture
def openapi(db: None) -> dict[str, Any]:
    response = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def share_fields(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "patient_given_name": "Élodie",
        "patient_family_name": "Durand",
        "patient_birth_date": "1984-02-15",
        "patient_email": "patient@example.org",
        "patient_mobile": "+33612345678",
        "message": "Vos résultats",
        "allow_reply": "true",
        "documents": [SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf")],
    }
    data.update(overrides)
    return data


def test_the_messaging_endpoints_answer_as_the_schema_says(openapi: dict[str, Any], settings: Any) -> None:
    user = practitioner()
    colleague = practitioner(user.memberships.get().organisation)
    team = shared_mailbox(user.memberships.get().organisation, [user, colleague])
    mine, theirs = personal_mailbox(user), personal_mailbox(colleague)
    api = Api(openapi, user)
    other = Api(openapi, colleague)

    api.call("get", "/api/v1/me", 200)
    api.call("get", "/api/v1/me", 401, client=Client())
    api.call("get", "/api/v1/mailboxes", 200)

    # A send with a patient, a file and a copy; then an answer to it.
    sent = api.call(
        "post",
        "/api/v1/messages",
        201,
        data={
            "sender": mine.address,
            "to": [theirs.address],
            "cc": [team.address],
            "subject": "Bilan",
            "body": "Voici le bilan.",
            "attachments": [SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf")],
            **patient_fields(),
        },
        HTTP_IDEMPOTENCY_KEY="send-1",
    ).json()
    message = sent["id"]
    answer = other.call(
        "post",
        "/api/v1/messages",
        201,
        data={"sender": theirs.address, "to": [mine.address], "body": "Merci.", "in_reply_to": message},
    ).json()
    # The same key again: the first answer; the same key for another request: refused.
    api.call(
        "post",
        "/api/v1/messages",
        422,
        data={"sender": mine.address, "to": [theirs.address], "body": "Autre chose"},
        HTTP_IDEMPOTENCY_KEY="send-1",
    )
    api.call("post", "/api/v1/messages", 400, data={"sender": "nobody@example.org", "to": ["x"]})
    settings.PLI_MAX_MESSAGE_BYTES = 1000
    api.call(
        "post",
        "/api/v1/messages",
        413,
        data={
            "sender": mine.address,
            "to": [theirs.address],
            "attachments": [SimpleUploadedFile("gros.pdf", pdf_bytes("x" * 2000), "application/pdf")],
        },
    )

    listing = "/api/v1/mailboxes/{mailbox_id}/messages"
    page = api.call("get", listing, 200, f"/api/v1/mailboxes/{mine.pk}/messages?folder=sent&limit=1").json()
    assert page["next"] is None
    api.call("get", listing, 200, f"/api/v1/mailboxes/{mine.pk}/messages?q=Durand&date_from=2000-01-01")
    api.call("get", listing, 400, f"/api/v1/mailboxes/{mine.pk}/messages?folder=nowhere&date_to=x")
    api.call("get", listing, 200, f"/api/v1/mailboxes/{mine.pk}/messages?unread=true")
    api.call("get", listing, 400, f"/api/v1/mailboxes/{mine.pk}/messages?unread=x")
    api.call("get", listing, 404, f"/api/v1/mailboxes/{uuid.uuid4()}/messages")
    search = "/api/v1/mailboxes/{mailbox_id}/messages/search"
    found = api.call(
        "post",
        search,
        200,
        f"/api/v1/mailboxes/{mine.pk}/messages/search",
        data={"folder": "sent", "q": "Durand", "unread": False, "limit": 1},
        content_type="application/json",
    ).json()
    assert found["results"] and found["next_cursor"] is None
    as_json = {"content_type": "application/json"}
    api.call("post", search, 400, f"/api/v1/mailboxes/{mine.pk}/messages/search", data={"date_to": "x"}, **as_json)
    api.call("post", search, 404, f"/api/v1/mailboxes/{uuid.uuid4()}/messages/search", data={"q": "x"}, **as_json)

    detail = "/api/v1/messages/{message_id}"
    read = api.call("get", detail, 200, f"/api/v1/messages/{message}").json()
    assert read["patient"] is not None and read["receipts"] and read["attachments"]
    api.call("get", detail, 200, f"/api/v1/messages/{answer['id']}?mailbox={mine.pk}")
    other.call("get", detail, 200, f"/api/v1/messages/{message}")
    api.call("get", detail, 400, f"/api/v1/messages/{message}?mailbox=x")
    api.call("get", detail, 404, f"/api/v1/messages/{uuid.uuid4()}")

    unread = "/api/v1/messages/{message_id}/unread"
    marked = other.call("post", unread, 200, f"/api/v1/messages/{message}/unread").json()
    assert marked["copies"] and all(c["unread"] for c in marked["copies"])
    lone = api.call("post", "/api/v1/messages", 201, data={"sender": mine.address, "to": [theirs.address], "body": "u"})
    api.call("post", unread, 400, f"/api/v1/messages/{lone.json()['id']}/unread")  # the sent copy alone
    other.call("post", unread, 400, f"/api/v1/messages/{message}/unread", data={"mailbox": "x"})
    other.call("post", unread, 404, f"/api/v1/messages/{uuid.uuid4()}/unread")

    attachment = "/api/v1/messages/{message_id}/attachments/{attachment_id}"
    api.call("get", attachment, 200, f"/api/v1/messages/{message}/attachments/{read['attachments'][0]['id']}")
    api.call("get", attachment, 404, f"/api/v1/messages/{message}/attachments/{uuid.uuid4()}")

    move = "/api/v1/messages/{message_id}/move"
    api.call("post", move, 400, f"/api/v1/messages/{message}/move", data={"folder": "nowhere"})
    api.call("post", move, 404, f"/api/v1/messages/{uuid.uuid4()}/move", data={"folder": "trash"})
    api.call("delete", detail, 400, f"/api/v1/messages/{message}")
    api.call("post", move, 200, f"/api/v1/messages/{message}/move", data={"folder": "trash"})
    api.call("delete", detail, 204, f"/api/v1/messages/{message}")
    api.call("delete", detail, 404, f"/api/v1/messages/{message}")


def test_a_patients_reply_reads_as_the_schema_says(openapi: dict[str, Any]) -> None:
    user = practitioner()
    share, _token = make_share(user, allow_reply=True)
    assert share.reply_mailbox is not None
    with_files = share_mailbox.deliver_patient_reply(share, "Merci docteur", [], timezone.now())
    api = Api(openapi, user)
    page = api.call(
        "get", "/api/v1/mailboxes/{mailbox_id}/messages", 200, f"/api/v1/mailboxes/{share.reply_mailbox_id}/messages"
    )
    assert page.json()["results"][0]["sender_kind"] == "patient_link"
    api.call("get", "/api/v1/messages/{message_id}", 200, f"/api/v1/messages/{with_files}")


def test_the_share_endpoints_answer_as_the_schema_says(openapi: dict[str, Any], settings: Any) -> None:
    user = practitioner()
    api = Api(openapi, user)
    created = api.call("post", "/api/v1/shares", 201, data=share_fields(), HTTP_IDEMPOTENCY_KEY="share-1").json()
    api.call("post", "/api/v1/shares", 201, data=share_fields(), HTTP_IDEMPOTENCY_KEY="share-1")
    api.call("post", "/api/v1/shares", 422, data=share_fields(message="Autre"), HTTP_IDEMPOTENCY_KEY="share-1")
    api.call("post", "/api/v1/shares", 400, data=share_fields(patient_birth_date="15/02/1984", documents=[]))
    settings.PLI_SHARE_MAX_BYTES = 1000
    api.call(
        "post",
        "/api/v1/shares",
        413,
        data=share_fields(documents=[SimpleUploadedFile("gros.pdf", pdf_bytes("x" * 2000), "application/pdf")]),
    )

    api.call("get", "/api/v1/shares", 200, "/api/v1/shares?q=Durand&status=sent&limit=1")
    api.call("get", "/api/v1/shares", 400, "/api/v1/shares?status=nowhere&created_before=x&limit=0")
    found = api.call(
        "post",
        "/api/v1/shares/search",
        200,
        data={"q": "Durand", "status": "sent", "limit": 1},
        content_type="application/json",
    ).json()
    assert len(found["results"]) == 1 and found["next_created_before"] is not None
    api.call("post", "/api/v1/shares/search", 400, data={"status": "nowhere"}, content_type="application/json")

    detail = "/api/v1/shares/{share_id}"
    share = created["id"]
    api.call("get", detail, 200, f"/api/v1/shares/{share}")
    api.call("get", detail, 404, f"/api/v1/shares/{uuid.uuid4()}")

    resend = "/api/v1/shares/{share_id}/resend"
    api.call(
        "post",
        resend,
        200,
        f"/api/v1/shares/{share}/resend",
        data={"patient_birth_date": "1984-02-16", "patient_email": ""},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="resend-1",
    )
    api.call(
        "post",
        resend,
        422,
        f"/api/v1/shares/{share}/resend",
        data={"patient_mobile": ""},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="resend-1",
    )
    api.call(
        "post",
        resend,
        400,
        f"/api/v1/shares/{share}/resend",
        data={"patient_email": None, "patient_mobile": "123"},
        content_type="application/json",
    )
    api.call("post", resend, 400, f"/api/v1/shares/{share}/resend", data=[], content_type="application/json")
    api.call("post", resend, 404, f"/api/v1/shares/{uuid.uuid4()}/resend")

    unlock = "/api/v1/shares/{share_id}/unlock"
    api.call("post", unlock, 409, f"/api/v1/shares/{share}/unlock")
    PatientShare.objects.filter(pk=share).update(status="locked", lock_reason="code")
    api.call("post", unlock, 200, f"/api/v1/shares/{share}/unlock")

    close = "/api/v1/shares/{share_id}/close"
    api.call("post", close, 200, f"/api/v1/shares/{share}/close")
    api.call("post", close, 404, f"/api/v1/shares/{uuid.uuid4()}/close")
    silent = api.call("post", "/api/v1/shares", 201, data=share_fields(allow_reply="false")).json()["id"]
    api.call("post", close, 409, f"/api/v1/shares/{silent}/close")

    revoke = "/api/v1/shares/{share_id}/revoke"
    writer = Api(openapi, user, ["shares:write"])
    writer.call("post", close, 200, f"/api/v1/shares/{share}/close")
    writer.call("post", revoke, 200, f"/api/v1/shares/{share}/revoke")
    api.call("post", resend, 409, f"/api/v1/shares/{share}/resend")
    writer.call("get", detail, 403, f"/api/v1/shares/{share}")


def test_the_rate_limit_answers_as_the_schema_says(openapi: dict[str, Any], settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "1/min"}}
    api = Api(openapi, practitioner())
    api.call("get", "/api/v1/shares", 200)
    response = api.call("get", "/api/v1/shares", 429)
    assert int(response["Retry-After"]) >= 1


def test_the_less_common_answers_are_as_the_schema_says(openapi: dict[str, Any]) -> None:
    user = practitioner()
    colleague = practitioner(user.memberships.get().organisation)
    mine, theirs = personal_mailbox(user), personal_mailbox(colleague)
    api = Api(openapi, user)
    for n in range(2):
        api.call(
            "post",
            "/api/v1/messages",
            201,
            data={"sender": theirs.address, "to": [mine.address], "body": f"n{n}"},
            client=Api(openapi, colleague).client,
        )
    listing = "/api/v1/mailboxes/{mailbox_id}/messages"
    page = api.call("get", listing, 200, f"/api/v1/mailboxes/{mine.pk}/messages?limit=1").json()
    assert page["next"]
    api.call("get", listing, 200, page["next"].removeprefix("http://testserver"))
    # A message whose sender mailbox was deleted since.
    message = Message.objects.filter(sender=theirs).first()
    assert message is not None
    Message.objects.filter(pk=message.pk).update(sender=None)
    api.call("get", "/api/v1/messages/{message_id}", 200, f"/api/v1/messages/{message.pk}")

    # A message sent with a key, then deleted for good: the key's answer is gone.
    sent = api.call(
        "post",
        "/api/v1/messages",
        201,
        data={"sender": mine.address, "to": [theirs.address], "body": "k"},
        HTTP_IDEMPOTENCY_KEY="k",
    ).json()
    api.call(
        "post",
        "/api/v1/messages/{message_id}/move",
        200,
        f"/api/v1/messages/{sent['id']}/move",
        data={"folder": "trash"},
    )
    api.call("delete", "/api/v1/messages/{message_id}", 204, f"/api/v1/messages/{sent['id']}")
    api.call(
        "post",
        "/api/v1/messages",
        409,
        data={"sender": mine.address, "to": [theirs.address], "body": "k"},
        HTTP_IDEMPOTENCY_KEY="k",
    )
    api.call("post", "/api/v1/messages", 400, data={"sender": mine.address}, HTTP_IDEMPOTENCY_KEY="")
    api.call("post", "/api/v1/shares", 415, data={"patient_given_name": "x"}, content_type="application/json")

    # Refused before the view.
    api.call("get", "/api/v1/me", 406, HTTP_ACCEPT="text/html")
    api.call("get", "/api/v1/mailboxes", 411, HTTP_TRANSFER_ENCODING="chunked")
    api.call("get", "/api/v1/mailboxes", 415, HTTP_CONTENT_ENCODING="gzip")
    reader = Api(openapi, user, ["messages:read"])
    reader.call("post", "/api/v1/messages", 403, data={"sender": mine.address})
    ApiToken.objects.filter(user=user).update(revoked_at=timezone.now())
    reader.call("get", "/api/v1/mailboxes", 401)

    share, _token = make_share(colleague)
    audit.record(
        "share.notification_failed",
        target=("sharing.patientshare", str(share.pk)),
        outcome=audit.FAILURE,
        details={"channel": "sms", "reason": "sms:invalid_number", "final": True},
    )
    other = Api(openapi, colleague)
    detail = other.call("get", "/api/v1/shares/{share_id}", 200, f"/api/v1/shares/{share.pk}").json()
    assert any(e["reason"] for e in detail["events"])
    PatientShare.objects.filter(pk=share.pk).update(status="locked", lock_reason="birth_date")
    other.call("get", "/api/v1/shares/{share_id}", 200, f"/api/v1/shares/{share.pk}")
    other.call("post", "/api/v1/shares/{share_id}/resend", 409, f"/api/v1/shares/{share.pk}/resend")
    PatientShare.objects.filter(pk=share.pk).update(expires_at=timezone.now() - datetime.timedelta(days=1))
    other.call("get", "/api/v1/shares/{share_id}", 200, f"/api/v1/shares/{share.pk}")
    listed = other.call("get", "/api/v1/shares", 200, "/api/v1/shares?limit=1")
    assert listed.has_header("Link")


def test_a_content_type_that_cannot_be_read_is_a_documented_400_everywhere(
    openapi: dict[str, Any],
) -> None:
    """The server's own request class refuses such a header before any view, on every
    operation: GET /me and GET /mailboxes (no parameter, no body) listed no 400."""
    # The test's transaction must survive the request (as in test_api_fuzz).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        token = create_token(practitioner(), "schema")[1]
        statuses: list[str] = []
        for path in ("/api/v1/me", "/api/v1/mailboxes"):
            environ = RequestFactory()._base_environ(
                PATH_INFO=path,
                REQUEST_METHOD="GET",
                CONTENT_TYPE="text/plain; a*=bogus''%",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )
            response = PliWSGIHandler()(environ, lambda status, headers: statuses.append(status))
            assert statuses[-1].startswith("400 "), statuses
            check(openapi, "get", path, response)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_each_operation_names_the_token_scope_it_needs(openapi: dict[str, Any]) -> None:
    """A token narrowed to some scopes gets a 403 on the other operations: the schema said
    which scope a call needs nowhere (the README named it for two of them)."""
    user = practitioner()
    for template, operations in openapi["paths"].items():
        path = template.format(
            **{name: uuid.uuid4() for name in ("mailbox_id", "message_id", "attachment_id", "share_id")}
        )
        for method, operation in operations.items():
            description = operation.get("description", "")
            named = re.findall(r"Token scope needed: (.*)\.$", description)
            if template == "/api/v1/me":
                assert not named  # any token
                continue
            assert len(named) == 1, (method, template, description)
            needed = re.findall(r"`([a-z]+:[a-z]+)`", named[0])
            assert needed and set(needed) <= set(SCOPES), (method, template, named)
            enough = Api(openapi, user, needed).client
            assert getattr(enough, method)(path).status_code != 403, (method, template)
            others = Api(openapi, user, [scope for scope in SCOPES if scope not in needed]).client
            assert getattr(others, method)(path).status_code == 403, (method, template)


def test_a_format_parameter_is_ignored_as_any_parameter_the_schema_does_not_list(openapi: dict[str, Any]) -> None:
    """DRF's ``?format=`` chose a renderer: any value but ``json`` answered an existing
    mailbox or share 404 "Not found", a status GET /me and the listings do not list."""
    user = practitioner()
    api = Api(openapi, user)
    share, _token = make_share(user)
    api.call("get", "/api/v1/me", 200, "/api/v1/me?format=xml")
    api.call("get", "/api/v1/shares", 200, "/api/v1/shares?format=csv")
    api.call("get", "/api/v1/shares/{share_id}", 200, f"/api/v1/shares/{share.pk}?format=api")
    mailbox = personal_mailbox(user)
    api.call("get", "/api/v1/mailboxes/{mailbox_id}/messages", 200, f"/api/v1/mailboxes/{mailbox.pk}/messages?format=x")
    # The schema itself is still served as JSON on request, as drf-spectacular documents.
    assert Client().get("/api/v1/schema/?format=json").json()["openapi"].startswith("3.")


# The operations the tests above call; a new one is added to them, and here.
EXERCISED = {
    ("get", "/api/v1/me"),
    ("get", "/api/v1/mailboxes"),
    ("get", "/api/v1/mailboxes/{mailbox_id}/messages"),
    ("post", "/api/v1/mailboxes/{mailbox_id}/messages/search"),
    ("post", "/api/v1/messages"),
    ("get", "/api/v1/messages/{message_id}"),
    ("delete", "/api/v1/messages/{message_id}"),
    ("post", "/api/v1/messages/{message_id}/move"),
    ("post", "/api/v1/messages/{message_id}/unread"),
    ("get", "/api/v1/messages/{message_id}/attachments/{attachment_id}"),
    ("get", "/api/v1/shares"),
    ("post", "/api/v1/shares/search"),
    ("post", "/api/v1/shares"),
    ("get", "/api/v1/shares/{share_id}"),
    ("post", "/api/v1/shares/{share_id}/revoke"),
    ("post", "/api/v1/shares/{share_id}/unlock"),
    ("post", "/api/v1/shares/{share_id}/resend"),
    ("post", "/api/v1/shares/{share_id}/close"),
}


def test_every_operation_of_the_schema_is_exercised_here(openapi: dict[str, Any]) -> None:
    served = {(method, path) for path, operations in openapi["paths"].items() for method in operations}
    assert served == EXERCISED
