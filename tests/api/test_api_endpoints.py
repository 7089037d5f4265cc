from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client
from jsonschema import Draft4Validator
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView
from schemathesis.specs.openapi.definitions import OPENAPI_30

from pli.accounts import services as accounts
from pli.accounts.models import Organisation, User
from pli.api import services
from pli.api.permissions import HasScope
from pli.testing.accounts import make_organisation, make_user


@pytest.fixture
def org(db: None) -> Organisation:
    return make_organisation("Cabinet des Tilleuls")


@pytest.fixture
def user(org: Organisation) -> User:
    return make_user(
        org,
        role="practitioner",
        email="jeanne@example.org",
        first_name="Jeanne",
        last_name="Martin",
        professional=accounts.Professional(profession="Médecin", specialty="Cardiologie", rpps="10003456789"),
    )


@pytest.fixture
def raw_token(user: User) -> str:
    return services.create_token(user, "test")[1]


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_me_returns_the_user_their_organisations_and_mailboxes(
    org: Organisation, user: User, raw_token: str, client: Client
) -> None:
    other = make_organisation("Clinique du Port")
    accounts.add_member(other, user, "assistant")
    shared = accounts.create_shared_mailbox(org, "Secrétariat", [user])
    response = client.get("/api/v1/me", **bearer(raw_token))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = response.json()
    personal = user.personal_mailbox
    assert data == {
        "id": user.pk,
        "email": "jeanne@example.org",
        "first_name": "Jeanne",
        "last_name": "Martin",
        "profession": "Médecin",
        "specialty": "Cardiologie",
        "rpps": "10003456789",
        "organisations": [
            {"id": org.pk, "slug": org.slug, "name": "Cabinet des Tilleuls", "role": "practitioner"},
            {"id": other.pk, "slug": other.slug, "name": "Clinique du Port", "role": "assistant"},
        ],
        "mailboxes": [
            {"id": str(personal.pk), "address": personal.address, "name": personal.name, "kind": "personal"},
            {"id": str(shared.pk), "address": shared.address, "name": "Secrétariat", "kind": "organisational"},
        ],
    }


def test_me_shows_only_the_token_owners_data(org: Organisation, user: User, client: Client) -> None:
    other = make_user(org, email="paul@example.org")
    raw = services.create_token(other, "his")[1]
    data = client.get("/api/v1/me", **bearer(raw)).json()
    assert data["email"] == "paul@example.org"
    assert [mailbox["address"] for mailbox in data["mailboxes"]] == [other.personal_mailbox.address]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer pli_wrong",
        "Bearer " + "pli_" + "a" * 52,
        "Bearer a b",
        "Basic dXNlcjpwYXNz",
        "bearer\u00e9",
    ],
)
def test_missing_or_wrong_token_is_a_json_401(db: None, client: Client, header: str | None) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/api/v1/me", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["detail"]


def test_revoked_token_is_a_401(user: User, client: Client) -> None:
    token, raw = services.create_token(user, "test")
    assert client.get("/api/v1/me", **bearer(raw)).status_code == 200
    services.revoke_token(user, token.pk)
    response = client.get("/api/v1/me", **bearer(raw))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"] or "révoqué" in response.json()["detail"]


def test_a_session_does_not_open_the_api(user: User, client: Client) -> None:
    """The API takes Bearer tokens only: a signed-in browser tab is not an API client."""
    client.force_login(user)
    assert client.get("/api/v1/me").status_code == 401


def test_errors_are_in_french_by_default_and_english_on_request(db: None, client: Client) -> None:
    french = client.get("/api/v1/me", HTTP_AUTHORIZATION="Bearer " + "pli_" + "a" * 52).json()["detail"]
    english = client.get(
        "/api/v1/me", HTTP_AUTHORIZATION="Bearer " + "pli_" + "a" * 52, HTTP_ACCEPT_LANGUAGE="en"
    ).json()["detail"]
    assert english == "Invalid or revoked token."
    assert french != english and "jeton" in french.lower()


