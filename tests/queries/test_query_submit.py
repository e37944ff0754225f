"""POST /api/v1/queries/: accepted queries reserve budget; refused ones change nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.queries.models import BudgetCharge, Query
from tests.queries.conftest import budget_state

SQL = "SELECT region, COUNT(*) AS n, AVG(income) AS mean_income FROM households GROUP BY region"


def submit(api: Any, user: Any, **body: Any) -> Any:
    payload = {"dataset": "households", "sql": SQL, "epsilon": 0.5} | body
    return api(user).post("/api/v1/queries/", payload, format="json")


def test_submission_is_accepted_and_reserves_its_exact_cost(
    households: Any, business_user: Any, api: Any
) -> None:
    response = submit(api, business_user)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["epsilon"] == 0.5
    assert body["price"] == "6.500000"
    query = Query.objects.get(pk=body["id"])
    assert query.organization == business_user.organization
    assert query.price == 6_500_000
    charge = BudgetCharge.objects.get(query=query)
    assert (charge.state, charge.epsilon) == ("reserved", Decimal("0.5"))
    households.refresh_from_db()
    assert households.spent_epsilon == Decimal("0.5")
    actions = list(
        AuditEvent.objects.filter(subject=f"query:{query.pk}").values_list("action", flat=True)
    )
    assert actions == [
        "payouts.query.held",
        "cleanroom.query.submitted",
        "cleanroom.budget.charged",
        "cleanroom.query.approved",
        "cleanroom.query.queued",
    ]


def test_default_epsilon_is_the_smaller_of_one_and_the_cap(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    pool_dataset(policy={"max_query_epsilon": "0.25"}, contributors=6)
    response = api(business_user).post(
        "/api/v1/queries/",
        {"dataset": "households", "sql": "SELECT COUNT(*) FROM households"},
        format="json",
    )
    assert response.status_code == 202
    assert response.json()["epsilon"] == 0.25


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"sql": "SELECT * FROM households"}, 400, "SELECT *"),
        ({"sql": "SELECT age FROM households"}, 400, "Bare column"),
        (
            {"sql": "SELECT COUNT(*) FROM households; DROP TABLE households"},
            400,
            "second statement",
        ),
        (
            {"sql": "SELECT contributor_id, COUNT(*) FROM households GROUP BY contributor_id"},
            400,
            "identifier",
        ),
        ({"epsilon": "NaN"}, 400, "finite"),
        ({"epsilon": "Infinity"}, 400, "finite"),
        ({"epsilon": "-inf"}, 400, "finite"),
        ({"epsilon": -1}, 400, "greater than zero"),
        ({"epsilon": 0}, 400, "greater than zero"),
        ({"epsilon": 1e308}, 400, "per-query cap"),
        ({"epsilon": 1.0000001}, 400, "per-query cap"),
        ({"epsilon": "1; DROP TABLE queries_query"}, 400, "must be a number"),
        ({"epsilon": True}, 400, "epsilon"),
        ({"epsilon": [1]}, 400, "epsilon"),
        ({"epsilon": 1e-30}, 400, "at least"),
        ({"dataset": "nope"}, 404, "No dataset"),
        ({"dataset": "households' OR '1'='1"}, 404, "No dataset"),
        ({"dataset": ""}, 400, "dataset"),
        ({"sql": ""}, 400, "sql"),
        ({"sql": 12}, 400, "Only a SELECT"),
    ],
)
def test_refused_submissions_change_nothing(
    households: Any, business_user: Any, api: Any, body: dict[str, Any], status: int, detail: str
) -> None:
    before = budget_state(households)
    # A refusal appends only its own record (cleanroom/refusals.py).
    others = AuditEvent.objects.exclude(action__endswith=".refused")
    events = others.count()
    response = submit(api, business_user, **body)
    assert response.status_code == status, response.json()
    problem = response.json()
    assert set(problem) >= {"type", "title", "detail", "errors"}
    assert detail.lower() in problem["detail"].lower()
    assert budget_state(households) == before
    assert others.count() == events
    assert AuditEvent.objects.filter(action__endswith=".refused").count() == 1


def test_nan_json_literal_is_a_parse_error(households: Any, business_user: Any, api: Any) -> None:
    response = api(business_user).post(
        "/api/v1/queries/",
        '{"dataset": "households", "sql": "SELECT COUNT(*) FROM households", "epsilon": NaN}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert budget_state(households)[1] == 0


def test_budget_exhausted_is_refused_with_nothing_spent(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    dataset = pool_dataset(
        policy={"total_epsilon": "1", "max_query_epsilon": "0.6"}, contributors=6
    )
    assert submit(api, business_user, epsilon=0.6).status_code == 202
    before = budget_state(dataset)
    response = submit(api, business_user, epsilon=0.5)
    assert response.status_code == 400
    assert response.json()["type"] == "budget-exhausted"
    assert "0.4 left" in response.json()["detail"]
    assert budget_state(dataset) == before


def test_per_organization_cap(pool_dataset: Any, business_user: Any, api: Any) -> None:
    dataset = pool_dataset(policy={"max_epsilon_per_organization": "0.7"}, contributors=6)
    assert submit(api, business_user, epsilon=0.5).status_code == 202
    before = budget_state(dataset)
    response = submit(api, business_user, epsilon=0.5)
    assert response.status_code == 400
    assert "at most epsilon 0.7" in response.json()["detail"]
    assert budget_state(dataset) == before


def test_insufficient_balance_is_400_and_nothing_spent(
    households: Any, other_business_user: Any, api: Any
) -> None:
    before = budget_state(households)
    response = submit(api, other_business_user)
    assert response.status_code == 400
    assert "top up" in response.json()["detail"]
    assert budget_state(households) == before


def test_too_few_contributors_is_refused(pool_dataset: Any, business_user: Any, api: Any) -> None:
    dataset = pool_dataset(contributors=3, policy={"min_contributors": 4})
    before = budget_state(dataset)
    response = submit(api, business_user)
    assert response.status_code == 400
    assert "at least 4" in response.json()["detail"]
    assert budget_state(dataset) == before


def test_bounds_overflow_is_refused_before_spending(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    schema = {"columns": [{"name": "big", "type": "integer", "lower": -(2**62), "upper": 2**62}]}
    dataset = pool_dataset(
        slug="bigint", schema=schema, records=[[{"big": 2**62}] for _ in range(6)]
    )
    before = budget_state(dataset)
    response = api(business_user).post(
        "/api/v1/queries/",
        {"dataset": "bigint", "sql": "SELECT SUM(big) FROM bigint", "epsilon": 1},
        format="json",
    )
    assert response.status_code == 400
    # Refused for the bounds, not for any other reason ("cannot be made private" is in
    # every refusal of the engine).
    assert "bounds are too wide for an exact sum" in response.json()["detail"]
    assert budget_state(dataset) == before


def test_only_business_accounts_submit(
    households: Any, compliance_user: Any, contributor: Any, api: Any
) -> None:
    assert submit(api, compliance_user).status_code == 403
    assert submit(api, contributor.user).status_code == 403
    assert api(None).post("/api/v1/queries/", {}, format="json").status_code == 401
    assert budget_state(households)[1] == 0


def test_dataset_restricted_to_other_organizations_does_not_exist(
    pool_dataset: Any, business_user: Any, other_business_user: Any, api: Any
) -> None:
    # other_business_user: the datasets policy accepts only organizations that exist.
    dataset = pool_dataset(policy={"allowed_organizations": ["Rival Corp"]}, contributors=6)
    before = budget_state(dataset)
    response = submit(api, business_user)
    assert response.status_code == 404
    assert budget_state(dataset) == before


def test_the_database_refuses_an_overspent_budget_even_if_code_did_not(
    households: Any, business_user: Any, api: Any
) -> None:
    from django.db import IntegrityError, transaction

    from cleanroom.datasets.models import Dataset

    assert submit(api, business_user).status_code == 202
    with pytest.raises(IntegrityError), transaction.atomic():
        Dataset.objects.filter(pk=households.pk).update(spent_epsilon=Decimal("10.000000000001"))
    event = AuditEvent.objects.get(action="cleanroom.budget.charged")
    assert event.payload == {
        "epsilon": "0.500000000000",
        "spent_epsilon": "0.500000000000",
        "total_epsilon": "10.000000000000",
        "delta": "0",
        "spent_delta": "0",
        "total_delta": "0",
        "state": "reserved",
    }
    assert event.dataset == "households"
