from decimal import Decimal
from typing import Any

import polars as pl

from cleanroom.datasets.models import Dataset
from cleanroom.datasets.pool import pool_snapshot
from cleanroom.datasets.selectors import dataset_get, pool_size


def test_empty_pool_has_typed_columns(db: Any) -> None:
    dataset = Dataset.objects.create(
        slug="households",
        name="Households",
        purpose="Research",
        schema={
            "columns": [
                {"name": "age", "type": "integer", "lower": 0, "upper": 120},
                {"name": "income", "type": "float", "lower": 0, "upper": 1e6},
                {"name": "region", "type": "string", "categories": ["north", "south"]},
                {"name": "owner", "type": "boolean"},
            ]
        },
        policy={},
        price={},
        total_epsilon=Decimal("10"),
    )
    snapshot = pool_snapshot(dataset=dataset_get(slug="households"))
    assert snapshot.size == 0
    assert snapshot.members.tolist() == []
    assert snapshot.frame.collect_schema() == pl.Schema(
        {
            "contributor_id": pl.Int64,
            "age": pl.Int64,
            "income": pl.Float64,
            "region": pl.String,
            "owner": pl.Boolean,
        }
    )
    assert pool_size(dataset=dataset) == 0
