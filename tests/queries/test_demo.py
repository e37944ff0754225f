"""`manage.py seed_demo`'s queries step: one query on each dataset with a pool."""

from __future__ import annotations

from typing import Any

from cleanroom.queries import demo
from cleanroom.queries.models import Query


def test_demo_submits_one_query_per_dataset_and_is_idempotent(pool_dataset: Any) -> None:
    from cleanroom.accounts.services import account_create

    assert demo.seed() == ["Queries: no demo business, skipped."]
    account_create(
        role="business", username="acme", password="acme-demo-pass", organization="Acme Analytics"
    )
    pool_dataset()
    lines = demo.seed()
    query = Query.objects.get()
    assert lines == [f"Query {query.pk} on households: queued (portal /queries/{query.pk}/)"]
    assert (
        query.sql
        == "SELECT region, COUNT(*) AS n, AVG(age) AS mean_age FROM households GROUP BY region"
    )
    assert demo.seed() == ["Queries: nothing to seed (no new dataset with a large enough pool)."]
    assert Query.objects.count() == 1
