"""The settlements page flags contributors who could not be paid and says what happens."""

from __future__ import annotations

from typing import Any

from django.test import Client

from payouts.disbursement import payout_send, payouts_create
from payouts.services import payout_destination_set, query_charge
from payouts.settlement import settlement_open, settlement_process
from tests.payouts.conftest import members


def test_settlement_page_counts_paid_and_flags_those_without_a_destination(
    funded: Any, make_dataset: Any, make_query: Any, make_contributor: Any, compliance_user: Any
) -> None:
    people = [make_contributor() for _ in range(3)]
    payout_destination_set(
        contributor=people[0], holder_name="Ada", iban="DE89 3704 0044 0532 0130 00"
    )
    query_charge(query=make_query(make_dataset()), members=members(*(p.pk for p in people)))
    settlement = settlement_open(currency="EUR")
    assert settlement is not None
    settlement = settlement_process(settlement_id=settlement.pk)
    for payout_id in payouts_create(settlement=settlement, threshold=1):
        payout_send(payout_id=payout_id)
    client = Client()
    client.force_login(compliance_user)

    page = client.get("/money/settlements/").content.decode()

    assert '<strong class="error flag">2</strong>' in page  # two without a destination
    assert "kept for them" in page
    assert "the first settlement after they add a bank account" in page
    row = page[page.index(f"<td>#{settlement.pk}</td>") :]
    assert '<td class="num">1' in row  # one paid
