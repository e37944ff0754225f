"""Fixtures of the queries area: a households dataset with a real (encrypted) pool.

`pool_dataset(...)` publishes a dataset, has contributors consent and upload rows
through the datasets services, and tops up the business so queries can be paid for.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": ["north", "south", "east", "west"]},
        {"name": "income", "type": "float", "lower": 0, "upper": 200000},
        {"name": "household_size", "type": "integer", "lower": 1, "upper": 12},
        {"name": "owns_home", "type": "boolean"},
    ]
}
POLICY = {
    "total_epsilon": "10",
    "max_query_epsilon": "1",
    "min_contributors": 5,
    "max_rows_per_contributor": 3,
    "auto_approve": True,
}
PRICE = {"currency": "EUR", "per_query": "1.50", "per_epsilon": "10", "platform_fee": "0.20"}
REGIONS = ["north", "south", "east", "west"]


def rows_for(index: int, count: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(index)
    return [
        {
            "age": rng.randint(18, 90),
            "region": REGIONS[index % 4],
            "income": round(rng.uniform(10000, 90000), 2),
            "household_size": rng.randint(1, 6),
            "owns_home": rng.random() < 0.5,
        }
        for _ in range(count)
    ]


@pytest.fixture
def pool_dataset(compliance_user: Any, business_user: Any, make_contributor: Any) -> Any:
    """`pool_dataset(slug=..., contributors=N, policy={...})` -> a Dataset with a pool."""
    from cleanroom.datasets.services import consent_give, contribution_upload, dataset_create
    from payouts.services import topup_record

    topup_record(
        organization=business_user.organization,
        amount=1_000_000_000,
        actor=None,
        currency="EUR",
        reference="queries-fixture",
    )

    def make(
        *,
        slug: str = "households",
        contributors: int = 6,
        rows: int = 2,
        policy: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = None,
        records: list[list[dict[str, Any]]] | None = None,
    ) -> Any:
        dataset = dataset_create(
            actor=compliance_user,
            slug=slug,
            name=slug.title(),
            purpose="Household budgets research",
            schema=schema or SCHEMA,
            policy={**POLICY, **(policy or {})},
            price=PRICE,
        )
        uploads = (
            records if records is not None else [rows_for(i, rows) for i in range(contributors)]
        )
        for index, batch in enumerate(uploads):
            contributor = make_contributor(f"did:example:{slug}-{index}")
            consent_give(contributor=contributor, dataset=dataset)
            contribution_upload(contributor=contributor, dataset=dataset, records=batch)
        return dataset

    return make


@pytest.fixture
def households(pool_dataset: Any) -> Any:
    return pool_dataset()


def budget_state(dataset: Any) -> tuple[Any, int, int]:
    """(spent_epsilon, number of ledger rows, number of queries) to assert nothing changed."""
    from cleanroom.datasets.models import Dataset
    from cleanroom.queries.models import BudgetCharge, Query

    fresh = Dataset.objects.get(pk=dataset.pk)
    return (
        fresh.spent_epsilon,
        BudgetCharge.objects.filter(dataset=dataset).count(),
        Query.objects.filter(dataset=dataset).count(),
    )


def submit_until_the_worker_dies(
    *, api: Any, user: Any, worker: Any, plan: Any, point: str, marker: Any
) -> int:
    """Arm the worker's crash `point` (its plan file), submit a grouped count and wait until
    the worker has killed itself there; the query's pk. The caller restarts the worker."""
    import json

    from tests.conftest import wait_for

    plan.write_text(json.dumps({"at": point, "scope": "worker", "marker": str(marker)}))
    pk = int(
        api(user)
        .post(
            "/api/v1/queries/",
            {"dataset": "households", "sql": KILLED_SQL, "epsilon": 0.5},
            format="json",
        )
        .json()["id"]
    )
    wait_for(marker.exists, 60, f"the crash at {point}", worker)
    assert worker.process is not None
    worker.process.wait(timeout=30)
    return pk


KILLED_SQL = "SELECT region, COUNT(*) AS n FROM households GROUP BY region"
