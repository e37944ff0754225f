"""Every policy key is enforced: for each one, a query (or upload) that violates it is refused.

One row per key of ``cleanroom.datasets.validation`` (required and optional); a key added
there without a row here fails ``test_every_policy_key_has_an_enforcement_check``. Each
check asserts the refusal and that nothing was spent (budget, ledger rows, queries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cleanroom.datasets.validation import POLICY_OPTIONAL, POLICY_REQUIRED
from cleanroom.queries.models import BudgetCharge, Query
from cleanroom.queries.services import query_execute
from tests.queries.conftest import budget_state, rows_for

GROUPED = "SELECT region, COUNT(*) AS n FROM households GROUP BY region"


class Case:
    def __init__(self, pool_dataset: Any, api: Any, business_user: Any, other: Any) -> None:
        self.pool_dataset = pool_dataset
        self.api = api
        self.business_user = business_user
        self.other = other

    def submit(self, sql: str = GROUPED, epsilon: float = 0.5, user: Any = None) -> Any:
        return self.api(user or self.business_user).post(
            "/api/v1/queries/",
            {"dataset": "households", "sql": sql, "epsilon": epsilon},
            format="json",
        )

    def refused(self, dataset: Any, text: str, **submit: Any) -> None:
        before = budget_state(dataset)
        response = self.submit(**submit)
        assert response.status_code in (400, 404), response.json()
        assert text in response.json()["detail"], response.json()["detail"]
        assert budget_state(dataset) == before

    def failed_before_noise(self, pk: int, text: str) -> None:
        query_execute(query_id=pk)
        query = Query.objects.get(pk=pk)
        assert query.status == "failed" and not query.mechanism_ran, query.error
        assert text in query.error
        assert BudgetCharge.objects.get(query=query).state == "refunded"


def total_epsilon(case: Case) -> None:
    dataset = case.pool_dataset(policy={"total_epsilon": "0.8", "max_query_epsilon": "0.5"})
    assert case.submit(epsilon=0.5).status_code == 202
    case.refused(dataset, "has only 0.3 left", epsilon=0.5)


def max_query_epsilon(case: Case) -> None:
    dataset = case.pool_dataset(policy={"max_query_epsilon": "0.4"})
    case.refused(dataset, "per-query cap of 0.4", epsilon=0.5)


def min_contributors(case: Case) -> None:
    dataset = case.pool_dataset(policy={"min_contributors": 7})
    case.refused(dataset, "at least 7", epsilon=0.5)


def max_rows_per_contributor(case: Case) -> None:
    """An upload past the bound is refused whole (and queries truncate to it: see
    tests/queries/test_dp_statistics.py)."""
    from cleanroom.datasets.models import Contribution

    case.pool_dataset(policy={"max_rows_per_contributor": 3}, rows=2)
    person = case.make_contributor("did:example:households-0")  # type: ignore[attr-defined]
    before = Contribution.objects.count()
    response = case.api(person.user).post(
        "/api/v1/datasets/households/contributions/", {"records": rows_for(0, 2)}, format="json"
    )
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert "too many rows" in error["message"], error  # 2 held + 2 new > 3
    assert Contribution.objects.count() == before


def auto_approve(case: Case) -> None:
    dataset = case.pool_dataset(policy={"auto_approve": False})
    response = case.submit()
    assert response.status_code == 202 and response.json()["status"] == "pending_approval"
    query_execute(query_id=response.json()["id"])  # a stray delivery runs nothing
    assert Query.objects.get(pk=response.json()["id"]).status == "pending_approval"
    assert not Query.objects.get(pk=response.json()["id"]).mechanism_ran
    assert dataset.pk


def max_groups(case: Case) -> None:
    dataset = case.pool_dataset(policy={"max_groups": 3})
    case.refused(dataset, "at most 3", sql=GROUPED)


def max_histogram_bins(case: Case) -> None:
    dataset = case.pool_dataset(policy={"max_histogram_bins": 4})
    sql = (
        "SELECT WIDTH_BUCKET(age, 18, 98, 8) AS b, COUNT(*) AS n FROM households "
        "GROUP BY WIDTH_BUCKET(age, 18, 98, 8)"
    )
    case.refused(dataset, "at most 4 bins", sql=sql)


def max_contributors(case: Case) -> None:
    case.pool_dataset(policy={"max_contributors": 5})
    response = case.submit()
    assert response.status_code == 202
    case.failed_before_noise(response.json()["id"], "max_contributors")


def delta(case: Case) -> None:
    """A thresholded release never spends more delta than the policy's per-query delta."""
    case.pool_dataset(policy={"private_keys": True, "delta": "0.00000003"})
    response = case.submit(sql="SELECT age, COUNT(*) AS n FROM households GROUP BY age")
    assert response.status_code == 202
    query = Query.objects.get(pk=response.json()["id"])
    assert query.delta is not None and 0 < query.delta <= 3e-8
    assert BudgetCharge.objects.get(query=query).delta <= 3e-8


