"""Fixtures of the portal area."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest


@pytest.fixture
def make_dataset_for_display(compliance_user: Any) -> Any:
    """A released-looking query of 6.00 EUR at epsilon 0.499999999999 (no pool needed)."""
    from cleanroom.datasets.services import dataset_create
    from cleanroom.queries.models import Query
    from tests.queries.conftest import POLICY, PRICE, SCHEMA

    def make(user: Any) -> Any:
        dataset = dataset_create(
            actor=compliance_user,
            slug="households",
            name="Households",
            purpose="Household budgets research",
            schema=SCHEMA,
            policy=POLICY,
            price=PRICE,
        )
        return Query.objects.create(
            dataset=dataset,
            organization_id=user.organization_id,
            requester=user,
            sql="SELECT COUNT(*) AS n FROM households",
            epsilon=Decimal("0.499999999999"),
            status="released",
            price=6_000_000,
            currency="EUR",
        )

    return make
