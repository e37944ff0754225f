"""Portal pages of money: billing (business), earnings (contributor), compliance pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from payouts.models import JournalEntry, PayoutDestination
from payouts.services import query_charge
from tests.payouts.conftest import members


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_billing_page_shows_balance_charges_and_tops_up(
    business_user: Any, funded: Any, dataset: Any, make_query: Any
) -> None:
    query = make_query(dataset)
    query_charge(query=query, members=members(1, 2))
    client = _client(business_user)
    page = client.get("/billing/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "94.000000 EUR" in html and f"#{query.pk}" in html and "<svg" in html
    response = client.post("/billing/", {"amount": "6.5"})
    assert response.status_code == 302
    assert "100.500000 EUR" in client.get("/billing/").content.decode()


def test_billing_page_refuses_a_bad_top_up_and_changes_nothing(business_user: Any) -> None:
    response = _client(business_user).post("/billing/", {"amount": "-3"})
    assert response.status_code == 400
    assert "greater than zero" in response.content.decode()
    assert JournalEntry.objects.count() == 0


def test_earnings_page_and_destination_form(
    funded: Any, dataset: Any, make_query: Any, contributor: Any
) -> None:
    query_charge(query=make_query(dataset), members=members(contributor.pk))
    client = _client(contributor.user)
    html = client.get("/earnings/").content.decode()
    assert "4.800000 EUR" in html and dataset.slug in html
    bad = client.post("/earnings/", {"holder_name": "Ada", "iban": "XX"})
    assert bad.status_code == 400 and PayoutDestination.objects.count() == 0
    ok = client.post("/earnings/", {"holder_name": "Ada", "iban": "DE89370400440532013000"})
    assert ok.status_code == 302 and PayoutDestination.objects.count() == 1


@pytest.mark.parametrize(
    "path",
    ["/money/distributions/", "/money/settlements/", "/money/payouts/", "/money/reconciliation/"],
)
def test_compliance_pages(compliance_user: Any, business_user: Any, path: str) -> None:
    assert _client(compliance_user).get(path).status_code == 200
    assert _client(business_user).get(path).status_code == 403


def test_pages_need_the_right_role(business_user: Any, contributor: Any) -> None:
    assert _client(business_user).get("/earnings/").status_code == 403
    assert _client(contributor.user).get("/billing/").status_code == 403
    assert Client().get("/billing/").status_code == 302  # to sign-in


def test_navigation_lists_the_role_pages(business_user: Any, compliance_user: Any) -> None:
    assert 'href="/billing/"' in _client(business_user).get("/billing/").content.decode()
    html = _client(compliance_user).get("/money/payouts/").content.decode()
    assert 'href="/money/settlements/"' in html


def test_settlements_table_refreshes_as_a_fragment(compliance_user: Any) -> None:
    client = _client(compliance_user)
    assert 'hx-trigger="every 3s"' in client.get("/money/settlements/").content.decode()
    fragment = client.get("/money/settlements/?partial=1").content.decode()
    assert fragment.lstrip().startswith("<table>") and "No settlements yet." in fragment