def total_delta(case: Case) -> None:
    dataset = case.pool_dataset(
        policy={"private_keys": True, "delta": "0.0000001", "total_delta": "0.00000012"}
    )
    sql = "SELECT age, COUNT(*) AS n FROM households GROUP BY age"
    assert case.submit(sql=sql).status_code == 202
    case.refused(dataset, "delta total", sql=sql)


def default_privacy_cap(case: Case) -> None:
    case.pool_dataset(policy={"default_privacy_cap": "0.2"})
    response = case.submit(epsilon=0.5)
    assert response.status_code == 202
    case.failed_before_noise(response.json()["id"], "personal privacy cap")


def max_epsilon_per_organization(case: Case) -> None:
    dataset = case.pool_dataset(policy={"max_epsilon_per_organization": "0.7"})
    assert case.submit(epsilon=0.4).status_code == 202
    case.refused(dataset, "at most epsilon 0.7", epsilon=0.4)


def allowed_organizations(case: Case) -> None:
    dataset = case.pool_dataset(policy={"allowed_organizations": ["Rival Corp"]})
    case.refused(dataset, "No dataset named")
    assert case.submit(user=case.other).status_code == 202  # the allowed one gets in


def allowed_columns(case: Case) -> None:
    dataset = case.pool_dataset(policy={"allowed_columns": ["region"]})
    case.refused(dataset, "income", sql="SELECT SUM(income) AS s FROM households")
    assert case.submit(sql=GROUPED).status_code == 202


def allowed_aggregates(case: Case) -> None:
    dataset = case.pool_dataset(policy={"allowed_aggregates": ["count"]})
    case.refused(dataset, "AVG", sql="SELECT AVG(income) AS m FROM households")
    histogram = (
        "SELECT WIDTH_BUCKET(age, 18, 98, 4) AS b, COUNT(*) AS n FROM households "
        "GROUP BY WIDTH_BUCKET(age, 18, 98, 4)"
    )
    case.refused(dataset, "Histograms (WIDTH_BUCKET) are not allowed", sql=histogram)
    assert case.submit(sql=GROUPED).status_code == 202


def private_keys(case: Case) -> None:
    dataset = case.pool_dataset()
    case.refused(
        dataset, "not public", sql="SELECT age, COUNT(*) AS n FROM households GROUP BY age"
    )


CHECKS: dict[str, Callable[[Case], None]] = {
    check.__name__: check
    for check in (
        total_epsilon,
        max_query_epsilon,
        min_contributors,
        max_rows_per_contributor,
        auto_approve,
        max_groups,
        max_histogram_bins,
        max_contributors,
        delta,
        total_delta,
        default_privacy_cap,
        max_epsilon_per_organization,
        allowed_organizations,
        allowed_columns,
        allowed_aggregates,
        private_keys,
    )
}
KEYS = sorted({*POLICY_REQUIRED, *POLICY_OPTIONAL})


def test_every_policy_key_has_an_enforcement_check() -> None:
    assert sorted(CHECKS) == KEYS


@pytest.mark.parametrize("key", KEYS)
def test_a_query_violating_the_policy_key_is_refused(
    key: str,
    pool_dataset: Any,
    api: Any,
    business_user: Any,
    other_business_user: Any,
    make_contributor: Any,
) -> None:
    from payouts.services import topup_record

    topup_record(
        organization=other_business_user.organization,
        amount=1_000_000_000,
        actor=None,
        currency="EUR",
        reference="policy-keys",
    )
    case = Case(pool_dataset, api, business_user, other_business_user)
    case.make_contributor = make_contributor  # type: ignore[attr-defined]
    CHECKS[key](case)