class ReadMessages(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scopes = ["messages:read"]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class PerMethod(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scopes = {"GET": ["shares:read"], "POST": ["shares:write"]}

    def get(self, request: Request) -> Response:
        return Response({"read": True})

    def post(self, request: Request) -> Response:
        return Response({"written": True})


def test_scopes_are_enforced(user: User) -> None:
    factory = APIRequestFactory()
    narrow = services.create_token(user, "narrow", ["shares:read"])[1]
    wide = services.create_token(user, "wide", ["messages:read", "shares:read", "shares:write"])[1]

    denied = ReadMessages.as_view()(factory.get("/x", HTTP_AUTHORIZATION=f"Bearer {narrow}"))
    assert denied.status_code == 403
    denied.render()
    assert "messages:read" in json.loads(denied.content)["detail"]
    allowed = ReadMessages.as_view()(factory.get("/x", HTTP_AUTHORIZATION=f"Bearer {wide}"))
    assert allowed.status_code == 200

    assert PerMethod.as_view()(factory.get("/x", HTTP_AUTHORIZATION=f"Bearer {narrow}")).status_code == 200
    assert PerMethod.as_view()(factory.post("/x", HTTP_AUTHORIZATION=f"Bearer {narrow}")).status_code == 403
    assert PerMethod.as_view()(factory.post("/x", HTTP_AUTHORIZATION=f"Bearer {wide}")).status_code == 200


def test_requests_per_token_are_limited(user: User, raw_token: str, client: Client, settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "3/min"}}
    for _ in range(3):
        assert client.get("/api/v1/me", **bearer(raw_token)).status_code == 200
    limited = client.get("/api/v1/me", **bearer(raw_token))
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
    assert limited.json()["detail"]
    # Another token (of the same user) has its own allowance.
    other = services.create_token(user, "other")[1]
    assert client.get("/api/v1/me", **bearer(other)).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/api/", "/api/v1/", "/api/v1", "/api/v1/nothing", "/api/v1/nothing/", "/api/v2/me", "/api/v1/me/x"],
)
def test_unknown_api_paths_are_a_json_404(db: None, client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"detail": "Introuvable."} or json.loads(response.content)["detail"]
    # Written like every other API answer (DRF's renderer): compact.
    assert response.content == b'{"detail":"Introuvable."}'


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("GET", "/api/v1/me/", "/api/v1/me"),
        ("POST", "/api/v1/messages/", "/api/v1/messages"),
        ("GET", f"/api/v1/mailboxes/{uuid.UUID(int=1)}/messages/", f"/api/v1/mailboxes/{uuid.UUID(int=1)}/messages"),
        ("GET", "/api/v1/mailboxes/", "/api/v1/mailboxes"),
    ],
)
def test_a_path_off_by_its_final_slash_names_the_endpoint(
    db: None, client: Client, method: str, path: str, endpoint: str
) -> None:
    """Many HTTP libraries and other APIs' habits add a final slash; a bare "Introuvable."
    sent integrators looking for a missing permission or object instead. The answer says
    how the API spells the address, not whether an object is there."""
    response = client.generic(method, path)
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"Adresse inconnue\u00a0: l\u2019API l\u2019\u00e9crit sans barre oblique finale, {endpoint}."
    }
    response = client.generic(method, path, HTTP_ACCEPT_LANGUAGE="en")
    assert response.json()["detail"] == f"Unknown address: the API writes it without the final slash, {endpoint}."


def test_a_body_refused_before_the_view_is_written_like_every_other_answer(raw_token: str, client: Client) -> None:
    """The framing middleware's 415 came with spaces and \u2019 escapes, where every other
    answer is compact UTF-8."""
    response = client.post(
        "/api/v1/messages", b"x", content_type="multipart/form-data; boundary=x; charset=utf-16", **bearer(raw_token)
    )
    assert response.status_code == 415
    assert (
        response.content
        == (
            '{"detail":"L\u2019encodage (charset) de la requête n\u2019est pas pris en charge'
            '\u00a0: envoyez-la en UTF-8."}'
        ).encode()
    )


