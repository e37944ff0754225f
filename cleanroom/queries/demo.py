"""Demo queries for `manage.py seed_demo`: released answers and one query waiting for review.

Runs after the datasets demo. The demo business ("acme") asks the README's questions of
both datasets; the auto-approved ones and the one the demo compliance officer approves
are run here, in-process, through the same service the worker runs (the task queued for
them finds them done), so the demo opens on released results. One commutes query waits
in the review queue; the second business ("globex") has a query of its own, which acme
never sees. Idempotent: a business's demo queries are made once.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from cleanroom.accounts.models import User
from cleanroom.datasets.models import Dataset
from cleanroom.datasets.selectors import pool_size
from cleanroom.errors import DomainError
from cleanroom.queries.models import Query
from cleanroom.queries.services import policy_of, query_approve, query_execute, query_submit

# The README's queries: (business, dataset, sql, epsilon or None for the default, approve?).
README_HOUSEHOLDS = (
    "SELECT region, COUNT(*) AS n, AVG(income) AS mean_income FROM households GROUP BY region"
)
README_COMMUTES = (
    "SELECT region, COUNT(*) AS n, AVG(minutes) AS mean_minutes FROM commutes GROUP BY region"
)
DEMO_QUERIES: list[tuple[str, str, str, str | None, bool]] = [
    ("acme", "households", README_HOUSEHOLDS, None, True),
    (
        "acme",
        "households",
        "SELECT owns_home, COUNT(*) AS n, AVG(household_size) AS mean_size, "
        "AVG(visits) AS mean_visits FROM households GROUP BY owns_home",
        "0.5",
        True,
    ),
    ("acme", "commutes", README_COMMUTES, None, True),
    ("acme", "commutes", "SELECT mode, COUNT(*) AS n FROM commutes GROUP BY mode", "0.5", False),
    ("globex", "households", "SELECT COUNT(*) AS n FROM households WHERE age >= 65", "0.5", True),
]


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


def _topup(business: User, dataset: Dataset, epsilon: str) -> None:
    from payouts.services import query_price, topup_record

    assert business.organization is not None
    topup_record(
        organization=business.organization,
        amount=max(query_price(price=dataset.price or {}, epsilon=epsilon), 1),
        actor=None,
        currency=str((dataset.price or {}).get("currency", "EUR")),
        reference=f"queries-demo-{business.username}-{Query.objects.count()}",
    )


def _submit(business: User, dataset: Dataset, sql: str, epsilon: str | None) -> Query:
    policy = policy_of(dataset)
    chosen = epsilon or str(min(policy.max_query_epsilon, 1))
    with transaction.atomic():
        _topup(business, dataset, chosen)
        return query_submit(dataset=dataset.slug, sql=sql, epsilon=chosen, requester=business)


def seed(*, stdout: Any = None) -> list[str]:
    acme = User.objects.filter(username="acme", role="business").first()
    if acme is None or acme.organization is None:
        return ["Queries: no demo business, skipped."]
    officer = User.objects.filter(role="compliance").order_by("pk").first()
    lines = []
    for username, slug, sql, epsilon, run in DEMO_QUERIES:
        business = User.objects.filter(username=username, role="business").first()
        dataset = Dataset.objects.filter(slug=slug).first()
        if business is None or business.organization is None or dataset is None:
            continue
        if Query.objects.filter(
            dataset=dataset, organization=business.organization, sql=sql
        ).exists():
            continue
        if pool_size(dataset=dataset) < policy_of(dataset).min_contributors:
            continue
        try:
            query = _submit(business, dataset, sql, epsilon)
            if run and query.status == "pending_approval" and officer is not None:
                query = query_approve(
                    query_id=query.pk, reviewer=officer, reason="Aggregate by region: fine."
                )
            if run and query.status == "queued":
                query_execute(query_id=query.pk)
                query.refresh_from_db()
        except DomainError as error:
            lines.append(f"Queries: demo query on {slug} refused: {error.detail}")
            continue
        lines.append(
            f"Query {query.pk} on {slug} by {username}: {query.status} "
            f"(portal /queries/{query.pk}/)"
        )
    return lines or ["Queries: nothing to seed (the demo queries exist already)."]
