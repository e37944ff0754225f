"""PATCH /api/v1/datasets/{slug}/ with a partial policy (merged) and ?dry_run=1.

A dry run answers the diff, which changes need new consent and how many contributors
leave the pool until they consent again, and changes nothing; the real change does what
the dry run said.
"""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent
from cleanroom.datasets.models import Consent, Dataset
from cleanroom.datasets.selectors import pool_size
from tests.datasets.conftest import HOUSEHOLDS_POLICY, record

URL = "/api/v1/datasets/households/"


def _state(dataset: Any) -> tuple[Any, ...]:
    fresh = Dataset.objects.get(pk=dataset.pk)
    return (
        fresh.policy,
        fresh.price,
        fresh.terms_version,
        fresh.total_epsilon,
        AuditEvent.objects.filter(action="cleanroom.dataset.updated").count(),
        Consent.objects.count(),
    )


def _pool(dataset: Any, consented: Any, upload: Any, size: int) -> None:
    for _ in range(size):
        upload(consented(), dataset, [record()])


def test_a_partial_policy_is_merged_not_replaced(
    api: Any, compliance_user: Any, dataset: Any
) -> None:
    response = api(compliance_user).patch(
        URL, {"policy": {"max_query_epsilon": "0.5"}}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["policy"] == {**HOUSEHOLDS_POLICY, "max_query_epsilon": "0.5"}
    assert response.json()["terms_version"] == 1  # a lower cap only protects contributors


def test_a_null_key_removes_an_optional_limit_and_that_needs_consent(
    api: Any, compliance_user: Any, dataset: Any
) -> None:
    client = api(compliance_user)
    client.patch(URL, {"policy": {"allowed_aggregates": ["count"]}}, format="json")
    body = client.patch(URL, {"policy": {"allowed_aggregates": None}}, format="json").json()
    assert "allowed_aggregates" not in body["policy"]
    assert body["terms_version"] == 2


def test_dry_run_reports_the_diff_consent_and_who_leaves_and_changes_nothing(
    api: Any, compliance_user: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    _pool(dataset, consented, upload, 6)
    before = _state(dataset)
    patch = {"policy": {"total_epsilon": "20", "min_contributors": 8, "auto_approve": True}}

    response = api(compliance_user).patch(URL + "?dry_run=1", patch, format="json")

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "changes": [
            {
                "field": "policy.min_contributors",
                "from": 5,
                "to": 8,
                "needs_reconsent": False,
                "why": "raises it",
            },
            {
                "field": "policy.total_epsilon",
                "from": "10",
                "to": "20",
                "needs_reconsent": True,
                "why": "raises it",
            },
        ],
        "needs_reconsent": True,
        "contributors_leaving": 6,
        "terms_version": 2,
    }
    assert _state(dataset) == before
    # The real change does what the dry run said: the six leave until they consent again.
    assert api(compliance_user).patch(URL, patch, format="json").json()["terms_version"] == 2
    assert pool_size(dataset=Dataset.objects.get(pk=dataset.pk)) == 0


def test_dry_run_of_a_protective_change_keeps_everyone(
    api: Any, compliance_user: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    _pool(dataset, consented, upload, 3)
    patch = {"policy": {"max_query_epsilon": "0.5", "default_privacy_cap": "2"}}
    body = api(compliance_user).patch(URL + "?dry_run=1", patch, format="json").json()
    assert [(c["field"], c["needs_reconsent"]) for c in body["changes"]] == [
        ("policy.default_privacy_cap", False),
        ("policy.max_query_epsilon", False),
    ]
    assert (body["needs_reconsent"], body["contributors_leaving"]) == (False, 0)
    api(compliance_user).patch(URL, patch, format="json")
    assert pool_size(dataset=Dataset.objects.get(pk=dataset.pk)) == 3


def test_dry_run_refuses_what_the_change_refuses_and_other_roles(
    api: Any, compliance_user: Any, business_user: Any, dataset: Any
) -> None:
    before = _state(dataset)
    bad = api(compliance_user).patch(
        URL + "?dry_run=1", {"policy": {"max_query_epsilon": "50"}}, format="json"
    )
    assert bad.status_code == 400
    assert bad.json()["detail"] == "policy.max_query_epsilon cannot exceed policy.total_epsilon."
    junk = api(compliance_user).patch(URL + "?dry_run=maybe", {"name": "x"}, format="json")
    assert (junk.status_code, junk.json()["detail"]) == (400, "dry_run must be 1 or 0.")
    other = api(business_user).patch(URL + "?dry_run=1", {"name": "x"}, format="json")
    assert other.status_code == 403
    assert _state(dataset) == before