def test_wrong_method_is_a_json_405(raw_token: str, client: Client) -> None:
    response = client.post("/api/v1/me", {}, content_type="application/json", **bearer(raw_token))
    assert response.status_code == 405
    assert response.json()["detail"]


def test_schema_is_valid_openapi_3(db: None, client: Client) -> None:
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    # The OpenAPI 3.0 meta-schema (as shipped with schemathesis) rejects any malformed part.
    Draft4Validator(OPENAPI_30).validate(schema)
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    me = schema["paths"]["/api/v1/me"]["get"]
    assert me["security"] == [{"bearerAuth": []}]
    assert {"200", "401", "403", "429"} <= set(me["responses"])
    assert "/api/v1/schema/" not in schema["paths"] and "/api/v1/docs/" not in schema["paths"]


def test_schema_yaml_is_served_too(db: None, client: Client) -> None:
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"openapi: 3." in response.content


def test_docs_page_is_served_locally_without_inline_code(db: None, client: Client) -> None:
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in body
    assert "<style" not in body and "style=" not in body
    for script in body.split("<script")[1:]:
        assert script.lstrip().startswith("src="), "inline script"
    assert "http://" not in body.replace(response.wsgi_request.build_absolute_uri("/"), "")
    assert "https://" not in body
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"/api/v1/schema/" in script.content
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
    # Only read: OPTIONS (which crashed the page's template) and writes are refused.
    for method in ("options", "post", "delete"):
        assert getattr(client, method)("/api/v1/docs/").status_code == 405, method
    assert client.head("/api/v1/docs/").status_code == 200


