"""Payouts through the fake bank: threshold, idempotent sends, 429, timeout after acceptance,
refusals, late failures, duplicated and out-of-order webhooks; the ledger stays exact."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.errors import ValidationFailed
from payouts.disbursement import payout_send, payouts_create, webhooks_pull
from payouts.models import FakeBankFault, FakeBankTransfer, Payout, PayoutDestination
from payouts.providers.base import ProviderTimeout, RateLimited
from payouts.providers.fake_bank import fault_inject
from payouts.reconcile import ledger_reconcile
from payouts.selectors import contributor_balance
from payouts.services import payout_destination_set, query_charge
from payouts.settlement import settlement_open, settlement_process
from tests.payouts.conftest import members

IBAN = "DE89 3704 0044 0532 0130 00"


@pytest.fixture
def settled(funded: Any, dataset: Any, make_query: Any, make_contributor: Any) -> Any:
    """Three contributors with destinations, two queries (1.60 EUR each per query), settled."""
    people = [make_contributor() for _ in range(3)]
    for person in people:
        payout_destination_set(contributor=person, holder_name="A Person", iban=IBAN)
    pool = members(*(p.pk for p in people))
    query_charge(query=make_query(dataset, epsilon="0.5"), members=pool)
    query_charge(query=make_query(dataset, epsilon="0.5"), members=pool)
    settlement = settlement_open(currency="EUR")
    assert settlement is not None
    settlement = settlement_process(settlement_id=settlement.pk)
    return settlement, people


def _pay_all(settlement: Any) -> None:
    for payout_id in payouts_create(settlement=settlement):
        payout_send(payout_id=payout_id)
    webhooks_pull(provider="fake_bank")


def test_everyone_over_the_threshold_is_paid_once(settled: Any) -> None:
    settlement, people = settled
    _pay_all(settlement)
    payouts = list(Payout.objects.order_by("contributor_id"))
    assert [(p.contributor_id, p.amount, p.status) for p in payouts] == [
        (person.pk, 3_200_000, "paid") for person in people
    ]
    assert FakeBankTransfer.objects.count() == 3
    assert all(contributor_balance(contributor_pk=p.pk, currency="EUR") == 0 for p in people)
    assert AuditEvent.objects.filter(action="payouts.payout.sent").count() == 3
    assert AuditEvent.objects.filter(action="payouts.payout.paid").count() == 3
    # A second run creates nothing and sends nothing.
    _pay_all(settlement)
    assert Payout.objects.count() == 3 and FakeBankTransfer.objects.count() == 3
    report = ledger_reconcile()
    assert report.ok, report.problems


def test_balance_under_threshold_waits(
    funded: Any, dataset: Any, make_query: Any, make_contributor: Any
) -> None:
    people = [make_contributor() for _ in range(10)]
    for person in people:
        payout_destination_set(contributor=person, holder_name="A Person", iban=IBAN)
    query_charge(query=make_query(dataset), members=members(*(p.pk for p in people)))  # 0.48 each
    settlement = settlement_process(settlement_id=settlement_open(currency="EUR").pk)  # type: ignore[union-attr]
    assert payouts_create(settlement=settlement) == []
    assert contributor_balance(contributor_pk=people[0].pk, currency="EUR") == 480_000


def test_rate_limited_send_moves_nothing_then_succeeds(settled: Any) -> None:
    settlement, _ = settled
    ids = payouts_create(settlement=settlement)
    fault_inject(FakeBankFault.Kind.RATE_LIMIT)
    with pytest.raises(RateLimited) as raised:
        payout_send(payout_id=ids[0])
    assert raised.value.retry_after == 1.0
    assert FakeBankTransfer.objects.count() == 0
    assert Payout.objects.get(pk=ids[0]).status == "pending"
    assert payout_send(payout_id=ids[0]) == "sent"
    assert FakeBankTransfer.objects.count() == 1


def test_timeout_after_acceptance_is_replayed_not_paid_twice(settled: Any) -> None:
    settlement, _ = settled
    ids = payouts_create(settlement=settlement)
    fault_inject(FakeBankFault.Kind.TIMEOUT_AFTER_ACCEPT)
    with pytest.raises(ProviderTimeout):
        payout_send(payout_id=ids[0])
    assert FakeBankTransfer.objects.count() == 1  # the bank did accept it
    assert Payout.objects.get(pk=ids[0]).status == "pending"
    assert payout_send(payout_id=ids[0]) == "sent"  # same key: the bank replays
    assert FakeBankTransfer.objects.count() == 1
    webhooks_pull(provider="fake_bank")
    assert Payout.objects.get(pk=ids[0]).status == "paid"
    assert ledger_reconcile().ok


def test_webhook_paid_before_we_recorded_acceptance(settled: Any) -> None:
    """The response was lost, the bank's webhook arrives first: paid, and the retry is a no-op."""
    settlement, _ = settled
    ids = payouts_create(settlement=settlement)
    fault_inject(FakeBankFault.Kind.TIMEOUT_AFTER_ACCEPT)
    with pytest.raises(ProviderTimeout):
        payout_send(payout_id=ids[0])
    webhooks_pull(provider="fake_bank")
    assert Payout.objects.get(pk=ids[0]).status == "paid"
    assert payout_send(payout_id=ids[0]) == "paid"
    assert FakeBankTransfer.objects.count() == 1
    assert ledger_reconcile().ok


