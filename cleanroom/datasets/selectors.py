"""Reads of datasets, consents and the pool's membership (never decrypts anything)."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from cleanroom.accounts.models import Contributor
from cleanroom.datasets.models import Consent, Contribution, Dataset
from cleanroom.errors import NotFound


def dataset_get(*, slug: str) -> Dataset:
    """The dataset with this slug, or NotFound (404)."""
    dataset = Dataset.objects.filter(slug=slug).first()
    if dataset is None:
        raise NotFound(f"No dataset named {slug!r}.")
    return dataset


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.order_by("slug")


def pool_members_queryset(*, dataset: Dataset) -> QuerySet[Consent]:
    """Open consents on the current terms, of contributors with a live key and data."""
    has_data = Contribution.objects.filter(dataset=dataset, contributor=OuterRef("contributor_id"))
    return Consent.objects.filter(
        dataset=dataset,
        withdrawn_at__isnull=True,
        terms_version=dataset.terms_version,
        contributor__data_key__destroyed_at__isnull=True,
    ).filter(Exists(has_data))


def pool_size(*, dataset: Dataset) -> int:
    """How many contributors are in the pool now (consented on current terms, with data)."""
    return pool_members_queryset(dataset=dataset).count()


def consent_open(*, contributor: Contributor, dataset: Dataset) -> Consent | None:
    """The contributor's open consent to this dataset (any terms version), if any."""
    return Consent.objects.filter(
        contributor=contributor, dataset=dataset, withdrawn_at__isnull=True
    ).first()


def consent_is_current(*, contributor: Contributor, dataset: Dataset) -> bool:
    return Consent.objects.filter(
        contributor=contributor,
        dataset=dataset,
        withdrawn_at__isnull=True,
        terms_version=dataset.terms_version,
    ).exists()
