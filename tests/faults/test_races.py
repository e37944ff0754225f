"""Approve and reject of one query at the same moment: exactly one decision wins."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.faults.checks import ended_well
from tests.faults.conftest import ArmedWorker

pytestmark = [pytest.mark.worker, pytest.mark.slow]

SQL = "SELECT region, COUNT(*) AS n FROM households GROUP BY region"
ROUNDS = 6


def _decide_at_once(query_id: int, reviewer: Any) -> dict[str, str]:
    """Approve and reject from two threads (two database connections) released together."""
    from django.db import connection

    from cleanroom.errors import Conflict
    from cleanroom.queries.services import query_approve, query_reject

    start = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def decide(name: str) -> None:
        try:
            start.wait(timeout=10)
            if name == "approve":
                query_approve(query_id=query_id, reviewer=reviewer, reason="fine")
            else:
                query_reject(query_id=query_id, reviewer=reviewer, reason="not fine")
            outcome[name] = "won"
        except Conflict:
            outcome[name] = "refused"
        except Exception as error:  # anything else is a defect: report it
            outcome[name] = f"error: {error!r}"
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(name,)) for name in ("approve", "reject")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcome


def test_approve_and_reject_at_the_same_moment_exactly_one_wins(
    worker_on_servers: ArmedWorker,
    pool_dataset: Any,
    business_user: Any,
    compliance_user: Any,
    api: Any,
) -> None:
    from audit.models import AuditEvent
    from cleanroom.queries.models import Query

    pool_dataset(policy={"auto_approve": False})
    ids = []
    for _ in range(ROUNDS):
        response = api(business_user).post(
            "/api/v1/queries/",
            {"dataset": "households", "sql": SQL, "epsilon": 0.2},
            format="json",
        )
        assert response.status_code == 202, response.json()
        ids.append(response.json()["id"])
    outcomes = [_decide_at_once(pk, compliance_user) for pk in ids]
    for pk, outcome in zip(ids, outcomes, strict=True):
        assert sorted(outcome.values()) == ["refused", "won"], (pk, outcome)
        decisions = AuditEvent.objects.filter(
            subject=f"query:{pk}",
            action__in=("cleanroom.query.approved", "cleanroom.query.rejected"),
        ).values_list("action", flat=True)
        winner = "approved" if outcome["approve"] == "won" else "rejected"
        assert list(decisions) == [f"cleanroom.query.{winner}"]
    wait_for(
        lambda: not Query.objects.exclude(status__in=("released", "rejected", "failed")).exists(),
        60,
        "every approved query to run",
        worker_on_servers.process,
    )
    for pk, outcome in zip(ids, outcomes, strict=True):
        expected = "released" if outcome["approve"] == "won" else "rejected"
        assert Query.objects.get(pk=pk).status == expected
    assert ended_well() == []
