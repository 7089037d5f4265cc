"""OpenAPI details drf-spectacular can't guess: the Bearer scheme, the token scope each
operation needs, and the error answers that every endpoint may give (documented once here,
not on each view)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from pli.api.permissions import HasScope, required_scopes

SECURITY_SCHEME = "bearerAuth"


class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "pli.api.authentication.BearerTokenAuthentication"
    name = SECURITY_SCHEME

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal token (`pli_…`) created in Settings → API tokens or with "
            "`pli token create`. Send it as `Authorization: Bearer <token>`.",
        }


class PliAutoSchema(AutoSchema):
    """Each operation's description ends with the scopes its token needs (``HasScope``): a
    token narrowed to others gets a 403, and a client generated from the schema could not
    tell why."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None or HasScope not in getattr(self.view, "permission_classes", []):
            return operation
        scopes = required_scopes(self.view, self.method)
        if scopes:
            needed = "Token scope needed: " + ", ".join(f"`{scope}`" for scope in scopes) + "."
            operation["description"] = "\n\n".join(filter(None, [operation.get("description"), needed]))
        return operation


_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What went wrong, in the user's language."}},
    "required": ["detail"],
}
_CONFLICT = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, in the user's language."},
        "code": {
            "type": "string",
            "enum": ["in_progress", "result_gone"],
            "description": "For an `Idempotency-Key` seen before: `in_progress`, the first request is still being "
            "processed (retry after `Retry-After` seconds); `result_gone`, what it made no longer exists (use a "
            "new key).",
        },
    },
    "required": ["detail"],
}
_VALIDATION_ERROR = {
    "type": "object",
    "description": "Field name → list of messages; what concerns no single field is one text under `detail`.",
    "properties": {"detail": {"type": "string", "description": "What concerns the request as a whole."}},
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


def _error(description: str, schema: str = "Error", headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if headers:
        response["headers"] = headers
    return response


_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'The scheme to use: `Bearer realm="api"`.'}
}
_RATE_LIMIT = {
    "RateLimit-Limit": {"schema": {"type": "integer"}, "description": "Requests a token may make per period."},
    "RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "Requests left to this token now."},
    "RateLimit-Reset": {"schema": {"type": "integer"}, "description": "Seconds until the current period ends."},
}
_RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Seconds to wait before retrying."}
}


_COMPONENTS = "#/components/schemas/"


def document_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the shared error answers to each operation."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", _ERROR)
    schemas.setdefault("ValidationError", _VALIDATION_ERROR)
    schemas.setdefault("Conflict", _CONFLICT)
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            secured = any(requirement for requirement in operation.get("security", []))
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("400", _error("Invalid input, per field.", "ValidationError"))
            if secured:
                for code, response in responses.items():
                    if code[0] == "2":
                        response.setdefault("headers", {}).update(_RATE_LIMIT)
                responses.setdefault("401", _error("Missing, invalid or revoked token.", headers=_WWW_AUTHENTICATE))
                responses.setdefault("403", _error("The token lacks a scope, or the user a right, this request needs."))
                responses.setdefault(
                    "429",
                    _error(
                        "Too many requests with this token; retry after `Retry-After` seconds.",
                        headers={**_RETRY_AFTER, **_RATE_LIMIT},
                    ),
                )
                # Every authenticated request writes (the token's last use, the audit trail).
                responses.setdefault(
                    "507", _error("The server's storage (its disk or its database's) is full: nothing was saved.")
                )
                responses.setdefault(
                    "503",
                    _error(
                        "The database does not answer for a moment; retry after `Retry-After` seconds. A request "
                        "cut short may have been saved: check before sending it again.",
                        headers=_RETRY_AFTER,
                    ),
                )
            if not any("*/*" in response.get("content", {}) for code, response in responses.items() if code[0] == "2"):
                # DRF's content negotiation, before the view: only JSON is written.
                responses.setdefault("406", _error("The `Accept` header asks for no type this answer has (JSON)."))
            for content in operation.get("requestBody", {}).get("content", {}).values():
                # pli.core.api.refuse_unknown: a field the body does not define is a 400.
                reference = content.get("schema", {}).get("$ref", "")
                if reference.startswith(_COMPONENTS):
                    schemas[reference.removeprefix(_COMPONENTS)]["additionalProperties"] = False
            if "{" in path:
                responses.setdefault("404", _error("No such object, or not yours."))
            if operation.get("requestBody"):
                responses.setdefault("415", _error("Unsupported request body type, charset or encoding."))
            # Any request may get these (pli.core.middleware and pli.core.wsgi, before the
            # view), the operations that take no body or parameter too.
            responses.setdefault(
                "400", _error("A `Content-Type` header that cannot be read (before the view).", "ValidationError")
            )
            responses.setdefault("411", _error("A chunked body: send it with Content-Length."))
            responses.setdefault("415", _error("A compressed body (`Content-Encoding`): send it uncompressed."))
            if operation.get("requestBody"):
                responses.setdefault(
                    "408",
                    _error(
                        "The client stopped sending its body (PLI_CLIENT_TIMEOUT); the part it stopped in is named.",
                        "ValidationError",
                    ),
                )
            # Views describe these in words; their bodies are the shared shapes.
            for code, schema in (
                ("400", "ValidationError"),
                ("409", "Conflict"),
                ("413", "ValidationError"),
                ("422", "Error"),
            ):
                if code in responses and "content" not in responses[code]:
                    # A 409's Retry-After comes with `in_progress` only: said in words, as every
                    # header listed here is checked on every such answer.
                    responses[code] = _error(responses[code].get("description", ""), schema)
    return result


# The creating calls (POST /messages, POST /shares): pli.api.idempotency.
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    # As pli.api.idempotency.requested_key checks it.
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    location=OpenApiParameter.HEADER,
    required=False,
    description="Optional, 1 to 255 printable ASCII characters (a UUID, say), new for each new request. "
    "Sent again with exactly the same request (after a dropped connection), it answers the first "
    "request's `201` and body again instead of creating a second one. Kept 24 hours, per user and endpoint.",
)
IDEMPOTENCY_RESPONSES = {
    409: OpenApiResponse(
        description="A request with this `Idempotency-Key` is still being processed (`code` `in_progress`: "
        "retry after `Retry-After` seconds), or the message or share it made no longer exists (`code` "
        "`result_gone`: use a new key)."
    ),
    422: OpenApiResponse(description="This `Idempotency-Key` was already used for a different request."),
}
