"""The price is held at submission: an accepted query can always be paid for.

Repro of the review finding: an organization with the price of ONE query submits it five
times. Only one is accepted; four are refused with 400 and change nothing (no query, no
budget, no money). The held price is consumed by the release exactly once, or given back
on rejection / a failure before the mechanism ran.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections

from cleanroom.errors import Conflict
from cleanroom.queries.models import BudgetCharge, Query
from cleanroom.queries.services import query_execute, query_reject
from payouts.models import Account, Distribution, JournalEntry
from payouts.reconcile import ledger_reconcile
from tests.queries.conftest import budget_state

SQL = "SELECT COUNT(*) AS n FROM households"


def _balance(user: Any) -> int:
    account = Account.objects.filter(
        kind=Account.Kind.BUSINESS, organization=user.organization, currency="EUR"
    ).first()
    return account.balance if account else 0


def _held() -> int:
    account = Account.objects.filter(kind=Account.Kind.QUERY_HOLDS, currency="EUR").first()
    return account.balance if account else 0


def _price(api: Any, user: Any) -> int:
    response = api(user).post(
        "/api/v1/queries/preview/",
        {"dataset": "households", "sql": SQL, "epsilon": 1},
        format="json",
    )
    assert response.status_code == 200, response.json()
    return int(round(float(response.json()["price"]) * 1_000_000))


def _fund(user: Any, amount: int) -> None:
    from payouts.services import topup_record

    topup_record(organization=user.organization, amount=amount, actor=None, currency="EUR")


def _submit(api: Any, user: Any) -> Any:
    return api(user).post(
        "/api/v1/queries/",
        {"dataset": "households", "sql": SQL, "epsilon": 1},
        format="json",
    )


def test_one_query_of_balance_accepts_one_of_five_and_pays_it(
    households: Any, other_business_user: Any, api: Any
) -> None:
    price = _price(api, other_business_user)
    assert price == 11_500_000
    _fund(other_business_user, price)
    first = _submit(api, other_business_user)
    assert first.status_code == 202
    after_first = (budget_state(households), _balance(other_business_user), _held())
    assert after_first[1:] == (0, price)
    for _ in range(4):
        refused = _submit(api, other_business_user)
        assert refused.status_code == 400
        assert refused.json()["type"].endswith("insufficient-balance")
        assert (budget_state(households), _balance(other_business_user), _held()) == after_first
    query_execute(query_id=first.json()["id"])
    query = Query.objects.get(pk=first.json()["id"])
    assert query.status == "released"
    assert _held() == 0
    assert _balance(other_business_user) == 0
    assert Distribution.objects.get(query_id=query.pk).gross == price
    # The charge came from the hold, once.
    assert JournalEntry.objects.filter(key=f"query:{query.pk}:charge").count() == 1
    assert not JournalEntry.objects.filter(key=f"query:{query.pk}:hold:released").exists()
    assert ledger_reconcile().problems == []


def test_rejection_gives_the_held_price_back_and_it_can_never_be_charged(
    pool_dataset: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    from payouts.services import query_charge, query_hold_release

    pool_dataset(policy={"auto_approve": False})
    before = _balance(business_user)
    response = _submit(api, business_user)
    assert response.status_code == 202
    price = Query.objects.get(pk=response.json()["id"]).price
    assert _balance(business_user) == before - price
    assert _held() == price
    query = query_reject(query_id=response.json()["id"], reviewer=compliance_user, reason="no")
    assert _balance(business_user) == before
    assert _held() == 0
    # Giving back twice, or charging what was given back, changes nothing.
    query_hold_release(query=query)
    with pytest.raises(Conflict):
        query_charge(query=query, members=[1, 2, 3])
    assert (_balance(business_user), _held()) == (before, 0)
    assert not Distribution.objects.filter(query_id=query.pk).exists()
    assert ledger_reconcile().problems == []


def test_failure_before_the_mechanism_gives_the_price_back(
    households: Any, business_user: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cleanroom.datasets.pool as pool

    before = _balance(business_user)
    response = _submit(api, business_user)

    def broken(**kwargs: Any) -> None:
        raise ValueError("invalid literal for int() with base 10: 'ten'")

    monkeypatch.setattr(pool, "pool_snapshot", broken)
    query_execute(query_id=response.json()["id"])
    query = Query.objects.get(pk=response.json()["id"])
    assert query.status == "failed"
    assert query.error == (
        "The query could not be prepared; nothing was run and the budget was given back."
    )
    assert BudgetCharge.objects.get(query=query).state == "refunded"
    assert (_balance(business_user), _held()) == (before, 0)
    assert not Distribution.objects.filter(query_id=query.pk).exists()


@pytest.mark.slow
def test_parallel_submissions_accept_exactly_what_the_balance_holds(
    transactional_db: Any, pool_dataset: Any, other_business_user: Any, api: Any
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL property; SQLite serializes writers")
    dataset = pool_dataset(policy={"auto_approve": False, "total_epsilon": "100"})
    price = _price(api, other_business_user)
    _fund(other_business_user, 3 * price)
    clients = [api(other_business_user) for _ in range(12)]
    start = threading.Barrier(12)

    def submit(index: int) -> int:
        try:
            start.wait()
            return int(_submit(lambda _: clients[index], None).status_code)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(submit, range(12)))

    assert statuses.count(202) == 3
    assert statuses.count(400) == 9
    assert _balance(other_business_user) == 0
    assert _held() == 3 * price
    assert (
        Query.objects.filter(dataset=dataset, organization=other_business_user.organization).count()
        == 3
    )
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.QUERY_HOLD).count() == 3
    assert ledger_reconcile().problems == []
