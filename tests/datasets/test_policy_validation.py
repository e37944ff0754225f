"""Every policy key is checked on create and PATCH: a refusal names the keys, changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.datasets.models import Dataset
from tests.datasets.conftest import HOUSEHOLDS_POLICY, households_payload

URL = "/api/v1/datasets/households/"


def _dataset_state() -> list[Any]:
    return list(Dataset.objects.order_by("pk").values())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_groups", "x", "must be a whole number"),
        ("max_groups", 0, "must be from 1 to 1000000000"),
        ("max_groups", 2.5, "must be a whole number"),
        ("max_groups", True, "must be a whole number"),
        ("max_histogram_bins", -3, "must be from 1 to 1000000000"),
        # (null is a merge-patch removal on PATCH: see test_policy_change.py)
        ("max_contributors", "many", "must be a whole number"),
        ("delta", "0", "must be a finite number greater than 0"),
        ("delta", "0.01", "must be at most 0.000001, one over max_contributors (1,000,000)"),
        ("delta", "NaN", "must be a finite number greater than 0"),
        ("delta", "lots", "must be a number"),
        ("max_epsilon_per_organization", "-1", "must be a finite number greater than 0"),
        ("max_epsilon_per_organization", "Infinity", "must be a finite number greater than 0"),
        ("max_epsilon_per_organization", "11", "cannot exceed policy.total_epsilon"),
        ("allowed_organizations", "Acme", "must be a non-empty list"),
        ("allowed_organizations", [], "must be a non-empty list"),
        ("allowed_organizations", ["Nobody Inc"], "names unknown organizations: Nobody Inc"),
        ("allowed_organizations", [999999], "names unknown organizations: 999999"),
        ("allowed_organizations", ["Acme", "Acme"], "must not name an organization twice"),
        ("allowed_columns", ["age", "salary"], "names unknown schema columns: salary"),
        ("allowed_columns", "age", "must be a non-empty list"),
        ("allowed_aggregates", ["count", "stddev"], "names unknown aggregates: stddev"),
        ("allowed_aggregates", ["COUNT"], "names unknown aggregates: COUNT"),
        ("private_keys", "yes", "must be true or false"),
        ("private_keys", ["region"], "must be true or false"),
    ],
)
def test_patch_with_a_bad_policy_value_is_refused(
    api: Any,
    compliance_user: Any,
    business_user: Any,
    dataset: Any,
    key: str,
    value: Any,
    message: str,
) -> None:
    before, events = _dataset_state(), AuditEvent.objects.count()
    policy = {**HOUSEHOLDS_POLICY, key: value}

    response = api(compliance_user).patch(URL, {"policy": policy}, format="json")

    assert response.status_code == 400, response.json()
    body = response.json()
    assert f"policy.{key}" in body["detail"]
    assert [e["field"] for e in body["errors"]] == [f"policy.{key}"]
    assert message in body["errors"][0]["message"]
    assert _dataset_state() == before
    assert AuditEvent.objects.count() == events


def test_unknown_keys_are_refused_by_name_with_every_problem_listed(
    api: Any, compliance_user: Any, dataset: Any
) -> None:
    before = _dataset_state()
    policy = {**HOUSEHOLDS_POLICY, "max_group": 5, "colour": "red", "max_groups": "x"}

    response = api(compliance_user).patch(URL, {"policy": policy}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [
        "policy.colour",
        "policy.max_group",
        "policy.max_groups",
    ]
    assert "Unknown: colour, max_group" in body["detail"]
    assert _dataset_state() == before


def test_create_with_a_bad_policy_is_refused(api: Any, compliance_user: Any) -> None:
    policy = {**HOUSEHOLDS_POLICY, "allowed_columns": ["nope"]}
    response = api(compliance_user).post(
        "/api/v1/datasets/", households_payload(policy=policy), format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "policy.allowed_columns", "message": "names unknown schema columns: nope"}
    ]
    assert Dataset.objects.count() == 0


def test_every_known_key_with_a_good_value_is_kept_in_canonical_form(
    api: Any, compliance_user: Any, business_user: Any, dataset: Any
) -> None:
    policy = {
        **HOUSEHOLDS_POLICY,
        "max_groups": 50,
        "max_histogram_bins": 20,
        "max_contributors": 100000,
        "delta": 0.000001,
        "total_delta": "0.0000050",
        "default_privacy_cap": 3,
        "max_epsilon_per_organization": "2.50",
        "allowed_organizations": [business_user.organization.pk],
        "allowed_columns": ["age", "region"],
        "allowed_aggregates": ["count", "avg", "quantile"],
        "private_keys": True,
    }
    response = api(compliance_user).patch(URL, {"policy": policy}, format="json")

    assert response.status_code == 200, response.json()
    stored = Dataset.objects.get(slug="households").policy
    assert stored == {
        **HOUSEHOLDS_POLICY,
        "max_groups": 50,
        "max_histogram_bins": 20,
        "max_contributors": 100000,
        "delta": "0.000001",
        "total_delta": "0.000005",
        "default_privacy_cap": "3",
        "max_epsilon_per_organization": "2.5",
        "allowed_organizations": ["Acme"],
        "allowed_columns": ["age", "region"],
        "allowed_aggregates": ["count", "avg", "quantile"],
        "private_keys": True,
    }


def test_a_schema_change_must_keep_the_policy_valid(
    api: Any, compliance_user: Any, dataset: Any
) -> None:
    client = api(compliance_user)
    policy = {**HOUSEHOLDS_POLICY, "allowed_columns": ["age", "income"]}
    assert client.patch(URL, {"policy": policy}, format="json").status_code == 200
    before = _dataset_state()
    schema = {"columns": [{"name": "age", "type": "integer", "lower": 18, "upper": 100}]}

    response = client.patch(URL, {"schema": schema}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "policy.allowed_columns", "message": "names unknown schema columns: income"}
    ]
    assert _dataset_state() == before
