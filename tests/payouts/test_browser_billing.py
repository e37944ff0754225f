"""The billing page in a real Chromium: a business tops up and sees its balance and charges."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import sign_in

pytestmark = pytest.mark.browser


def test_business_tops_up_from_the_billing_page(
    page: Any,
    business_user: Any,
    dataset: Any,
    make_query: Any,
) -> None:
    from payouts.services import query_charge, topup_record
    from tests.payouts.conftest import members

    topup_record(organization=business_user.organization, amount=10_000_000, actor=None)
    query = make_query(dataset)
    query_charge(query=query, members=members(1, 2, 3))
    sign_in(page, "analyst", "analyst-pass-1")
    page.click("nav >> text=Billing")
    assert page.locator("[data-testid=balance]").inner_text() == "€4.00"
    assert page.locator("table td", has_text=f"#{query.pk}").first.is_visible()
    page.fill("input[name=amount]", "-1")
    page.click("text=Add funds")
    assert "greater than zero" in page.locator("[role=alert]").inner_text()
    page.fill("input[name=amount]", "25.50")
    page.click("text=Add funds")
    assert page.locator("[data-testid=balance]").inner_text() == "€29.50"
    page.screenshot(path="var/screenshot-billing.png")
