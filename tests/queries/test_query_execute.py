"""The execution service (what the worker runs), called in-process for exact checks.

The real-worker path is in test_worker.py; here every branch of `query_execute` is
driven directly: release, idempotency, refunds before the mechanism, charges after it.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from cleanroom.queries import dp
from cleanroom.queries.models import BudgetCharge, Query, QueryPool
from cleanroom.queries.selectors import privacy_loss_for, queries_touching
from cleanroom.queries.services import query_execute

SQL = "SELECT region, COUNT(*) AS n, SUM(age) AS total_age, AVG(income) AS mean_income FROM households GROUP BY region"


def submitted(api: Any, user: Any, sql: str = SQL, epsilon: float = 0.5) -> int:
    response = api(user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": sql, "epsilon": epsilon}, format="json"
    )
    assert response.status_code == 202, response.json()
    return int(response.json()["id"])


def test_release_stores_noisy_result_charges_and_records_membership(
    households: Any, business_user: Any, api: Any, make_contributor: Any
) -> None:
    pk = submitted(api, business_user)
    query_execute(query_id=pk)
    query = Query.objects.get(pk=pk)
    assert query.status == "released" and query.progress == 100
    assert query.mechanism_ran is True
    result = query.result
    assert result is not None
    assert result["columns"] == ["region", "n", "total_age", "mean_income"]
    assert [row[0] for row in result["rows"]] == ["north", "south", "east", "west"]
    assert len(result["accuracy"]) == 4 and result["accuracy"][0][0] is None
    assert result["confidence"] == 0.95 and result["epsilon"] == 0.5
    assert BudgetCharge.objects.get(query=query).state == "charged"
    pool = QueryPool.objects.get(query=query)
    assert pool.size == 6
    households.refresh_from_db()
    assert households.spent_epsilon == Decimal("0.5")
    actions = list(
        AuditEvent.objects.filter(subject=f"query:{pk}").values_list("action", flat=True)
    )
    assert actions[-4:] == [
        "cleanroom.query.running",
        "payouts.query.charged",
        "payouts.distribution.recorded",
        "cleanroom.query.released",
    ]
    member = make_contributor("did:example:households-0")
    assert privacy_loss_for(contributor=member) == [
        {"dataset": "households", "epsilon": 0.5, "delta": 0.0, "epsilon_past_year": 0.5, "cap": None}
    ]
    touching = queries_touching(contributor=member)
    assert [(t["id"], t["dataset"], t["organization"]) for t in touching] == [
        (pk, "households", "Acme")
    ]
    stranger = make_contributor("did:example:not-in-pool")
    assert privacy_loss_for(contributor=stranger) == []


def test_second_delivery_is_a_no_op(households: Any, business_user: Any, api: Any) -> None:
    pk = submitted(api, business_user)
    query_execute(query_id=pk)
    result = Query.objects.get(pk=pk).result
    events = AuditEvent.objects.count()
    query_execute(query_id=pk)
    query_execute(query_id=pk)
    assert Query.objects.get(pk=pk).result == result
    assert AuditEvent.objects.count() == events
    assert QueryPool.objects.filter(query_id=pk).count() == 1


def test_delivery_for_a_query_whose_run_is_alive_does_nothing_and_looks_again(
    households: Any, business_user: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk = submitted(api, business_user)
    measured_from = time.monotonic()
    # Another run took the mechanism and is alive (its heartbeat is fresh).
    Query.objects.filter(pk=pk).update(
        status="running", attempt=1, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    BudgetCharge.objects.filter(query_id=pk).update(state="charged")
    calls: list[int] = []
    monkeypatch.setattr(dp, "mechanism_release", lambda **kw: calls.append(1))
    look_again = query_execute(query_id=pk)
    elapsed = time.monotonic() - measured_from
    # Look again once that run would be silent for dead_after_seconds() (20 s).
    assert look_again is not None and look_again.attempt == 1
    assert 20 - elapsed - 1 <= look_again.after <= 20
    assert calls == []
    query = Query.objects.get(pk=pk)
    assert (query.status, query.attempt) == ("running", 1)


def test_redelivery_before_the_mechanism_carries_on_once_the_run_is_silent(
    households: Any, business_user: Any, api: Any
) -> None:
    pk = submitted(api, business_user)
    # A worker died right after claiming: its last sign of life is 30 s old.
    silent = timezone.now() - timedelta(seconds=30)
    Query.objects.filter(pk=pk).update(
        status="running", attempt=1, started_at=silent, heartbeat_at=silent
    )
    assert query_execute(query_id=pk) is None
    query = Query.objects.get(pk=pk)
    assert (query.status, query.attempt) == ("released", 2)
    assert BudgetCharge.objects.get(query_id=pk).state == "charged"


def test_failure_after_the_mechanism_keeps_the_charge(
    households: Any, business_user: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk = submitted(api, business_user)

    def boom(**kwargs: Any) -> None:
        raise RuntimeError("value 41250.5 of row 3")  # must not leak into the error

    monkeypatch.setattr(dp, "mechanism_release", boom)
    query_execute(query_id=pk)
    query = Query.objects.get(pk=pk)
    assert query.status == "failed"
    assert query.error == (
        "The mechanism failed while running; the budget and the price stay charged."
    )
    assert query.result is None
    assert BudgetCharge.objects.get(query=query).state == "charged"
    # The contributors bore the privacy loss: the held price paid them, exactly once.
    from payouts.models import Distribution

    distribution = Distribution.objects.get(query_id=pk)
    assert distribution.gross == query.price
    assert distribution.pool_size == QueryPool.objects.get(query_id=pk).size
    households.refresh_from_db()
    assert households.spent_epsilon == Decimal("0.5")
    failed = AuditEvent.objects.get(subject=f"query:{pk}", action="cleanroom.query.failed")
    assert failed.payload["charged"] is True
    assert "41250" not in str(failed.payload)


def test_failure_before_the_mechanism_is_refunded(
    households: Any, business_user: Any, api: Any
) -> None:
    from django.utils import timezone

    from cleanroom.datasets.models import Consent

    pk = submitted(api, business_user)
    # Contributors withdraw between submission and execution: the pool drops below 5.
    Consent.objects.filter(dataset=households).update(withdrawn_at=timezone.now())
    query_execute(query_id=pk)
    query = Query.objects.get(pk=pk)
    assert query.status == "failed"
    assert "fewer than 5" in query.error
    assert query.mechanism_ran is False
    assert BudgetCharge.objects.get(query=query).state == "refunded"
    households.refresh_from_db()
    assert households.spent_epsilon == Decimal("0")
    assert not QueryPool.objects.filter(query=query).exists()


def test_dry_run_failure_is_refunded(
    households: Any, business_user: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk = submitted(api, business_user)

    def broken(mechanism: Any) -> None:
        raise dp.EngineError("collect failed on the empty frame")

    monkeypatch.setattr(dp, "mechanism_dry_run", broken)
    query_execute(query_id=pk)
    query = Query.objects.get(pk=pk)
    assert query.status == "failed"
    assert "before any noise" in query.error
    assert BudgetCharge.objects.get(query=query).state == "refunded"


def test_pending_or_rejected_queries_are_never_run(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    pool_dataset(policy={"auto_approve": False})
    pk = submitted(api, business_user)
    query_execute(query_id=pk)
    assert Query.objects.get(pk=pk).status == "pending_approval"
    query_execute(query_id=10**9)  # unknown id: nothing happens
