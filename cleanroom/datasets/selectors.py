"""Reads of datasets, consents and the pool's membership.

Nothing here decrypts pool data, except ``contributor_records``: a contributor's own
uploads, decrypted for their own export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet

from cleanroom.accounts.models import Contributor
from cleanroom.datasets import storage
from cleanroom.datasets.models import (
    Consent,
    Contribution,
    ContributorKey,
    Dataset,
    Erasure,
    PoolCount,
)
from cleanroom.errors import NotFound
from cleanroom.queries.dp import PRIVACY_UNIT
from cleanroom.queries.selectors import (
    dataset_visible_to,
    privacy_cap_effective,
    privacy_loss_for,
    privacy_loss_total,
    queries_touching,
)
from cleanroom.streaming import arrow_rows_json
from payouts.selectors import contributor_earnings, contributor_earnings_detail


def dataset_get(*, slug: str) -> Dataset:
    """The dataset with this slug, or NotFound (404)."""
    dataset = Dataset.objects.filter(slug=slug).first()
    if dataset is None:
        raise NotFound(f"No dataset named {slug!r}.")
    return dataset


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.order_by("slug")


# The policy's ``allowed_organizations`` hides a dataset from businesses of any other
# organization; the rule lives in one place, ``cleanroom.queries.selectors.dataset_visible_to``
# (queries answer 404 for the same datasets), and the catalog follows it.


def dataset_get_visible(*, slug: str, user: Any) -> Dataset:
    """The dataset if `user` may see it, else NotFound (404), as if it did not exist."""
    dataset = dataset_get(slug=slug)
    if not dataset_visible_to(dataset=dataset, user=user):
        raise NotFound(f"No dataset named {slug!r}.")
    return dataset


def dataset_list_visible(*, user: Any) -> list[Dataset]:
    """The catalog as `user` sees it (businesses: only datasets open to their organization)."""
    return [d for d in dataset_list() if dataset_visible_to(dataset=d, user=user)]


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
    """How many contributors are in the pool now (consented on current terms, with data).

    Exact and one row read on PostgreSQL: ``PoolCount`` is kept by the database's
    triggers on every membership change (migration 0008). Elsewhere (SQLite, local
    development) it is counted.
    """
    if connection.vendor != "postgresql":
        return pool_members_queryset(dataset=dataset).count()
    members = (
        PoolCount.objects.filter(dataset_id=dataset.pk).values_list("members", flat=True).first()
    )
    return int(members or 0)


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


def consent_status(*, contributor: Contributor, dataset: Dataset) -> str:
    """'current', 'outdated' (open consent to older terms), 'withdrawn' (consented once,
    withdrew, no open consent now) or 'none'."""
    consent = consent_open(contributor=contributor, dataset=dataset)
    if consent is not None:
        return "current" if consent.terms_version == dataset.terms_version else "outdated"
    withdrawn = Consent.objects.filter(
        contributor=contributor, dataset=dataset, withdrawn_at__isnull=False
    ).exists()
    return "withdrawn" if withdrawn else "none"


def consent_history(*, contributor: Contributor) -> list[dict[str, Any]]:
    return [
        {
            "dataset": consent.dataset.slug,
            "terms_version": consent.terms_version,
            "current_terms_version": consent.dataset.terms_version,
            "is_active": consent.withdrawn_at is None
            and consent.terms_version == consent.dataset.terms_version,
            "given_at": consent.given_at,
            "withdrawn_at": consent.withdrawn_at,
            "privacy_cap": privacy_cap_of(consent=consent, dataset=consent.dataset),
        }
        for consent in Consent.objects.filter(contributor=contributor)
        .select_related("dataset")
        .order_by("given_at", "pk")
    ]


def contribution_summary(*, contributor: Contributor) -> list[dict[str, Any]]:
    """Uploads without their contents: dataset, rows, time."""
    return [
        {"id": pk, "dataset": slug, "rows": rows, "uploaded_at": created_at}
        for pk, slug, rows, created_at in Contribution.objects.filter(contributor=contributor)
        .order_by("created_at", "pk")
        .values_list("pk", "dataset__slug", "rows", "created_at")
    ]


def erasure_list(*, contributor: Contributor) -> list[dict[str, Any]]:
    return [
        {
            "id": erasure.pk,
            "status": erasure.status,
            "requested_at": erasure.requested_at,
            "completed_at": erasure.completed_at,
        }
        for erasure in Erasure.objects.filter(contributor=contributor).order_by("pk")
    ]


def privacy_cap_of(*, consent: Consent, dataset: Dataset) -> dict[str, str] | None:
    """The cap that applies to this consent, with where it comes from, or None."""
    cap = privacy_cap_effective(cap=consent.privacy_cap, dataset=dataset)
    if cap is None:
        return None
    source = "contributor" if consent.privacy_cap is not None else "policy"
    return {"epsilon": format(cap.normalize(), "f"), "per": "year", "source": source}


def budget_of(dataset: Dataset) -> dict[str, str]:
    """Epsilon and delta totals of the relation the engine charges, named in ``privacy_unit``."""

    def text(value: Decimal) -> str:
        return format(value.normalize(), "f")

    return {
        "total_epsilon": text(dataset.total_epsilon),
        "spent_epsilon": text(dataset.spent_epsilon),
        "remaining_epsilon": text(dataset.total_epsilon - dataset.spent_epsilon),
        "total_delta": text(dataset.total_delta),
        "spent_delta": text(dataset.spent_delta),
        "remaining_delta": text(dataset.total_delta - dataset.spent_delta),
        "privacy_unit": PRIVACY_UNIT,
    }


def contributor_records(*, contributor: Contributor) -> list[dict[str, Any]]:
    """The contributor's own uploads decrypted, for their export (Article 15/20) only."""
    return [
        upload | {"records": [row for text in upload["records"] for row in json.loads(f"[{text}]")]}
        for upload in contributor_records_stream(contributor=contributor)
    ]


