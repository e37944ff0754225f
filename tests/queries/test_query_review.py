"""Approvals: pending queries wait for compliance, who approve or reject with a reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.queries.models import BudgetCharge, Query
from tests.queries.conftest import budget_state

SQL = "SELECT COUNT(*) AS n FROM households"


@pytest.fixture
def reviewed(pool_dataset: Any) -> Any:
    return pool_dataset(policy={"auto_approve": False})


def pending(api: Any, user: Any) -> int:
    response = api(user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": SQL, "epsilon": 0.5}, format="json"
    )
    assert response.status_code == 202
    assert response.json()["status"] == "pending_approval"
    return int(response.json()["id"])


def test_approve_queues_the_query(
    reviewed: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    pk = pending(api, business_user)
    response = api(compliance_user).post(
        f"/api/v1/queries/{pk}/approve/", {"reason": "Aggregate only"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert response.json()["review_reason"] == "Aggregate only"
    query = Query.objects.get(pk=pk)
    assert query.reviewed_by == compliance_user
    actions = list(
        AuditEvent.objects.filter(subject=f"query:{pk}").values_list("action", flat=True)
    )
    assert actions[-2:] == ["cleanroom.query.approved", "cleanroom.query.queued"]


def test_reject_needs_a_reason_and_gives_the_budget_back(
    reviewed: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    pk = pending(api, business_user)
    reviewed.refresh_from_db()
    assert reviewed.spent_epsilon == Decimal("0.5")
    before = budget_state(reviewed)
    missing = api(compliance_user).post(f"/api/v1/queries/{pk}/reject/", {}, format="json")
    assert missing.status_code == 400
    assert "reason is required" in missing.json()["detail"]
    assert budget_state(reviewed) == before
    assert Query.objects.get(pk=pk).status == "pending_approval"

    response = api(compliance_user).post(
        f"/api/v1/queries/{pk}/reject/", {"reason": "Too narrow'); DROP TABLE x;--"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["result"] is None
    reviewed.refresh_from_db()
    assert reviewed.spent_epsilon == Decimal("0")
    assert BudgetCharge.objects.get(query_id=pk).state == "refunded"
    event = AuditEvent.objects.get(subject=f"query:{pk}", action="cleanroom.query.rejected")
    assert event.payload == {"reason": "Too narrow'); DROP TABLE x;--"}
    assert (
        AuditEvent.objects.filter(subject=f"query:{pk}", action="cleanroom.budget.refunded").count()
        == 1
    )


def test_decisions_are_final(
    reviewed: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    pk = pending(api, business_user)
    assert (
        api(compliance_user)
        .post(f"/api/v1/queries/{pk}/reject/", {"reason": "no"}, format="json")
        .status_code
        == 200
    )
    again = api(compliance_user).post(f"/api/v1/queries/{pk}/approve/", {}, format="json")
    assert again.status_code == 409
    assert "rejected" in again.json()["detail"]
    twice = api(compliance_user).post(
        f"/api/v1/queries/{pk}/reject/", {"reason": "no"}, format="json"
    )
    assert twice.status_code == 409
    reviewed.refresh_from_db()
    assert reviewed.spent_epsilon == Decimal("0")


def test_only_compliance_reviews(reviewed: Any, business_user: Any, api: Any) -> None:
    pk = pending(api, business_user)
    assert (
        api(business_user).post(f"/api/v1/queries/{pk}/approve/", {}, format="json").status_code
        == 403
    )
    assert (
        api(business_user)
        .post(f"/api/v1/queries/{pk}/reject/", {"reason": "x"}, format="json")
        .status_code
        == 403
    )
    assert Query.objects.get(pk=pk).status == "pending_approval"


def test_review_of_unknown_query_is_404(compliance_user: Any, api: Any) -> None:
    assert (
        api(compliance_user).post("/api/v1/queries/999999/approve/", {}, format="json").status_code
        == 404
    )
