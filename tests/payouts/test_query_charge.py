"""Charging a released query: price, fee, equal floored shares, remainder to rounding,
one distribution row per query, idempotent, refused without balance (nothing changed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from audit.models import AuditEvent
from cleanroom.errors import InsufficientBalance, ValidationFailed
from payouts.ledger import account_get
from payouts.membership import members_from_ranges, ranges_decode
from payouts.models import Account, Distribution, JournalEntry, Posting
from payouts.reconcile import ledger_reconcile
from payouts.services import balance_ensure, business_account, query_charge, query_price
from tests.payouts.conftest import members


def test_price_is_per_query_plus_per_epsilon_times_epsilon() -> None:
    price = {"per_query": "1.00", "per_epsilon": "10.00"}
    assert query_price(price=price, epsilon="0.5") == 6_000_000
    assert query_price(price=price, epsilon="0.0000001") == 1_000_001  # rounded up
    assert query_price(price={"per_query": "0", "per_epsilon": "0"}, epsilon=1) == 0


def test_price_refuses_junk() -> None:
    with pytest.raises(ValidationFailed):
        query_price(price={"per_query": "abc"}, epsilon=1)
    with pytest.raises(ValidationFailed):
        query_price(price={"per_query": "-1"}, epsilon=1)


def test_charge_splits_to_the_unit(funded: Any, dataset: Any, make_query: Any) -> None:
    query = make_query(dataset, epsilon="0.5")  # 6.000000 EUR
    distribution = query_charge(query=query, members=members(3, 4, 5, 9, 10, 11, 12))
    # fee 20% = 1.200000; pool 4.800000 over 7 = 0.685714 each, remainder 0.000002
    assert (distribution.gross, distribution.fee) == (6_000_000, 1_200_000)
    assert (distribution.pool_size, distribution.share, distribution.remainder) == (7, 685_714, 2)
    assert distribution.fee + distribution.share * 7 + distribution.remainder == distribution.gross
    assert members_from_ranges(ranges_decode(distribution.membership.ranges)).tolist() == [
        3,
        4,
        5,
        9,
        10,
        11,
        12,
    ]
    assert distribution.membership.range_count == 2
    balances = {
        kind: account_get(kind=kind, currency="EUR").balance
        for kind in (
            Account.Kind.PLATFORM_REVENUE,
            Account.Kind.POOL_CLEARING,
            Account.Kind.ROUNDING,
        )
    }
    assert balances == {
        Account.Kind.PLATFORM_REVENUE: 1_200_000,
        Account.Kind.POOL_CLEARING: 4_799_998,
        Account.Kind.ROUNDING: 2,
    }
    assert business_account(organization=funded).balance == 94_000_000
    actions = list(
        AuditEvent.objects.filter(subject=f"query:{query.pk}").values_list("action", flat=True)
    )
    assert actions == ["payouts.query.charged", "payouts.distribution.recorded"]
    assert ledger_reconcile().ok


def test_charge_is_one_row_however_big_the_pool(funded: Any, dataset: Any, make_query: Any) -> None:
    query = make_query(dataset)
    pool = np.arange(1, 200_000, dtype=np.int64)  # 199,999: leaves a remainder
    query_charge(query=query, members=pool)
    assert Distribution.objects.count() == 1
    assert Posting.objects.filter(entry__kind=JournalEntry.Kind.QUERY_CHARGE).count() == 4


def test_charge_twice_charges_once(funded: Any, dataset: Any, make_query: Any) -> None:
    query = make_query(dataset)
    first = query_charge(query=query, members=members(1, 2, 3))
    second = query_charge(query=query, members=members(1, 2, 3, 4))
    assert first.pk == second.pk
    assert Distribution.objects.count() == 1
    assert business_account(organization=funded).balance == 94_000_000
    assert AuditEvent.objects.filter(action="payouts.query.charged").count() == 1


def test_charge_without_balance_is_refused_and_changes_nothing(
    business_user: Any, dataset: Any, make_query: Any
) -> None:
    query = make_query(dataset)
    before = (JournalEntry.objects.count(), Posting.objects.count(), AuditEvent.objects.count())
    with pytest.raises(InsufficientBalance):
        query_charge(query=query, members=members(1, 2))
    assert (
        JournalEntry.objects.count(),
        Posting.objects.count(),
        AuditEvent.objects.count(),
    ) == before
    assert Distribution.objects.count() == 0


def test_balance_ensure(funded: Any, business_user: Any) -> None:
    balance_ensure(organization=funded, amount=100_000_000)
    with pytest.raises(InsufficientBalance, match="100.000001"):
        balance_ensure(organization=funded, amount=100_000_001)


def test_share_does_not_depend_on_who_is_in_the_pool(
    funded: Any, dataset: Any, make_query: Any
) -> None:
    """Equal shares: two pools of equal size get the same share, whatever their members."""
    a = query_charge(query=make_query(dataset), members=members(1, 2, 3, 4))
    b = query_charge(query=make_query(dataset), members=members(10, 20, 30, 40))
    assert (a.share, a.remainder) == (b.share, b.remainder)


def test_members_must_be_sorted_and_distinct(funded: Any, dataset: Any, make_query: Any) -> None:
    with pytest.raises(ValidationFailed):
        query_charge(query=make_query(dataset), members=np.array([3, 2, 1], dtype=np.int64))
    with pytest.raises(ValidationFailed):
        query_charge(query=make_query(dataset), members=np.array([1, 1, 2], dtype=np.int64))
    assert Distribution.objects.count() == 0
    assert business_account(organization=funded).balance == 100_000_000


def test_empty_pool_books_everything_after_fee_to_rounding(
    funded: Any, dataset: Any, make_query: Any
) -> None:
    distribution = query_charge(query=make_query(dataset), members=members())
    assert (distribution.pool_size, distribution.share, distribution.remainder) == (0, 0, 4_800_000)
    assert ledger_reconcile().ok
