"""POST /api/v1/datasets/: compliance publishes a dataset; every bad definition is refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.datasets.models import Dataset
from cleanroom.queries.dp import PRIVACY_UNIT
from tests.datasets.conftest import HOUSEHOLDS_SCHEMA, households_payload

URL = "/api/v1/datasets/"


def test_compliance_creates_a_dataset(api: Any, compliance_user: Any) -> None:
    response = api(compliance_user).post(URL, households_payload(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "households"
    assert body["schema"]["columns"][0] == {
        "name": "age",
        "type": "integer",
        "lower": 18,
        "upper": 100,
    }
    assert body["schema"]["columns"][2] == {
        "name": "income",
        "type": "float",
        "lower": 0.0,
        "upper": 500000.0,
    }
    assert body["contributors"] == 0
    assert body["budget"] == {
        "total_epsilon": "10",
        "spent_epsilon": "0",
        "remaining_epsilon": "10",
        "total_delta": "0",
        "spent_delta": "0",
        "remaining_delta": "0",
        "privacy_unit": PRIVACY_UNIT,
    }
    assert body["policy"] == {
        "total_epsilon": "10",
        "max_query_epsilon": "1",
        "min_contributors": 5,
        "max_rows_per_contributor": 20,
        "auto_approve": True,
    }
    assert body["price"] == {
        "currency": "EUR",
        "per_query": "1.500000",
        "per_epsilon": "10.000000",
        "platform_fee": "0.200000",
    }
    assert body["retention_days"] == 365
    assert body["terms_version"] == 1
    dataset = Dataset.objects.get(slug="households")
    assert dataset.total_epsilon == Decimal("10")
    assert dataset.spent_epsilon == 0
    event = AuditEvent.objects.get(action="cleanroom.dataset.created")
    assert event.subject == "dataset:households"
    assert event.dataset == "households"
    assert event.actor_id == str(compliance_user.pk)


def test_extra_policy_keys_are_kept(api: Any, compliance_user: Any) -> None:
    policy = {**households_payload()["policy"], "allowed_aggregates": ["count", "sum"]}
    response = api(compliance_user).post(URL, households_payload(policy=policy), format="json")
    assert response.status_code == 201
    assert response.json()["policy"]["allowed_aggregates"] == ["count", "sum"]


@pytest.mark.parametrize("role_fixture", ["business_user", "contributor_user"])
def test_other_roles_cannot_create(api: Any, request: Any, role_fixture: str) -> None:
    if role_fixture == "contributor_user":
        user = request.getfixturevalue("contributor").user
    else:
        user = request.getfixturevalue(role_fixture)
    response = api(user).post(URL, households_payload(), format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only compliance officers may change this."
    assert Dataset.objects.count() == 0


def test_anonymous_is_refused(api: Any, db: Any) -> None:
    assert api(None).post(URL, households_payload(), format="json").status_code == 401
    assert api(None).get(URL).status_code == 401


def _columns(*columns: dict[str, Any]) -> dict[str, Any]:
    return {"columns": list(columns)}


BAD_DEFINITIONS = [
    ({"slug": "Bad Slug"}, "slug must be"),
    ({"slug": "with-hyphen"}, "slug must be"),
    ({"schema": {"columns": []}}, "schema must have at least one column."),
    ({"schema": "age"}, "schema must be an object with a list of columns."),
    ({"schema": _columns({"name": "age", "type": "date"})}, "type must be one of"),
    ({"schema": _columns({"name": "age", "type": "integer"})}, "need lower and upper bounds"),
    (
        {"schema": _columns({"name": "age", "type": "integer", "lower": 5, "upper": 5})},
        "lower must be less than upper",
    ),
    (
        {"schema": _columns({"name": "age", "type": "integer", "lower": 0.5, "upper": 5})},
        "integer bounds must be whole numbers",
    ),
    (
        {"schema": _columns({"name": "x", "type": "float", "lower": "nan", "upper": 1})},
        "must be a finite number",
    ),
    (
        {"schema": _columns({"name": "a", "type": "boolean"}, {"name": "a", "type": "boolean"})},
        "appears twice",
    ),
    ({"schema": _columns({"name": "contributor_id", "type": "boolean"})}, "reserved"),
    ({"schema": _columns({"name": "Age", "type": "boolean"})}, "lowercase letters"),
    (
        {"schema": _columns({"name": "r", "type": "string", "categories": []})},
        "categories must be a list",
    ),
    (
        {"schema": _columns({"name": "r", "type": "string", "categories": ["a", "a"]})},
        "categories must be unique",
    ),
    (
        {"schema": _columns({"name": "r", "type": "boolean", "secret": True})},
        "unknown field(s) secret",
    ),
    ({"policy": {"total_epsilon": "1"}}, "policy is missing"),
    (
        {
            "policy": {
                "total_epsilon": "1",
                "max_query_epsilon": "2",
                "min_contributors": 5,
                "max_rows_per_contributor": 10,
                "auto_approve": True,
            }
        },
        "max_query_epsilon cannot exceed",
    ),
    (
        {
            "policy": {
                "total_epsilon": "-1",
                "max_query_epsilon": "0.5",
                "min_contributors": 5,
                "max_rows_per_contributor": 10,
                "auto_approve": True,
            }
        },
        "epsilons must be greater than 0",
    ),
    (
        {
            "policy": {
                "total_epsilon": "1",
                "max_query_epsilon": "0.5",
                "min_contributors": 0,
                "max_rows_per_contributor": 10,
                "auto_approve": True,
            }
        },
        "min_contributors must be a whole number",
    ),
    (
        {
            "policy": {
                "total_epsilon": "1",
                "max_query_epsilon": "0.5",
                "min_contributors": 5,
                "max_rows_per_contributor": 10,
                "auto_approve": "yes",
            }
        },
        "auto_approve must be true or false",
    ),
    (
        {
            "price": {
                "currency": "euro",
                "per_query": "1",
                "per_epsilon": "1",
                "platform_fee": "0.2",
            }
        },
        "three-letter code",
    ),
    (
        {"price": {"currency": "EUR", "per_query": "1", "per_epsilon": "1", "platform_fee": "2"}},
        "platform_fee is a fraction",
    ),
    (
        {
            "price": {
                "currency": "EUR",
                "per_query": "0.0000001",
                "per_epsilon": "1",
                "platform_fee": "0.2",
            }
        },
        "at most 6 decimal places",
    ),
    (
        {"price": {"currency": "EUR", "per_query": "-1", "per_epsilon": "1", "platform_fee": "0"}},
        "cannot be negative",
    ),
    ({"retention_days": 0}, "retention_days must be"),
]


@pytest.mark.parametrize(("override", "message"), BAD_DEFINITIONS)
def test_bad_definitions_are_refused(
    api: Any, compliance_user: Any, override: dict[str, Any], message: str
) -> None:
    response = api(compliance_user).post(URL, households_payload(**override), format="json")

    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"]
    assert Dataset.objects.count() == 0
    assert not AuditEvent.objects.filter(action="cleanroom.dataset.created").exists()


def test_duplicate_slug_is_a_conflict(api: Any, compliance_user: Any, dataset: Any) -> None:
    response = api(compliance_user).post(
        URL, households_payload(name="Other", schema=HOUSEHOLDS_SCHEMA), format="json"
    )
    assert response.status_code == 409
    assert response.json()["detail"] == "A dataset named 'households' already exists."
    assert Dataset.objects.get().name == "Households"
