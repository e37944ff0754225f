"""The portal states the guarantee the API states: delta beside epsilon, the privacy unit,
one interval per mean, and the contributor's own cap (set at consent, shown on the dashboard)."""

from __future__ import annotations

from typing import Any

from django.test import Client

from cleanroom.datasets.models import Consent
from cleanroom.queries.services import query_execute

GROUPED = "SELECT region, COUNT(*) AS n, AVG(income) AS m FROM households GROUP BY region"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_preview_names_the_relation_and_gives_a_mean_one_half_width(
    households: Any, business_user: Any
) -> None:
    page = signed_in(business_user).post(
        "/queries/preview/", {"dataset": "households", "sql": GROUPED, "epsilon": "1"}
    )
    text = page.content.decode()
    assert page.status_code == 200
    assert "Privacy unit: One contributor&#x27;s whole data" in text
    assert "sum ±" not in text and "count ±" not in text
    assert "(a group of about 1 contributors)" in text


def test_a_thresholded_query_shows_its_delta(pool_dataset: Any, business_user: Any) -> None:
    pool_dataset(policy={"private_keys": True, "delta": "0.0000001"})
    page = signed_in(business_user).post(
        "/queries/preview/",
        {
            "dataset": "households",
            "sql": "SELECT age, COUNT(*) AS n FROM households GROUP BY age",
            "epsilon": "1",
        },
    )
    assert "δ <strong>" in page.content.decode()


def test_consent_with_a_cap_and_the_dashboard_shows_how_close(
    households: Any, business_user: Any, make_contributor: Any, api: Any
) -> None:
    person = make_contributor("did:example:households-0")
    client = signed_in(person.user)
    response = client.post("/datasets/households/consent/", {"privacy_cap": "2"})
    assert response.status_code == 302
    assert Consent.objects.get(contributor=person, withdrawn_at__isnull=True).privacy_cap == 2
    card = client.get("/datasets/households/").content.decode()
    assert "at most ε 2 per year on this dataset (your choice)" in card
    submitted = api(business_user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": GROUPED, "epsilon": 0.5}, format="json"
    )
    query_execute(query_id=submitted.json()["id"])
    dashboard = client.get("/my-data/").content.decode()
    assert "households: ε 0.5 of your cap 2 this year" in dashboard
    assert 'aria-valuenow="25.0"' in dashboard
    assert "In total, across datasets: ε 0.5" in dashboard


def test_a_bad_cap_in_the_portal_is_refused_and_changes_nothing(
    households: Any, make_contributor: Any
) -> None:
    person = make_contributor("did:example:newcomer")
    client = signed_in(person.user)
    response = client.post("/datasets/households/consent/", {"privacy_cap": "-3"}, follow=True)
    assert "privacy_cap.epsilon must be a number greater than 0" in response.content.decode()
    assert not Consent.objects.filter(contributor=person).exists()
