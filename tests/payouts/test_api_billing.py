"""GET /api/v1/billing/ and POST /api/v1/billing/top-ups/ (business only)."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEvent
from payouts.models import Account, JournalEntry
from payouts.services import query_charge
from tests.payouts.conftest import members


def test_billing_shows_balance_and_charges(
    api: Any, business_user: Any, funded: Any, dataset: Any, make_query: Any
) -> None:
    query = make_query(dataset, epsilon="0.5")
    query_charge(query=query, members=members(1, 2, 3))
    response = api(business_user).get("/api/v1/billing/")
    assert response.status_code == 200
    body = response.json()
    assert body["balance"] == "94.000000"
    assert body["currency"] == "EUR"
    assert [(c["query"], c["amount"], c["dataset"]) for c in body["charges"]] == [
        (query.pk, "6.000000", dataset.slug)
    ]
    assert [t["amount"] for t in body["top_ups"]] == ["100.000000"]


def test_billing_of_another_organization_is_not_shown(
    api: Any, other_business_user: Any, funded: Any, dataset: Any, make_query: Any
) -> None:
    query_charge(query=make_query(dataset), members=members(1))
    body = api(other_business_user).get("/api/v1/billing/").json()
    assert (body["balance"], body["charges"], body["top_ups"]) == ("0.000000", [], [])


@pytest.mark.parametrize("role_user", ["compliance_user", "contributor"])
def test_billing_is_for_businesses(api: Any, request: Any, role_user: str) -> None:
    user = request.getfixturevalue(role_user)
    user = getattr(user, "user", user)
    assert api(user).get("/api/v1/billing/").status_code == 403
    assert (
        api(user).post("/api/v1/billing/top-ups/", {"amount": "1"}, format="json").status_code
        == 403
    )


def test_top_up_credits_the_balance(api: Any, business_user: Any) -> None:
    response = api(business_user).post(
        "/api/v1/billing/top-ups/", {"amount": "12.345678"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["amount"] == "12.345678"
    assert response.json()["balance"] == "12.345678"
    assert api(business_user).get("/api/v1/billing/").json()["balance"] == "12.345678"
    event = AuditEvent.objects.get(action="payouts.topup.recorded")
    assert event.payload["amount"] == "12.345678"


def test_top_up_with_the_same_idempotency_key_counts_once(api: Any, business_user: Any) -> None:
    client = api(business_user)
    for _ in range(2):
        response = client.post(
            "/api/v1/billing/top-ups/",
            {"amount": "5.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="invoice-17",
        )
        assert response.status_code == 201
    assert client.get("/api/v1/billing/").json()["balance"] == "5.000000"
    assert JournalEntry.objects.filter(kind="top_up").count() == 1


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("-5", "greater than zero"),
        ("0", "greater than zero"),
        ("1.0000001", "decimal places"),
        ("ten", "not a decimal"),
        ("NaN", "finite"),
        ("1e30", "larger than"),
        (12.5, "not a float"),
    ],
)
def test_bad_top_up_is_refused_and_changes_nothing(
    api: Any, business_user: Any, amount: Any, message: str
) -> None:
    response = api(business_user).post(
        "/api/v1/billing/top-ups/", {"amount": amount}, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert JournalEntry.objects.count() == 0
    assert not AuditEvent.objects.filter(action="payouts.topup.recorded").exists()


def test_top_up_without_amount_names_the_field(api: Any, business_user: Any) -> None:
    response = api(business_user).post("/api/v1/billing/top-ups/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "amount"


def test_one_idempotency_key_from_two_users_of_an_organization_credits_both(
    api: Any, business_user: Any
) -> None:
    """The header is one user's retry key, not the organization's transfer reference: a
    colleague who happens to send the same key is a different top-up, credited."""
    from cleanroom.accounts.services import account_create

    colleague = account_create(
        role="business", username="colleague", password="colleague-pass-1", organization="Acme"
    )
    long_key = "k" * 80
    sends = [
        (business_user, "1", "5.00"),
        (colleague, "1", "7.00"),
        (business_user, long_key + "a", "1.00"),
        (business_user, long_key + "b", "2.00"),
    ]
    for user, key, amount in sends:
        response = api(user).post(
            "/api/v1/billing/top-ups/", {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        assert response.status_code == 201, response.json()
        assert "Idempotent-Replayed" not in response
    assert api(colleague).get("/api/v1/billing/").json()["balance"] == "15.000000"
    assert JournalEntry.objects.filter(kind="top_up").count() == 4


def test_a_transfer_reference_counts_once_and_refuses_another_amount(
    api: Any, business_user: Any
) -> None:
    client = api(business_user)
    body = {"amount": "5.00", "reference": "bank-2026-0042"}
    assert client.post("/api/v1/billing/top-ups/", body, format="json").status_code == 201
    again = client.post("/api/v1/billing/top-ups/", body, format="json")
    assert again.status_code == 201 and again.json()["amount"] == "5.000000"
    other = client.post(
        "/api/v1/billing/top-ups/", {**body, "amount": "500.00"}, format="json"
    )
    assert other.status_code == 409
    assert "bank-2026-0042" in other.json()["detail"]
    other_currency = client.post(
        "/api/v1/billing/top-ups/", {**body, "currency": "USD"}, format="json"
    )
    assert other_currency.status_code == 409
    assert not Account.objects.filter(currency="USD", kind=Account.Kind.BUSINESS).exists()
    assert client.get("/api/v1/billing/").json()["balance"] == "5.000000"
    assert JournalEntry.objects.filter(kind="top_up").count() == 1
    assert AuditEvent.objects.filter(action="payouts.topup.recorded").count() == 1
