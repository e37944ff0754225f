"""Demo queries for `manage.py seed_demo`: one released-to-be and one waiting for review.

Runs after the datasets demo; it needs the demo business ("acme") and a dataset whose
pool is large enough. The auto-approved query runs when a worker is up.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from cleanroom.accounts.models import User
from cleanroom.datasets.models import Dataset
from cleanroom.datasets.selectors import pool_size
from cleanroom.errors import DomainError
from cleanroom.queries.models import Query
from cleanroom.queries.services import policy_of, query_submit


def _example_sql(dataset: Dataset) -> str:
    columns = dataset.schema.get("columns", [])
    key = next((c["name"] for c in columns if c.get("categories")), None)
    numeric = next(
        (c["name"] for c in columns if c["type"] in ("integer", "float") and "lower" in c), None
    )
    table = dataset.slug if dataset.slug.isidentifier() else f'"{dataset.slug}"'
    aggregates = "COUNT(*) AS n" + (f", AVG({numeric}) AS mean_{numeric}" if numeric else "")
    if key:
        # Clean-room SQL for the allow-list compiler, never sent to the database.
        return f"SELECT {key}, {aggregates} FROM {table} GROUP BY {key}"  # noqa: S608
    return f"SELECT {aggregates} FROM {table}"  # noqa: S608


def seed(*, stdout: Any = None) -> list[str]:
    business = User.objects.filter(username="acme", role="business").first()
    if business is None or business.organization is None:
        return ["Queries: no demo business, skipped."]
    organization = business.organization
    lines = []
    for dataset in Dataset.objects.order_by("slug"):
        if Query.objects.filter(dataset=dataset, organization=business.organization).exists():
            continue
        policy = policy_of(dataset)
        if pool_size(dataset=dataset) < policy.min_contributors:
            continue
        from payouts.services import query_price, topup_record

        price = query_price(price=dataset.price or {}, epsilon="0.5")
        currency = str((dataset.price or {}).get("currency", "EUR"))
        try:
            with transaction.atomic():
                topup_record(
                    organization=organization,
                    amount=max(price * 4, 1),
                    actor=None,
                    currency=currency,
                    reference=f"queries-demo-{dataset.slug}",
                )
                query = query_submit(
                    dataset=dataset.slug,
                    sql=_example_sql(dataset),
                    epsilon="0.5",
                    requester=business,
                )
        except DomainError as error:
            lines.append(f"Queries: demo query on {dataset.slug} refused: {error.detail}")
            continue
        lines.append(
            f"Query {query.pk} on {dataset.slug}: {query.status} (portal /queries/{query.pk}/)"
        )
    return lines or ["Queries: nothing to seed (no new dataset with a large enough pool)."]
