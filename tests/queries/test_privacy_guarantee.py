"""The guarantee we state is the guarantee we give (issue 10's defects, each tried).

1. The relation charged is "one contributor's data replaced, pool size public".
2. Delta is bounded by the pool (<= 1 / max_contributors) and budgeted like epsilon.
3. The run is the mechanism that was priced: a policy change in between refunds.
4. Every policy key refuses the query that violates it (tests/queries/test_policy_keys.py).
5. (portal visibility: tests/queries/test_portal_visibility.py)
6. A policy whose rows overflow OpenDP's u32 is refused, and an engine error is a 4xx.
And the personal privacy cap: who would pass it is left out of the run and not paid.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from cleanroom.datasets.models import Dataset
from cleanroom.queries.models import BudgetCharge, Query, QueryPool
from cleanroom.queries.services import query_execute
from tests.queries.conftest import budget_state

GROUPED = "SELECT region, COUNT(*) AS n FROM households GROUP BY region"
PRIVATE = "SELECT age, COUNT(*) AS n FROM households GROUP BY age"


def submit(api: Any, user: Any, sql: str = GROUPED, epsilon: float = 0.5) -> Any:
    return api(user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": sql, "epsilon": epsilon}, format="json"
    )


def preview(api: Any, user: Any, sql: str = GROUPED, epsilon: float = 1.0) -> Any:
    return api(user).post(
        "/api/v1/queries/preview/",
        {"dataset": "households", "sql": sql, "epsilon": epsilon},
        format="json",
    )


# -- 1. the relation ----------------------------------------------------------------------


def test_grouped_count_noise_is_calibrated_for_a_replaced_contributor(
    households: Any, business_user: Any, api: Any
) -> None:
    """Replacing a contributor moves up to k rows out of one group and k into another: L1
    2k, so a count at epsilon 1 needs Laplace scale 2k. Add/remove (k) would be half."""
    body = preview(api, business_user).json()
    (entry,) = [a for a in body["accuracy"] if a["column"] == "n"]
    k = 3  # the fixture policy's max_rows_per_contributor
    assert body["epsilon"] == pytest.approx(1.0)
    assert entry["scale"] == pytest.approx(2 * k / 1.0, rel=1e-9)
    assert "replaced" in body["privacy_unit"] and "pool size public" in body["privacy_unit"]


def test_every_budget_figure_names_the_relation(
    households: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    for user in (business_user, compliance_user):
        budget = api(user).get("/api/v1/datasets/households/").json()["budget"]
        assert set(budget) >= {"total_delta", "spent_delta", "remaining_delta", "privacy_unit"}
        assert "replaced" in budget["privacy_unit"]
        summary = api(user).get("/api/v1/queries/budget/households/").json()
        assert summary["privacy_unit"] == budget["privacy_unit"]
        assert summary["remaining_delta"] == 0.0


# -- 2. delta -----------------------------------------------------------------------------


def test_delta_above_one_over_max_contributors_is_refused(
    compliance_user: Any, api: Any
) -> None:
    from tests.queries.conftest import POLICY, PRICE, SCHEMA

    body = {
        "slug": "leaky",
        "name": "Leaky",
        "purpose": "x",
        "schema": SCHEMA,
        "price": PRICE,
        "policy": {**POLICY, "private_keys": True, "max_contributors": 200_000, "delta": "0.001"},
    }
    response = api(compliance_user).post("/api/v1/datasets/", body, format="json")
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["field"] == "policy.delta"
    assert "0.000005" in error["message"] and "200,000" in error["message"]
    assert not Dataset.objects.filter(slug="leaky").exists()
    body["policy"]["delta"] = "0.000005"
    assert api(compliance_user).post("/api/v1/datasets/", body, format="json").status_code == 201


def test_delta_is_composed_into_a_dataset_total(
    pool_dataset: Any, business_user: Any, api: Any, make_contributor: Any
) -> None:
    """Each thresholded release spends its delta from total_delta; the last that does not
    fit is refused with nothing spent, and the contributor's loss counts delta too."""
    dataset = pool_dataset(
        policy={
            "private_keys": True,
            "delta": "0.0000001",
            "total_delta": "0.00000025",
            "total_epsilon": "100",
        }
    )
    assert dataset.total_delta == Decimal("0.00000025")
    first = submit(api, business_user, PRIVATE)
    second = submit(api, business_user, PRIVATE)
    assert first.status_code == second.status_code == 202
    dataset.refresh_from_db()
    # Each spends the delta its threshold reaches: at most the policy's 1e-7, so two fit
    # and a third (whatever the threshold gives, above 0.5e-7 here) does not.
    per_query = BudgetCharge.objects.get(query_id=first.json()["id"]).delta
    assert Decimal("0.00000005") < per_query <= Decimal("0.0000001")
    assert dataset.spent_delta == 2 * per_query
    before = budget_state(dataset)
    refused = submit(api, business_user, PRIVATE)
    assert refused.status_code == 400
    assert "delta" in refused.json()["detail"]
    assert budget_state(dataset) == before
    query_execute(query_id=first.json()["id"])
    released = api(business_user).get(f"/api/v1/queries/{first.json()['id']}/").json()
    assert released["status"] == "released"
    assert 0 < released["delta"] <= 1e-7 and released["result"]["delta"] == released["delta"]
    member = make_contributor("did:example:households-0")
    (loss,) = api(member.user).get("/api/v1/me/").json()["privacy_loss"]
    assert loss["delta"] == released["delta"] and loss["epsilon"] == released["epsilon"]


