"""100 concurrent submissions against a budget for 10: exactly 10 win, never overspent.

Runs on committed data (transactional_db) with real threads, each on its own database
connection, so the row lock on the dataset is what serializes them (PostgreSQL).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections

from cleanroom.datasets.models import Dataset
from cleanroom.queries.models import BudgetCharge, Query


@pytest.mark.slow
def test_hundred_parallel_submissions_never_overspend(
    transactional_db: Any, pool_dataset: Any, business_user: Any, api: Any
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL property; SQLite serializes writers")
    dataset = pool_dataset(
        policy={"total_epsilon": "1", "max_query_epsilon": "0.1", "auto_approve": False}
    )
    clients = [api(business_user) for _ in range(100)]
    start = threading.Barrier(24)

    def submit(index: int) -> int:
        try:
            if index < 24:
                start.wait()
            response = clients[index].post(
                "/api/v1/queries/",
                {"dataset": "households", "sql": "SELECT COUNT(*) FROM households", "epsilon": 0.1},
                format="json",
            )
            return int(response.status_code)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=24) as pool:
        statuses = list(pool.map(submit, range(100)))

    assert statuses.count(202) == 10
    assert statuses.count(400) == 90
    fresh = Dataset.objects.get(pk=dataset.pk)
    assert fresh.spent_epsilon == Decimal("1")
    assert fresh.spent_epsilon <= fresh.total_epsilon
    assert Query.objects.filter(dataset=dataset).count() == 10
    assert BudgetCharge.objects.filter(dataset=dataset).count() == 10
    assert sum(c.epsilon for c in BudgetCharge.objects.filter(dataset=dataset)) == Decimal("1")
