"""After sign-in each role lands on its own page, not the marketing home page."""

from __future__ import annotations

from typing import Any

from django.test import Client


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_business_lands_on_its_balance_recent_queries_and_datasets(
    business_user: Any, other_business_user: Any, make_dataset_for_display: Any
) -> None:
    from payouts.services import topup_record

    query = make_dataset_for_display(business_user)
    topup_record(
        organization=business_user.organization, amount=123_450_000, actor=None, currency="EUR"
    )
    page = _client(business_user).get("/").content.decode()
    assert "For businesses" not in page  # not the marketing page
    assert 'id="overview-balance"' in page and ">€123.45</span>" in page
    assert f'href="/queries/{query.pk}/">#{query.pk}</a>' in page
    assert 'href="/datasets/households/">Households</a>' in page
    # Another organization's landing page shows none of it.
    other = _client(other_business_user).get("/").content.decode()
    assert f"/queries/{query.pk}/" not in other and "€123.45" not in other


def test_compliance_lands_on_the_review_queue_and_a_contributor_on_their_data(
    compliance_user: Any, contributor: Any, make_dataset_for_display: Any, business_user: Any
) -> None:
    make_dataset_for_display(business_user)
    page = _client(compliance_user).get("/").content.decode()
    assert 'id="overview-review"' in page and "Nothing waits for review." in page
    response = _client(contributor.user).get("/")
    assert (response.status_code, response["Location"]) == (302, "/my-data/")
    assert "For businesses" in Client().get("/").content.decode()


def test_the_sign_in_page_leads_contributors_to_join(db: Any) -> None:
    page = Client().get("/sign-in/").content.decode()
    assert '<a href="/join/" id="join-link">join or sign in with your wallet</a>' in page
