"""POST /api/v1/queries/preview/: epsilon, price and expected accuracy; spends nothing."""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent
from tests.queries.conftest import budget_state


def test_preview_gives_accuracy_per_output_cell_and_spends_nothing(
    households: Any, business_user: Any, api: Any
) -> None:
    before = budget_state(households)
    events = AuditEvent.objects.count()
    response = api(business_user).post(
        "/api/v1/queries/preview/",
        {
            "dataset": "households",
            "sql": "SELECT region, COUNT(*) AS n, SUM(age) AS s, AVG(income) AS m, MEDIAN(age) AS med "
            "FROM households GROUP BY region",
            "epsilon": "0.8",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["epsilon"] == 0.8
    assert body["price"] == "9.500000"
    assert body["currency"] == "EUR"
    assert body["columns"] == ["region", "n", "s", "m", "med"]
    assert body["groups"] == 4
    assert body["fits_budget"] is True
    accuracy = {entry["column"]: entry for entry in body["accuracy"]}
    assert set(accuracy) == {"n", "s", "m", "med"}
    # Three noisy statistics share 0.8 (count, sum(age), sum(income)) plus the median:
    # each count carries Laplace noise whose 95% half-width is reported.
    assert accuracy["n"]["distribution"] == "Integer Laplace"
    assert accuracy["n"]["half_width"] > 0
    assert accuracy["s"]["half_width"] > accuracy["n"]["half_width"]
    # A mean's half-width is stated for a group of the pool's even share (6 // 4 groups).
    assert accuracy["m"]["group_size"] == 1 and accuracy["m"]["half_width"] > 0
    assert body["pool_size"] == 6 and body["delta"] == 0.0
    assert accuracy["med"]["half_width"] is None
    assert budget_state(households) == before
    assert AuditEvent.objects.count() == events


def test_more_epsilon_means_narrower_intervals(
    households: Any, business_user: Any, api: Any
) -> None:
    def half_width(epsilon: float) -> float:
        response = api(business_user).post(
            "/api/v1/queries/preview/",
            {
                "dataset": "households",
                "sql": "SELECT COUNT(*) AS n FROM households",
                "epsilon": epsilon,
            },
            format="json",
        )
        return float(response.json()["accuracy"][0]["half_width"])

    assert half_width(0.1) > 5 * half_width(1.0)


def test_preview_refusals_name_the_construct(households: Any, business_user: Any, api: Any) -> None:
    response = api(business_user).post(
        "/api/v1/queries/preview/",
        {"dataset": "households", "sql": "SELECT COUNT(*) FROM households ORDER BY 1"},
        format="json",
    )
    assert response.status_code == 400
    assert "ORDER BY" in response.json()["detail"]


def test_compliance_cannot_preview(households: Any, compliance_user: Any, api: Any) -> None:
    response = api(compliance_user).post(
        "/api/v1/queries/preview/",
        {"dataset": "households", "sql": "SELECT COUNT(*) FROM households"},
        format="json",
    )
    assert response.status_code == 403
