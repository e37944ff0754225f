"""Fixtures of the datasets area: a households dataset, consent and upload helpers."""

from __future__ import annotations

from typing import Any

import pytest

HOUSEHOLDS_SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": ["north", "south", "east", "west"]},
        {"name": "income", "type": "float", "lower": 0, "upper": 500000},
        {"name": "household_size", "type": "integer", "lower": 1, "upper": 12},
        {"name": "owns_home", "type": "boolean"},
    ]
}
HOUSEHOLDS_POLICY = {
    "total_epsilon": "10",
    "max_query_epsilon": "1",
    "min_contributors": 5,
    "max_rows_per_contributor": 20,
    "auto_approve": True,
}
HOUSEHOLDS_PRICE = {
    "currency": "EUR",
    "per_query": "1.50",
    "per_epsilon": "10",
    "platform_fee": "0.20",
}


def households_payload(**overrides: Any) -> dict[str, Any]:
    payload = {
        "slug": "households",
        "name": "Households",
        "purpose": "Household budgets research",
        "schema": HOUSEHOLDS_SCHEMA,
        "policy": HOUSEHOLDS_POLICY,
        "price": HOUSEHOLDS_PRICE,
        "retention_days": 365,
    }
    payload.update(overrides)
    return payload


def record(**overrides: Any) -> dict[str, Any]:
    row = {"age": 34, "region": "north", "income": 41250.5, "household_size": 3, "owns_home": True}
    row.update(overrides)
    return row


@pytest.fixture
def dataset(compliance_user: Any) -> Any:
    from cleanroom.datasets.services import dataset_create

    return dataset_create(actor=compliance_user, **households_payload())


@pytest.fixture
def make_dataset(compliance_user: Any) -> Any:
    from cleanroom.datasets.services import dataset_create

    def make(**overrides: Any) -> Any:
        return dataset_create(actor=compliance_user, **households_payload(**overrides))

    return make


@pytest.fixture
def consented(dataset: Any, make_contributor: Any) -> Any:
    """`consented()` makes a contributor who consented to `dataset`."""
    from cleanroom.datasets.services import consent_give

    def make(target: Any = None, did: str | None = None) -> Any:
        contributor = make_contributor(did)
        consent_give(contributor=contributor, dataset=target or dataset)
        return contributor

    return make


@pytest.fixture
def upload() -> Any:
    """`upload(contributor, dataset, records)` stores records through the service."""
    from cleanroom.datasets.services import contribution_upload

    def run(contributor: Any, dataset: Any, records: list[dict[str, Any]]) -> Any:
        return contribution_upload(contributor=contributor, dataset=dataset, records=records)

    return run


def state_of(dataset_slug: str = "households") -> dict[str, Any]:
    """Everything an upload could change, to assert that a refusal changed nothing."""
    from audit.models import AuditEvent
    from cleanroom.datasets.models import Consent, Contribution, ContributorKey, PoolSegment

    return {
        "contributions": Contribution.objects.count(),
        "keys": ContributorKey.objects.count(),
        "segments": PoolSegment.objects.count(),
        "consents": list(Consent.objects.values_list("pk", "withdrawn_at")),
        # A refusal appends only its own record (cleanroom/refusals.py): nothing else.
        "audit": AuditEvent.objects.exclude(action__endswith=".refused").count(),
    }


@pytest.fixture(autouse=True)
def _media_root(request: Any, tmp_path: Any) -> Any:
    """Segment files of in-process tests go to a temporary folder.

    Tests with the real worker keep the configured MEDIA_ROOT, which the worker
    process shares (their pool directory is named after the test database).
    """
    if "worker" in request.fixturenames:
        yield None
        return
    from django.conf import settings

    previous = settings.MEDIA_ROOT
    settings.MEDIA_ROOT = tmp_path / "media"
    yield settings.MEDIA_ROOT
    settings.MEDIA_ROOT = previous
