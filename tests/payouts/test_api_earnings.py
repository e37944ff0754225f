"""GET /api/v1/me/earnings/ and the payout destination (contributor only, their own)."""

from __future__ import annotations

from typing import Any

from payouts.merkle import proof_verify
from payouts.models import PayoutDestination
from payouts.selectors import contributor_earnings
from payouts.services import query_charge
from payouts.settlement import settlement_open, settlement_process
from tests.payouts.conftest import members

IBAN = "DE89 3704 0044 0532 0130 00"


def test_earnings_list_shares_balance_and_proofs(
    api: Any, funded: Any, dataset: Any, make_query: Any, make_contributor: Any
) -> None:
    me, other = make_contributor(), make_contributor()
    first = make_query(dataset, epsilon="0.5")
    query_charge(query=first, members=members(me.pk, other.pk))
    settlement = settlement_process(settlement_id=settlement_open(currency="EUR").pk)  # type: ignore[union-attr]
    second = make_query(dataset, epsilon="0.1")
    query_charge(query=second, members=members(me.pk))
    query_charge(query=make_query(dataset), members=members(other.pk))  # not mine
    body = api(me.user).get("/api/v1/me/earnings/").json()
    assert body["currency"] == "EUR"
    assert body["balance"] == "4.000000"  # 2.400000 settled + 1.600000 not yet
    assert [(s["query"], s["amount"], s["epsilon"], s["organization"]) for s in body["shares"]] == [
        (second.pk, "1.600000", "0.1", "Acme"),
        (first.pk, "2.400000", "0.5", "Acme"),
    ]
    assert body["shares"][0]["purpose"] == "Household income research"
    assert body["payouts"] == []
    [proof] = body["settlements"]
    assert proof["settlement"] == settlement.pk
    assert proof["leaf"]["contributor"] == me.pk
    assert proof_verify(
        leaf=bytes.fromhex(proof["leaf"]["hash"]),
        proof=proof["proof"],
        root=bytes.fromhex(settlement.merkle_root),
    )
    assert contributor_earnings(contributor=me)["balance"] == "4.000000"


def test_earnings_are_for_contributors(api: Any, business_user: Any, compliance_user: Any) -> None:
    assert api(business_user).get("/api/v1/me/earnings/").status_code == 403
    assert api(compliance_user).get("/api/v1/me/earnings/").status_code == 403
    assert api(None).get("/api/v1/me/earnings/").status_code == 401


def test_destination_set_and_read_back_masked(api: Any, contributor: Any) -> None:
    client = api(contributor.user)
    assert client.get("/api/v1/me/payout-destination/").status_code == 404
    response = client.put(
        "/api/v1/me/payout-destination/", {"holder_name": "Ada", "iban": IBAN}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["iban"] == "**** 3000"
    assert client.get("/api/v1/me/payout-destination/").json()["holder_name"] == "Ada"


def test_bad_destination_is_refused_and_nothing_stored(api: Any, contributor: Any) -> None:
    response = api(contributor.user).put(
        "/api/v1/me/payout-destination/", {"holder_name": "Ada", "iban": "DE00 0000"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "iban"
    response = api(contributor.user).put(
        "/api/v1/me/payout-destination/",
        {"holder_name": "Ada", "iban": IBAN, "provider": "paypal"},
        format="json",
    )
    assert response.status_code == 400
    assert "Unknown payout provider" in response.json()["detail"]
    assert PayoutDestination.objects.count() == 0
