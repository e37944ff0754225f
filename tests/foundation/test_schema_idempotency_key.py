"""The OpenAPI schema documents `Idempotency-Key` exactly where it is honoured.

The schema is built as `manage.py spectacular` builds it. An operation honours the header
when its view method is wrapped by `cleanroom.idempotency.idempotent` (found by the wrapper's
code, not by anything the decorator declares about itself), so a view cannot honour the
header without the schema saying so, and no other operation claims it.
"""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.response import Response

from cleanroom.idempotency import idempotent

# Every function `idempotent` returns runs this code object.
_IDEMPOTENT_CODE = idempotent(lambda view, request: Response()).__code__


def _is_idempotent(handler: Any) -> bool:
    function = getattr(handler, "__func__", handler)
    while function is not None:
        if getattr(function, "__code__", None) is _IDEMPOTENT_CODE:
            return True
        function = getattr(function, "__wrapped__", None)
    return False


def _idempotency_parameters(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        parameter
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "header" and parameter["name"].lower() == "idempotency-key"
    ]


@pytest.fixture(scope="module")
def schema_and_endpoints() -> tuple[dict[str, Any], list[tuple[str, str, Any]]]:
    generator = SchemaGenerator()
    schema = generator.get_schema(request=None, public=True)
    # (path, method, view class) of every operation the generator saw; drf-spectacular's
    # endpoints are (path, path regex, method, view) although DRF's stubs say three items.
    seen: list[Any] = list(generator.endpoints or [])
    endpoints = [(path, method, view.cls) for path, _, method, view in seen]
    return schema, endpoints


def test_exactly_the_idempotent_operations_declare_the_header(
    schema_and_endpoints: tuple[dict[str, Any], list[tuple[str, str, Any]]],
) -> None:
    schema, endpoints = schema_and_endpoints
    honouring = {
        # drf-spectacular names a path's pk "id" (SCHEMA_COERCE_PATH_PK).
        (path.replace("{pk}", "{id}"), method.lower())
        for path, method, view_class in endpoints
        if _is_idempotent(getattr(view_class, method.lower(), None))
    }
    declaring = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if _idempotency_parameters(operation)
    }

    # The uploads, top-ups and query submissions of API.md "Retries" are among them.
    assert {
        ("/api/v1/datasets/{slug}/contributions/", "post"),
        ("/api/v1/billing/top-ups/", "post"),
        ("/api/v1/queries/", "post"),
    } <= honouring
    assert declaring == honouring


def test_the_header_is_an_optional_string_bounded_as_enforced(
    schema_and_endpoints: tuple[dict[str, Any], list[tuple[str, str, Any]]],
) -> None:
    schema, _ = schema_and_endpoints
    (parameter,) = _idempotency_parameters(schema["paths"]["/api/v1/queries/"]["post"])

    assert parameter["name"] == "Idempotency-Key"
    assert parameter.get("required", False) is False  # OpenAPI leaves out the default
    assert parameter["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[ -~]+$",
    }
    description = parameter["description"]
    assert "replay" in description
    assert "409" in description
    assert "Idempotent-Replayed: true" in description


def test_a_replayed_answer_is_the_documented_success_with_a_replayed_header(
    schema_and_endpoints: tuple[dict[str, Any], list[tuple[str, str, Any]]],
) -> None:
    schema, _ = schema_and_endpoints
    responses = schema["paths"]["/api/v1/queries/"]["post"]["responses"]

    assert responses["202"]["headers"] == {
        "Idempotent-Replayed": {
            "schema": {"type": "string", "enum": ["true"]},
            "description": "Present on a replayed answer to a repeated Idempotency-Key.",
        }
    }
    # Errors are never replayed, so they do not carry the header.
    assert "headers" not in responses["409"]
