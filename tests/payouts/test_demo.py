"""The payouts demo seed: prepaid balance for acme, settles and pays, safe to run twice."""

from __future__ import annotations

from typing import Any

from payouts import demo
from payouts.models import FakeBankTransfer, Payout, Settlement
from payouts.reconcile import ledger_reconcile
from payouts.services import business_account, query_charge
from tests.payouts.conftest import members


def test_demo_prepays_settles_and_pays_idempotently(
    db: Any, make_dataset: Any, make_query: Any, make_contributor: Any
) -> None:
    from cleanroom.accounts import demo as accounts_demo

    accounts_demo.seed()
    from cleanroom.accounts.models import User

    acme = User.objects.get(username="acme")
    people = [make_contributor() for _ in range(2)]
    demo.seed()
    assert business_account(organization=acme.organization).balance == 500_000_000
    query_charge(
        query=make_query(make_dataset(), requester=acme), members=members(*(p.pk for p in people))
    )
    lines = demo.seed()
    assert any(line.startswith("Settlement") for line in lines)
    assert Settlement.objects.count() == 1
    assert set(Payout.objects.values_list("status", flat=True)) == {"paid"}
    assert FakeBankTransfer.objects.count() == 2
    demo.seed()
    assert business_account(organization=acme.organization).balance == 494_000_000
    assert (Settlement.objects.count(), FakeBankTransfer.objects.count()) == (1, 2)
    assert ledger_reconcile().ok
