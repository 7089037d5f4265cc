"""Every operation of the live OpenAPI schema, fuzzed by schemathesis through the WSGI app.

Endpoints added to pli.api.urls by other apps are picked up from the schema with no change
here. Requests go in-process to Django's WSGI handler: nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from pli.accounts import services as accounts
from pli.accounts.models import User
from pli.api import services
from pli.testing.accounts import make_organisation, make_user


@pytest.fixture
def api_user(db: None) -> User:
    organisation = make_organisation("Cabinet Fuzz")
    user = make_user(organisation, email="fuzz@example.org", first_name="Fuzz", last_name="Tester")
    accounts.create_shared_mailbox(organisation, "Secrétariat", [user])
    return user


@pytest.fixture
def api_token(api_user: User) -> str:
    return services.create_token(api_user, "fuzz")[1]


@pytest.fixture
def api_schema(db: None, settings: Any) -> Iterator[Any]:
    # The test's transaction must survive the requests: like Django's test client, keep the
    # WSGI handler from closing the connection at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    # Hundreds of requests with one token: the rate limit is tested elsewhere.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "100000/min"}}
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/", WSGIHandler())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def fuzz(schema: Any, mode: GenerationMode, examples: int, check: Callable[[Any], None]) -> list[str]:
    """Run ``check`` on generated cases of every operation; return the operations covered."""
    covered = []
    for result in schema.get_all_operations():
        operation = result.ok()  # an invalid schema part fails here, naming it

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,  # the same cases on every run: a failure is reproducible
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            check(case)

        try:
            run()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
        covered.append(operation.label)
    return covered


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_conforms_to_its_schema(api_schema: Any, api_token: str, mode: GenerationMode) -> None:
    """No 5xx, documented status codes and content types, bodies matching their schemas,
    invalid input refused: schemathesis' standard checks on each operation."""
    headers = {"Authorization": f"Bearer {api_token}"}

    def check(case: Any) -> None:
        # Not "schema-valid data is accepted": business rules (a sender mailbox the user
        # belongs to, an existing recipient) rightly refuse, with a documented 400, values
        # that no schema can describe.
        excluded = [positive_data_acceptance]
        if mode is GenerationMode.NEGATIVE and not any(name.lower() == "authorization" for name in case.headers or {}):
            # The case leaves the token out on purpose: as generated, it must be refused.
            case.call_and_validate(headers={}, excluded_checks=excluded)
            # Then with the token, so that its other parts reach the endpoint; that may make
            # it valid (an unknown query parameter alone is ignored), so it may be accepted.
            excluded = [*excluded, negative_data_rejection]
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    covered = fuzz(api_schema, mode, 25, check)
    assert "GET /api/v1/me" in covered


def test_api_refuses_anonymous_callers_with_json(api_schema: Any) -> None:
    def check(case: Any) -> None:
        response = case.call()
        assert response.status_code == 401, (case.method, case.path, response.status_code)
        assert response.headers["content-type"][0].startswith("application/json")
        assert response.headers["www-authenticate"][0].startswith("Bearer")

    assert "GET /api/v1/me" in fuzz(api_schema, GenerationMode.POSITIVE, 5, check)
