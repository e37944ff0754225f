"""Fixtures of the money tests: a priced dataset, released queries, a funded business."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

PRICE = {"currency": "EUR", "per_query": "1.00", "per_epsilon": "10.00", "platform_fee": "0.20"}


@pytest.fixture
def make_dataset(db: Any) -> Any:
    from cleanroom.datasets.models import Dataset

    counter = iter(range(1, 10**6))

    def make(price: dict[str, str] | None = None, slug: str | None = None) -> Any:
        return Dataset.objects.create(
            slug=slug or f"households-{next(counter)}",
            name="Households",
            purpose="Household income research",
            schema={"columns": [{"name": "income", "type": "integer", "lower": 0, "upper": 10}]},
            policy={"total_epsilon": "100", "max_query_epsilon": "1", "min_contributors": 1},
            price=price or dict(PRICE),
            total_epsilon=Decimal("100"),
        )

    return make


@pytest.fixture
def dataset(make_dataset: Any) -> Any:
    return make_dataset()


@pytest.fixture
def make_query(db: Any, business_user: Any) -> Any:
    """A released query record (the query pipeline itself is tested in tests/cleanroom)."""
    from cleanroom.queries.models import Query
    from payouts.services import query_price

    def make(dataset: Any, epsilon: str = "0.5", requester: Any = None) -> Any:
        requester = requester or business_user
        return Query.objects.create(
            dataset=dataset,
            organization=requester.organization,
            requester=requester,
            sql=f"SELECT COUNT(*) FROM {dataset.slug}",  # noqa: S608 (a stored record)
            epsilon=Decimal(epsilon),
            status="released",
            price=query_price(price=dataset.price, epsilon=epsilon),
            currency=dataset.price["currency"],
        )

    return make


@pytest.fixture
def funded(business_user: Any) -> Any:
    """The business's organization with 100.00 EUR prepaid."""
    from payouts.services import topup_record

    topup_record(organization=business_user.organization, amount=100_000_000, actor=business_user)
    return business_user.organization


def members(*pks: int) -> np.ndarray:
    return np.array(sorted(pks), dtype=np.int64)


def contributors(make_contributor: Any, n: int) -> list[Any]:
    return [make_contributor() for _ in range(n)]
