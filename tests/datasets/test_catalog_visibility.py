"""policy.allowed_organizations hides a dataset from other organizations' businesses (404)."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tests.datasets.conftest import HOUSEHOLDS_POLICY

URL = "/api/v1/datasets/"


def _restricted(make_dataset: Any, business_user: Any) -> Any:
    """A dataset open to Acme only (business_user creates the Acme organization)."""
    policy = {**HOUSEHOLDS_POLICY, "allowed_organizations": ["Acme"]}
    return make_dataset(slug="private_homes", name="Private homes", policy=policy)


def test_api_hides_the_dataset_from_other_organizations(
    api: Any,
    make_dataset: Any,
    business_user: Any,
    other_business_user: Any,
    compliance_user: Any,
    contributor: Any,
) -> None:
    make_dataset()  # open to everyone
    _restricted(make_dataset, business_user)

    def slugs(user: Any) -> list[str]:
        response = api(user).get(URL)
        assert response.status_code == 200
        return [d["slug"] for d in response.json()]

    assert slugs(other_business_user) == ["households"]
    assert slugs(business_user) == ["households", "private_homes"]
    assert slugs(compliance_user) == ["households", "private_homes"]
    assert slugs(contributor.user) == ["households", "private_homes"]

    rival = api(other_business_user).get(f"{URL}private_homes/")
    assert rival.status_code == 404
    assert rival.json()["detail"] == "No dataset named 'private_homes'."
    assert "Acme" not in rival.content.decode()
    # The same answer as a dataset that does not exist: nothing to learn from the probe.
    missing = api(other_business_user).get(f"{URL}no_such_set/")
    assert missing.status_code == 404
    for user in (business_user, compliance_user, contributor.user):
        assert api(user).get(f"{URL}private_homes/").status_code == 200


def test_portal_catalog_and_detail_hide_it_too(
    make_dataset: Any, business_user: Any, other_business_user: Any, compliance_user: Any
) -> None:
    _restricted(make_dataset, business_user)
    rival = Client()
    rival.force_login(other_business_user)
    catalog = rival.get("/datasets/")
    assert catalog.status_code == 200
    assert "private_homes" not in catalog.content.decode()
    assert "Private homes" not in catalog.content.decode()
    assert rival.get("/datasets/private_homes/").status_code == 404

    for user in (business_user, compliance_user):
        client = Client()
        client.force_login(user)
        assert "Private homes" in client.get("/datasets/").content.decode()
        assert client.get("/datasets/private_homes/").status_code == 200