def test_database_refuses_delta_overspend_even_past_the_code(households: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Dataset.objects.filter(pk=households.pk).update(spent_delta=Decimal("0.000001"))


def test_rejecting_a_query_gives_its_delta_back(
    pool_dataset: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    dataset = pool_dataset(policy={"private_keys": True, "auto_approve": False})
    pk = submit(api, business_user, PRIVATE).json()["id"]
    dataset.refresh_from_db()
    assert dataset.spent_delta > 0
    assert BudgetCharge.objects.get(query_id=pk).delta == dataset.spent_delta
    response = api(compliance_user).post(f"/api/v1/queries/{pk}/reject/", {"reason": "no"})
    assert response.status_code == 200
    dataset.refresh_from_db()
    assert dataset.spent_delta == 0 and dataset.spent_epsilon == 0


# -- 3. the run is the priced mechanism ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"delta": "0.000001"}, "delta"),
        ({"max_rows_per_contributor": 1}, "max_rows_per_contributor"),
        ({"max_contributors": 500_000}, "max_rows"),
    ],
)
def test_a_policy_change_after_submission_fails_the_run_before_noise_and_refunds(
    pool_dataset: Any,
    business_user: Any,
    compliance_user: Any,
    api: Any,
    change: dict[str, Any],
    named: str,
) -> None:
    dataset = pool_dataset(
        policy={"private_keys": True, "delta": "0.00000007", "auto_approve": False}
    )
    pk = submit(api, business_user, PRIVATE).json()["id"]
    priced = Query.objects.get(pk=pk).mechanism
    assert priced["delta"] <= 7e-8 and priced["max_rows_per_contributor"] == 3
    policy = {**dataset.policy, **change}
    assert api(compliance_user).patch(
        "/api/v1/datasets/households/", {"policy": policy}, format="json"
    ).status_code == 200
    assert api(compliance_user).post(f"/api/v1/queries/{pk}/approve/", {}).status_code == 200
    query_execute(query_id=pk)
    query = Query.objects.get(pk=pk)
    assert query.status == "failed" and not query.mechanism_ran
    assert "before any noise" in query.error and named in query.error
    assert not QueryPool.objects.filter(query_id=pk).exists()
    dataset.refresh_from_db()
    assert dataset.spent_epsilon == 0 and dataset.spent_delta == 0
    assert BudgetCharge.objects.get(query_id=pk).state == "refunded"


