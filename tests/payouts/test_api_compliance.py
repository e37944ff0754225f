"""Compliance money endpoints: payouts, distributions, settlements (and settle now through a
real worker), reconciliation; the providers' webhook endpoint."""

from __future__ import annotations

import time
from typing import Any

import pytest

from payouts.models import Payout, ProviderEvent, Settlement
from payouts.providers import provider_get
from payouts.services import payout_destination_set, query_charge
from tests.payouts.conftest import members

IBAN = "DE89 3704 0044 0532 0130 00"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/payouts/",
        "/api/v1/payouts/distributions/",
        "/api/v1/payouts/settlements/",
        "/api/v1/payouts/reconciliation/",
    ],
)
def test_compliance_only(api: Any, business_user: Any, contributor: Any, path: str) -> None:
    assert api(business_user).get(path).status_code == 403
    assert api(contributor.user).get(path).status_code == 403


def test_distributions_and_reconciliation(
    api: Any, compliance_user: Any, funded: Any, dataset: Any, make_query: Any
) -> None:
    query = make_query(dataset)
    query_charge(query=query, members=members(1, 2, 3))
    client = api(compliance_user)
    [row] = client.get("/api/v1/payouts/distributions/").json()["distributions"]
    assert (
        row["query"],
        row["gross"],
        row["fee"],
        row["pool_size"],
        row["share"],
        row["remainder"],
    ) == (
        query.pk,
        "6.000000",
        "1.200000",
        3,
        "1.600000",
        "0.000000",
    )
    report = client.get("/api/v1/payouts/reconciliation/").json()
    assert report["ok"] is True and report["problems"] == []


def test_bad_filters_are_refused(api: Any, compliance_user: Any) -> None:
    client = api(compliance_user)
    assert client.get("/api/v1/payouts/?status=lost").status_code == 400
    assert client.get("/api/v1/payouts/?limit=ten").status_code == 400
    assert client.get("/api/v1/payouts/settlements/999/").status_code == 404


def test_webhook_with_bad_signature_is_refused(api: Any, db: Any) -> None:
    response = api(None).post(
        "/api/v1/payouts/webhooks/fake_bank/",
        data=b'{"id": "e", "type": "transfer.paid", "data": {"reference": "r", "idempotency_key": "k"}}',
        content_type="application/json",
        HTTP_X_SIGNATURE="00",
    )
    assert response.status_code == 400
    assert ProviderEvent.objects.count() == 0
    assert api(None).post("/api/v1/payouts/webhooks/nobank/", {}, format="json").status_code == 400


def test_signed_webhook_is_applied_once(api: Any, db: Any) -> None:
    bank = provider_get("fake_bank")
    body = b'{"id": "evt_9", "type": "transfer.paid", "data": {"reference": "r", "idempotency_key": "k"}}'
    for expected in ("unknown_transfer", "duplicate"):
        response = api(None).post(
            "/api/v1/payouts/webhooks/fake_bank/",
            data=body,
            content_type="application/json",
            HTTP_X_SIGNATURE=bank.webhook_sign(body),
        )
        assert response.status_code == 200
        assert response.json()["outcome"] == expected


@pytest.mark.worker
def test_settle_now_runs_on_the_worker_and_pays(
    api: Any,
    worker: Any,
    compliance_user: Any,
    funded: Any,
    dataset: Any,
    make_query: Any,
    make_contributor: Any,
) -> None:
    people = [make_contributor() for _ in range(2)]
    for person in people:
        payout_destination_set(contributor=person, holder_name="A", iban=IBAN)
    query_charge(query=make_query(dataset), members=members(*(p.pk for p in people)))
    response = api(compliance_user).post("/api/v1/payouts/settlements/")
    assert response.status_code == 202
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Payout.objects.filter(status="paid").count() == 2:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(worker.log_tail())
    settlement = Settlement.objects.get()
    assert settlement.requested_by_id == compliance_user.pk
    body = api(compliance_user).get("/api/v1/payouts/").json()
    assert sorted(p["amount"] for p in body["payouts"]) == ["2.400000", "2.400000"]
    detail = (
        api(compliance_user)
        .get(f"/api/v1/payouts/settlements/{settlement.pk}/?contributor={people[0].pk}")
        .json()
    )
    assert detail["proof"]["amount"] == "2.400000"