# Rows encoded at a time while an export streams.
EXPORT_BATCH_ROWS = 2048


def contributor_records_stream(*, contributor: Contributor) -> Iterator[dict[str, Any]]:
    """`contributor_records` lazily: one upload decrypted at a time, its `records` a
    generator of rows encoded as JSON in batches, so an export of millions of rows holds
    one upload at most."""
    record = ContributorKey.objects.filter(contributor=contributor).first()
    if record is None or record.wrapped is None:
        return
    key = storage.data_key_unwrap(record)
    # Ids first, then one ciphertext at a time: never every upload's bytes together.
    uploads = list(
        Contribution.objects.filter(contributor=contributor)
        .order_by("created_at", "pk")
        .values_list("pk", "dataset__slug", "created_at")
    )
    for pk, slug, created_at in uploads:
        contribution = Contribution.objects.filter(pk=pk).first()
        if contribution is None:  # removed (retention, erasure) while the export streamed
            continue
        table = storage.contribution_decrypt(key=key, contribution=contribution)
        del contribution
        yield {
            "id": pk,
            "dataset": slug,
            "uploaded_at": created_at,
            "records": arrow_rows_json(table, batch_rows=EXPORT_BATCH_ROWS),
        }


# ---------------------------------------------------------------- the contributor's view
# Privacy loss and queries come from the queries app, earnings from payouts (see
# docs/CONVENTIONS.md "Cross-app interfaces").


def contributor_overview(*, contributor: Contributor) -> dict[str, Any]:
    """`GET /api/v1/me/`: who they are, consents, privacy loss, earnings, queries, uploads."""
    earnings = contributor_earnings(contributor=contributor)
    losses = privacy_loss_for(contributor=contributor)
    return {
        "did": contributor.did,
        "consents": consent_history(contributor=contributor),
        "contributions": contribution_summary(contributor=contributor),
        "privacy_loss": losses,
        "privacy_loss_total": privacy_loss_total(losses),
        "earnings": {"balance": earnings["balance"], "currency": earnings["currency"]},
        "queries": queries_touching(contributor=contributor),
        "erasures": erasure_list(contributor=contributor),
    }


def contributor_export(*, contributor: Contributor) -> dict[str, Any]:
    """`GET /api/v1/me/export/`: everything about them, their records decrypted for them.

    `contributions` is a generator (see `contributor_records_stream`): encode it with
    `cleanroom.streaming.json_chunks`, which never holds the whole export.
    """
    return {
        "did": contributor.did,
        "joined_at": contributor.created_at,
        "consents": consent_history(contributor=contributor),
        "contributions": contributor_records_stream(contributor=contributor),
        "privacy_loss": privacy_loss_for(contributor=contributor),
        "queries": queries_touching(contributor=contributor),
        "earnings": contributor_earnings_detail(contributor=contributor),
        "erasures": erasure_list(contributor=contributor),
    }
