"""GET /api/v1/datasets/ and /{slug}/: the catalog every signed-in role reads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from cleanroom.datasets.models import Dataset
from cleanroom.datasets.services import consent_withdraw
from cleanroom.queries.dp import PRIVACY_UNIT
from tests.datasets.conftest import record


def test_catalog_counts_consented_contributors_with_data(
    api: Any, business_user: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    first, second, _no_data = consented(), consented(), consented()
    upload(first, dataset, [record()])
    upload(second, dataset, [record(), record()])
    Dataset.objects.filter(pk=dataset.pk).update(spent_epsilon=Decimal("2.5"))

    listing = api(business_user).get("/api/v1/datasets/")
    detail = api(business_user).get("/api/v1/datasets/households/")

    assert listing.status_code == 200 and detail.status_code == 200
    assert listing.json() == [detail.json()]
    body = detail.json()
    assert body["contributors"] == 2
    assert body["budget"] == {
        "total_epsilon": "10",
        "spent_epsilon": "2.5",
        "remaining_epsilon": "7.5",
        "total_delta": "0",
        "spent_delta": "0",
        "remaining_delta": "0",
        "privacy_unit": PRIVACY_UNIT,
    }
    assert "consent" not in body

    consent_withdraw(contributor=second, dataset=dataset)
    assert api(business_user).get("/api/v1/datasets/households/").json()["contributors"] == 1


def test_contributor_sees_own_consent_status(
    api: Any, dataset: Any, consented: Any, make_contributor: Any
) -> None:
    assert api(consented().user).get("/api/v1/datasets/households/").json()["consent"] == (
        "current"
    )
    stranger = make_contributor()
    assert api(stranger.user).get("/api/v1/datasets/households/").json()["consent"] == "none"


def test_unknown_dataset_is_404(api: Any, business_user: Any, db: Any) -> None:
    response = api(business_user).get("/api/v1/datasets/nope/")
    assert response.status_code == 404
    assert response.json()["detail"] == "No dataset named 'nope'."


def test_database_refuses_overspent_budget(dataset: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Dataset.objects.filter(pk=dataset.pk).update(spent_epsilon=Decimal("10.000000000001"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Dataset.objects.filter(pk=dataset.pk).update(spent_epsilon=Decimal("-1"))
    dataset.refresh_from_db()
    assert dataset.spent_epsilon == 0