class Broken(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug")


def test_a_bug_is_a_json_500_without_details(raw_token: str, caplog: pytest.LogCaptureFixture) -> None:
    response = Broken.as_view()(APIRequestFactory().get("/x", HTTP_AUTHORIZATION=f"Bearer {raw_token}"))
    response.render()
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert list(body) == ["detail"] and "a bug" not in body["detail"]
    assert any("RuntimeError" in record.getMessage() for record in caplog.records)


def test_the_frameworks_own_answers_are_written_as_pli_writes_french(raw_token: str, client: Client) -> None:
    """DRF's French gave « Informations d'authentification non fournies. » and « L'en-tête
    « Accept » n'a pas pu être satisfaite. » (an ASCII apostrophe, the header made feminine)
    beside Pli's own answers in the same integration's logs."""
    french = {"HTTP_ACCEPT_LANGUAGE": "fr"}
    missing = client.get("/api/v1/me", **french).json()["detail"]
    assert missing == "Informations d\u2019authentification non fournies."
    refused = client.get("/api/v1/me", HTTP_ACCEPT="text/csv", **french, **bearer(raw_token))
    assert refused.status_code == 406
    assert refused.json()["detail"] == "L\u2019en-tête «\u00a0Accept\u00a0» de la requête ne peut pas être satisfait."
    english = client.get("/api/v1/me", HTTP_ACCEPT_LANGUAGE="en").json()["detail"]
    assert english == "Authentication credentials were not provided."


def test_every_error_the_schema_lists_has_its_json_shape(db: None, client: Client) -> None:
    """A generated client reads an error's body by the schema: the resend's 400 (a contact
    refused) was listed with a description only, no body."""
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    content = response.get("content", {})
                    assert "application/json" in content, (method, path, code)
    resend = schema["paths"]["/api/v1/shares/{share_id}/resend"]["post"]["responses"]["400"]
    assert resend["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ValidationError"}


def test_the_schema_lists_the_406_and_503_the_api_gives(raw_token: str, client: Client) -> None:
    """Every JSON endpoint answers 406 to an ``Accept`` it cannot satisfy, and every one 503
    with ``Retry-After`` while PostgreSQL does not answer: neither was in the schema."""
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "Retry-After" in responses["503"]["headers"], (method, path)
            served = [r.get("content", {}) for code, r in responses.items() if code.startswith("2")]
            if not any("*/*" in content for content in served):
                assert "406" in responses, (method, path)
    attachment = schema["paths"]["/api/v1/messages/{message_id}/attachments/{attachment_id}"]["get"]
    assert "406" not in attachment["responses"]  # any Accept is served
    refused = client.get("/api/v1/mailboxes", HTTP_ACCEPT="text/csv", **bearer(raw_token))
    assert refused.status_code == 406 and refused.json()["detail"]


def test_schema_and_docs_answer_without_the_trailing_slash_too(db: None, client: Client) -> None:
    """Every other path of the API has no trailing slash: /api/v1/schema was a 404."""
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")
    assert "/api/v1/schema" not in schema.json()["paths"] and "/api/v1/docs" not in schema.json()["paths"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and "/api/v1/docs?script=" in docs.content.decode()
    script = client.get("/api/v1/docs?script=")
    assert script.status_code == 200 and b"/api/v1/schema/" in script.content


def test_the_schema_says_a_send_without_files_may_be_a_urlencoded_form(db: None, client: Client) -> None:
    """The README says so and the API takes it; the schema listed multipart only."""
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    content = schema["paths"]["/api/v1/messages"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/x-www-form-urlencoded"}
    form = schema["components"]["schemas"][
        content["application/x-www-form-urlencoded"]["schema"]["$ref"].split("/")[-1]
    ]
    multipart = schema["components"]["schemas"][content["multipart/form-data"]["schema"]["$ref"].split("/")[-1]]
    assert set(multipart["properties"]) - set(form["properties"]) == {"attachments"}


def test_the_frameworks_date_refusals_are_written_as_pli_writes_french(raw_token: str, client: Client) -> None:
    """« La date + heure n'a pas le bon format » and « Valeur de date et heure hors de
    l'intervalle. » were DRF's French, beside Pli's own answers."""
    french = {"HTTP_ACCEPT_LANGUAGE": "fr", **bearer(raw_token)}
    date = client.get("/api/v1/shares?created_before=hier", **french).json()["created_before"][0]
    assert date.startswith(
        "La date et l\u2019heure n\u2019ont pas le bon format. Utilisez l\u2019un de ces formats\u00a0: "
    )
    far = client.get("/api/v1/shares?created_before=0001-01-01T00:00:00", **french).json()["created_before"]
    assert far == ["Date et heure hors de l\u2019intervalle accepté."]


def test_the_schema_gives_the_bounds_of_limit(db: None, client: Client) -> None:
    """``limit`` outside its bounds is a 400: the schema said so in words only, so that a
    generated client could not check it."""
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, default in (("/api/v1/mailboxes/{mailbox_id}/messages", 50), ("/api/v1/shares", 200)):
        (limit,) = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "limit"]
        assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": default}


def test_the_schema_gives_the_form_of_an_idempotency_key(db: None, client: Client) -> None:
    """A key that is not 1 to 255 printable ASCII characters is a 400: the schema said so in
    words only."""
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/v1/messages", "/api/v1/shares"):
        (key,) = [p for p in schema["paths"][path]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
        assert key["in"] == "header" and not key.get("required")
        assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"}


def test_the_schema_lists_the_framing_refusals_of_every_operation(raw_token: str, client: Client) -> None:
    """A chunked or compressed body is refused before any view (411, 415), whatever the
    operation, but the schema listed them for those taking a body only."""
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"411", "415"} <= set(operation["responses"]), (method, path)
    chunked = client.get("/api/v1/me", HTTP_TRANSFER_ENCODING="chunked", **bearer(raw_token))
    assert chunked.status_code == 411
    compressed = client.get("/api/v1/me", HTTP_CONTENT_ENCODING="gzip", **bearer(raw_token))
    assert compressed.status_code == 415


def test_the_readme_names_every_field_a_message_takes() -> None:
    """An integrator reads the README's table: a field the API takes but the table does not
    name (the patient's birthplace, an INS trait) is one their software never sends."""
    from pathlib import Path

    from pli.messaging.serializers import MessageCreateSerializer

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in readme.splitlines() if line.startswith("| `POST /api/v1/messages` |")]
    missing = [name for name in MessageCreateSerializer().fields if f"`{name}`" not in row]
    assert missing == []
