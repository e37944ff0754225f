"""Money is conserved to the unit over random pools, prices and fees, across settlements."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from payouts.ledger import account_get
from payouts.models import Account, Posting
from payouts.reconcile import ledger_reconcile
from payouts.services import business_account, query_charge
from payouts.settlement import settlement_open, settlement_process


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_queries_conserve_every_unit(
    seed: int, funded: Any, make_dataset: Any, make_query: Any
) -> None:
    rng = np.random.default_rng(seed)
    datasets = [
        make_dataset(
            price={
                "currency": "EUR",
                "per_query": str(Decimal(int(rng.integers(0, 300))) / 100),
                "per_epsilon": str(Decimal(int(rng.integers(0, 1000))) / 1000),
                "platform_fee": str(Decimal(int(rng.integers(0, 100))) / 100),
            }
        )
        for _ in range(3)
    ]
    naive: dict[int, int] = {}
    spent = fees = remainders = 0
    for round_ in range(2):
        for _ in range(15):
            dataset = datasets[int(rng.integers(0, 3))]
            pool = np.unique(rng.integers(1, 200, size=int(rng.integers(1, 150))))
            epsilon = str(Decimal(int(rng.integers(1, 1000))) / 1000)
            distribution = query_charge(query=make_query(dataset, epsilon=epsilon), members=pool)
            spent += distribution.gross
            fees += distribution.fee
            remainders += distribution.remainder
            for pk in pool.tolist():
                naive[pk] = naive.get(pk, 0) + distribution.share
        settlement = settlement_open(currency="EUR")
        assert settlement is not None, round_
        settlement_process(settlement_id=settlement.pk)
    settled: dict[int, int] = {}
    for pk, amount in Posting.objects.filter(contributor_pk__isnull=False).values_list(
        "contributor_pk", "amount"
    ):
        settled[pk] = settled.get(pk, 0) + amount
    assert settled == {pk: amount for pk, amount in naive.items() if amount}
    assert business_account(organization=funded).balance == 100_000_000 - spent
    assert account_get(kind=Account.Kind.PLATFORM_REVENUE, currency="EUR").balance == fees
    assert account_get(kind=Account.Kind.ROUNDING, currency="EUR").balance == remainders
    assert account_get(kind=Account.Kind.POOL_CLEARING, currency="EUR").balance == 0
    assert spent == fees + remainders + sum(settled.values())
    report = ledger_reconcile()
    assert report.ok, report.problems
