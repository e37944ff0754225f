"""The OpenAPI schema says what the service does: a schemathesis run over every operation.

Cases are generated from `/api/v1/schema/` (a few per operation, deterministic) and sent as a
business user and as a compliance officer, in process through the WSGI application, against a
dataset with a pool, a pending query and a trusted issuer. Every answer must be documented:
no server error, a documented status code and content type, and a body that matches the
documented schema (issue 11, defect 8). Hand-made hostile shapes the generator does not
build are in test_hostile_input.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.foundation.test_hostile_input import world  # noqa: F401  (the fixture)
from tests.queries.conftest import pool_dataset  # noqa: F401  (the fixture)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 4  # per operation and role: the run stays under a minute


def _token(user: Any) -> str:
    from cleanroom.accounts.services import token_for

    return token_for(user=user)


def _calling(check: Any) -> Any:
    def run(case: Any) -> None:
        check(case)

    return run


@pytest.fixture
def wsgi_in_test_transaction() -> Any:
    """The WSGI handler closes the database connection when a request starts and finishes
    (the test's transaction with it); Django's test client unhooks that, and so do we."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
def test_every_operation_answers_as_its_schema_says(
    world: Any,  # noqa: F811
    wsgi_in_test_transaction: Any,
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", wsgi_in_test_transaction)
    failures: list[str] = []
    calls = 0
    for role in ("business", "compliance"):
        headers = {"Authorization": f"Token {_token(world[role])}"}
        for result in schema.get_all_operations():
            operation = result.ok()

            def check(case: Any, role: str = role, headers: dict[str, str] = headers) -> None:
                nonlocal calls
                savepoint = transaction.savepoint()
                response = case.call(headers=headers)
                calls += 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except BaseException as failure:  # noqa: B036  (FailureGroup is an exception group)
                    first = str(failure).strip().splitlines()[:6]
                    failures.append(
                        f"{role} {case.method} {case.formatted_path} -> "
                        f"{response.status_code}: " + " | ".join(first)
                    )
                if response.status_code >= 500:
                    transaction.savepoint_rollback(savepoint)
                else:
                    transaction.savepoint_commit(savepoint)

            run = hypothesis_settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=operation.as_strategy())(_calling(check)))
            run()
    assert calls > 100
    unique = sorted(set(failures))
    assert not unique, f"{len(unique)} schema violations:\n" + "\n".join(unique)