def test_duplicated_and_reordered_webhooks_change_nothing_twice(settled: Any) -> None:
    from payouts.models import ProviderEvent

    settlement, people = settled
    for payout_id in payouts_create(settlement=settlement):
        payout_send(payout_id=payout_id)
    fault_inject(FakeBankFault.Kind.DUPLICATE_WEBHOOKS)
    fault_inject(FakeBankFault.Kind.REORDER_WEBHOOKS)
    assert webhooks_pull(provider="fake_bank") == 12  # 6 events, each delivered twice
    outcomes = sorted(ProviderEvent.objects.values_list("outcome", flat=True))
    # paid arrives first (newest first), the late "processing" is stale; duplicates dropped.
    assert outcomes == ["paid"] * 3 + ["stale"] * 3
    assert set(Payout.objects.values_list("status", flat=True)) == {"paid"}
    assert AuditEvent.objects.filter(action="payouts.payout.paid").count() == 3
    assert ledger_reconcile().ok


def test_refused_payout_returns_the_money(settled: Any) -> None:
    settlement, people = settled
    ids = payouts_create(settlement=settlement)
    fault_inject(FakeBankFault.Kind.REJECT)
    assert payout_send(payout_id=ids[0]) == "failed"
    payout = Payout.objects.get(pk=ids[0])
    assert payout.status == "failed" and "closed" in payout.last_error
    assert contributor_balance(contributor_pk=payout.contributor_id, currency="EUR") == 3_200_000
    assert AuditEvent.objects.filter(action="payouts.payout.failed").count() == 1
    assert ledger_reconcile().ok


def test_transfer_failing_later_returns_the_money(settled: Any) -> None:
    settlement, _ = settled
    ids = payouts_create(settlement=settlement)
    fault_inject(FakeBankFault.Kind.FAIL_LATER)
    assert payout_send(payout_id=ids[0]) == "sent"
    webhooks_pull(provider="fake_bank")
    payout = Payout.objects.get(pk=ids[0])
    assert payout.status == "failed"
    assert contributor_balance(contributor_pk=payout.contributor_id, currency="EUR") == 3_200_000
    assert ledger_reconcile().ok


def test_destination_is_validated_and_nothing_stored_when_wrong(contributor: Any) -> None:
    with pytest.raises(ValidationFailed, match="IBAN"):
        payout_destination_set(contributor=contributor, holder_name="A", iban="DE00 1234")
    with pytest.raises(ValidationFailed):
        payout_destination_set(contributor=contributor, holder_name=" ", iban=IBAN)
    assert PayoutDestination.objects.count() == 0
    payout_destination_set(contributor=contributor, holder_name="A", iban=IBAN.lower())
    assert PayoutDestination.objects.get().iban == "DE89370400440532013000"


def test_payout_keeps_the_destination_it_was_made_with(settled: Any) -> None:
    """Changing the destination after a payout was made does not change that payout's request."""
    settlement, people = settled
    ids = payouts_create(settlement=settlement)
    payout = Payout.objects.get(pk=ids[0])
    payout_destination_set(
        contributor=payout.contributor, holder_name="Other", iban="GB82 WEST 1234 5698 7654 32"
    )
    assert payout_send(payout_id=payout.pk) == "sent"
    assert FakeBankTransfer.objects.get().iban == "DE89370400440532013000"


def test_refresh_asks_the_bank_when_a_webhook_never_came(settled: Any) -> None:
    from payouts.disbursement import payouts_refresh
    from payouts.models import FakeBankEvent

    settlement, _ = settled
    for payout_id in payouts_create(settlement=settlement):
        payout_send(payout_id=payout_id)
    FakeBankEvent.objects.all().delete()  # the webhooks are lost
    assert payouts_refresh(older_than_seconds=0) == {"paid": 3, "failed": 0}
    assert set(Payout.objects.values_list("status", flat=True)) == {"paid"}
    assert payouts_refresh(older_than_seconds=0) == {"paid": 0, "failed": 0}
    assert ledger_reconcile().ok
