"""PATCH /api/v1/datasets/{slug}/: terms versions, frozen schema, budget floor."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from audit.models import AuditEvent
from cleanroom.datasets.models import Consent, Dataset
from tests.datasets.conftest import HOUSEHOLDS_POLICY, HOUSEHOLDS_SCHEMA, record

URL = "/api/v1/datasets/households/"


def test_new_terms_bump_the_version(api: Any, compliance_user: Any, dataset: Any) -> None:
    response = api(compliance_user).patch(URL, {"purpose": "Rent research"}, format="json")

    assert response.status_code == 200
    assert response.json()["purpose"] == "Rent research"
    assert response.json()["terms_version"] == 2
    event = AuditEvent.objects.get(action="cleanroom.dataset.updated")
    assert event.payload == {
        "fields": ["purpose"],
        "terms_version": 2,
        "needs_reconsent": ["purpose"],
        "purpose": "Rent research",
    }


def test_terms_that_take_from_contributors_bump_the_version_and_others_do_not(
    api: Any, compliance_user: Any, dataset: Any
) -> None:
    client = api(compliance_user)
    # Paid more, kept for less time, a tighter budget: only more protection, same terms.
    price = {"currency": "EUR", "per_query": "2", "per_epsilon": "10", "platform_fee": "0.2"}
    assert client.patch(URL, {"price": price}, format="json").json()["terms_version"] == 1
    assert client.patch(URL, {"retention_days": 30}, format="json").json()["terms_version"] == 1
    body = client.patch(URL, {"policy": {"total_epsilon": "8"}}, format="json").json()
    assert (body["terms_version"], body["budget"]["total_epsilon"]) == (1, "8")
    # Paid less, kept longer, a larger budget: contributors must consent again.
    cheaper = {**price, "per_epsilon": "5"}
    assert client.patch(URL, {"price": cheaper}, format="json").json()["terms_version"] == 2
    assert client.patch(URL, {"retention_days": 400}, format="json").json()["terms_version"] == 3
    body = client.patch(URL, {"policy": {"total_epsilon": "20"}}, format="json").json()
    assert (body["terms_version"], body["budget"]["total_epsilon"]) == (4, "20")


def test_renaming_or_unchanged_values_keep_the_version(
    api: Any, compliance_user: Any, dataset: Any
) -> None:
    client = api(compliance_user)
    assert client.patch(URL, {"name": "Homes"}, format="json").json()["terms_version"] == 1
    same = {"purpose": "Household budgets research", "policy": HOUSEHOLDS_POLICY}
    assert client.patch(URL, same, format="json").json()["terms_version"] == 1


def test_schema_change_after_data_is_refused(
    api: Any, compliance_user: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    upload(consented(), dataset, [record()])
    schema = {"columns": [*HOUSEHOLDS_SCHEMA["columns"], {"name": "pets", "type": "boolean"}]}

    response = api(compliance_user).patch(URL, {"schema": schema}, format="json")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "The schema cannot change once the dataset holds data; publish a new dataset "
        "(a new version) with the new schema instead."
    )
    dataset.refresh_from_db()
    assert [c["name"] for c in dataset.schema["columns"]] == [
        "age",
        "region",
        "income",
        "household_size",
        "owns_home",
    ]
    assert dataset.terms_version == 1


def test_schema_change_before_data_is_a_new_terms_version(
    api: Any, compliance_user: Any, dataset: Any
) -> None:
    schema = {"columns": [{"name": "pets", "type": "boolean"}]}
    response = api(compliance_user).patch(URL, {"schema": schema}, format="json")
    assert response.status_code == 200
    assert response.json()["schema"] == schema
    assert response.json()["terms_version"] == 2


def test_total_budget_cannot_drop_below_spent(api: Any, compliance_user: Any, dataset: Any) -> None:
    Dataset.objects.filter(pk=dataset.pk).update(spent_epsilon=Decimal("4"))
    policy = {**HOUSEHOLDS_POLICY, "total_epsilon": "3", "max_query_epsilon": "1"}

    response = api(compliance_user).patch(URL, {"policy": policy}, format="json")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "policy.total_epsilon cannot be below the epsilon already spent (4)."
    )
    dataset.refresh_from_db()
    assert dataset.total_epsilon == Decimal("10")
    assert dataset.policy["total_epsilon"] == "10"


def test_unknown_fields_and_other_roles_are_refused(
    api: Any, compliance_user: Any, business_user: Any, dataset: Any
) -> None:
    response = api(compliance_user).patch(URL, {"slug": "other"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "These fields cannot be changed: slug."
    assert api(business_user).patch(URL, {"name": "x"}, format="json").status_code == 403
    dataset.refresh_from_db()
    assert (dataset.slug, dataset.name, dataset.terms_version) == ("households", "Households", 1)


def test_existing_consents_stay_on_their_version(
    api: Any, compliance_user: Any, dataset: Any, consented: Any
) -> None:
    contributor = consented()
    api(compliance_user).patch(URL, {"purpose": "New purpose"}, format="json")

    consent = Consent.objects.get(contributor=contributor)
    assert consent.terms_version == 1
    assert consent.withdrawn_at is None
    assert api(contributor.user).get(URL).json()["consent"] == "outdated"