def test_an_unchanged_policy_runs_the_priced_mechanism(
    pool_dataset: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    """The control: a name-only change leaves the mechanism alone and the query runs."""
    pool_dataset(policy={"private_keys": True, "auto_approve": False})
    pk = submit(api, business_user, PRIVATE).json()["id"]
    assert api(compliance_user).patch(
        "/api/v1/datasets/households/", {"name": "Renamed"}, format="json"
    ).status_code == 200
    assert api(compliance_user).post(f"/api/v1/queries/{pk}/approve/", {}).status_code == 200
    query_execute(query_id=pk)
    assert Query.objects.get(pk=pk).status == "released"


# -- 6. u32 overflow ----------------------------------------------------------------------


def test_a_policy_whose_rows_overflow_the_engine_is_refused(
    compliance_user: Any, api: Any
) -> None:
    from tests.queries.conftest import POLICY, PRICE, SCHEMA

    body = {
        "slug": "huge",
        "name": "Huge",
        "purpose": "x",
        "schema": SCHEMA,
        "price": PRICE,
        "policy": {**POLICY, "max_rows_per_contributor": 5000, "max_contributors": 1_000_000},
    }
    response = api(compliance_user).post("/api/v1/datasets/", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "policy.max_rows_per_contributor"
    assert "4,294,967,295" in response.json()["errors"][0]["message"]


def test_an_overflowing_stored_policy_is_a_named_4xx_at_preview_and_submit(
    households: Any, business_user: Any, api: Any
) -> None:
    """A policy stored before the check (or written past it) never makes a 500."""
    Dataset.objects.filter(pk=households.pk).update(
        policy={**households.policy, "max_rows_per_contributor": 5000}
    )
    before = budget_state(households)
    for response in (preview(api, business_user), submit(api, business_user)):
        assert response.status_code == 400
        assert "rows per contributor" in response.json()["detail"]
    assert budget_state(households) == before


# -- the personal privacy cap ---------------------------------------------------------------


def test_a_contributor_at_their_cap_is_left_out_and_not_paid(
    pool_dataset: Any, business_user: Any, api: Any, make_contributor: Any
) -> None:
    from payouts.selectors import contributor_earnings

    pool_dataset(contributors=7)
    capped = make_contributor("did:example:households-0")
    free = make_contributor("did:example:households-1")
    response = api(capped.user).post(
        "/api/v1/datasets/households/consent/", {"privacy_cap": {"epsilon": "0.7"}}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["privacy_cap"] == {"epsilon": "0.7", "per": "year", "source": "contributor"}
    first = submit(api, business_user, epsilon=0.5).json()["id"]
    query_execute(query_id=first)
    second = submit(api, business_user, epsilon=0.5).json()["id"]
    query_execute(query_id=second)
    assert QueryPool.objects.get(query_id=first).size == 7
    assert QueryPool.objects.get(query_id=second).size == 6
    assert Query.objects.get(pk=second).result["excluded_at_cap"] == 1
    me = api(capped.user).get("/api/v1/me/").json()
    (loss,) = me["privacy_loss"]
    assert loss == {
        "dataset": "households",
        "epsilon": 0.5,
        "delta": 0.0,
        "epsilon_past_year": 0.5,
        "cap": 0.7,
    }
    assert me["privacy_loss_total"] == {"epsilon": 0.5, "delta": 0.0}
    assert [q["id"] for q in me["queries"]] == [first]
    assert Decimal(contributor_earnings(contributor=capped)["balance"]) < Decimal(
        contributor_earnings(contributor=free)["balance"]
    )


def test_the_policy_default_cap_applies_and_too_few_left_refunds(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    dataset = pool_dataset(contributors=5, policy={"default_privacy_cap": "0.6"})
    first = submit(api, business_user, epsilon=0.5).json()["id"]
    query_execute(query_id=first)
    second = submit(api, business_user, epsilon=0.5).json()["id"]
    query_execute(query_id=second)
    query = Query.objects.get(pk=second)
    assert query.status == "failed" and "privacy cap" in query.error
    assert not query.mechanism_ran
    dataset.refresh_from_db()
    assert dataset.spent_epsilon == Decimal("0.5")


def test_a_bad_cap_is_refused_and_changes_nothing(households: Any, api: Any, make_contributor: Any) -> None:
    from cleanroom.datasets.models import Consent

    person = make_contributor("did:example:newcomer")
    for cap in ({"epsilon": "-1"}, {"epsilon": "lots"}, {"epsilon": "1", "per": "day"}, "2"):
        response = api(person.user).post(
            "/api/v1/datasets/households/consent/", {"privacy_cap": cap}, format="json"
        )
        assert response.status_code == 400, cap
        assert "privacy_cap" in response.json()["detail"]
    assert not Consent.objects.filter(contributor=person).exists()


@pytest.mark.worker
def test_the_worker_runs_with_the_cap(
    worker: Any, pool_dataset: Any, business_user: Any, api: Any, make_contributor: Any
) -> None:
    """The real worker path takes the cap into account too (one query, one exclusion)."""
    pool_dataset(contributors=6, policy={"default_privacy_cap": "0.4"})
    capped = make_contributor("did:example:households-2")
    api(capped.user).post(
        "/api/v1/datasets/households/consent/", {"privacy_cap": {"epsilon": "0.1"}}, format="json"
    )
    pk = submit(api, business_user, epsilon=0.3).json()["id"]
    deadline = time.monotonic() + 60
    while Query.objects.get(pk=pk).status not in ("released", "failed"):
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)
    query = Query.objects.get(pk=pk)
    assert query.status == "released", query.error
    assert query.result["pool_size"] == 5 and query.result["excluded_at_cap"] == 1
