"""Reads of queries, the budget ledger and pool membership.

Visibility: a business sees its own organization's queries (others answer 404);
compliance sees all; contributors see only which queries touched them, never results.

Privacy loss of a contributor = the sum of the epsilons (and deltas) of every query whose
mechanism ran (status released, or failed after the mechanism) over a pool that included
them, under the relation the engine charges (one contributor's data replaced, the pool
size public). Membership per run is stored as compact pk ranges in ``QueryPool`` (see
``membership``). The personal cap counts the runs of the past 365 days on one dataset.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from cleanroom.accounts.models import Contributor, User
from cleanroom.datasets.models import Consent, Dataset
from cleanroom.errors import NotFound, QueryRefused
from cleanroom.queries.dp import PRIVACY_UNIT
from cleanroom.queries.membership import ranges_contain, ranges_decode
from cleanroom.queries.models import BudgetCharge, ChargeState, Query, QueryPool, QueryStatus
from cleanroom.queries.policy import policy_decimal, policy_names

# What a business sees of a dataset's budget (compliance also sees who spent what).
PUBLIC_BUDGET_FIELDS = (
    "total_epsilon",
    "spent_epsilon",
    "remaining_epsilon",
    "total_delta",
    "spent_delta",
    "remaining_delta",
    "privacy_unit",
)
# The personal cap is "per year": the runs of the last 365 days count against it.
CAP_WINDOW = timedelta(days=365)


def dataset_visible_to(*, dataset: Dataset, user: Any) -> bool:
    """Whether `user` may see `dataset` at all (its budget, previews, submissions, catalog).

    The policy's ``allowed_organizations`` restricts which businesses see a dataset: a
    business of any other organization must get a 404 as if it did not exist. Compliance
    sees every dataset; contributors are not restricted by it (they consent to datasets).
    A malformed list fails closed for businesses.
    """
    role = getattr(user, "role", None)
    if role in ("compliance", "contributor"):
        return True
    if role != "business":
        return False
    try:
        allowed = policy_names(dataset.policy or {}, "allowed_organizations")
    except QueryRefused:
        return False
    if allowed is None:
        return True
    organization = getattr(getattr(user, "organization", None), "name", None)
    return organization is not None and organization in allowed


def query_visible_to(*, user: Any) -> QuerySet[Query]:
    """The queries this user may read: own organization's, or all for compliance."""
    queryset = Query.objects.select_related("dataset", "organization", "requester")
    role = getattr(user, "role", None)
    if role == "compliance":
        return queryset
    if role == "business" and user.organization_id is not None:
        return queryset.filter(organization_id=user.organization_id)
    return queryset.none()


def query_get(*, user: Any, pk: Any) -> Query:
    """One visible query, or NotFound (another organization's query does not exist for you)."""
    try:
        number = int(str(pk))
    except (TypeError, ValueError):
        raise NotFound("No such query.") from None
    query = query_visible_to(user=user).filter(pk=number).first()
    if query is None:
        raise NotFound("No such query.")
    return query


def query_list(*, user: Any, status: str | None = None) -> QuerySet[Query]:
    queryset = query_visible_to(user=user)
    if status:
        queryset = queryset.filter(status=status)
    return queryset.order_by("-created_at", "-pk")


def review_queue() -> QuerySet[Query]:
    """Queries waiting for a compliance officer, oldest first."""
    return (
        Query.objects.select_related("dataset", "organization", "requester")
        .filter(status=QueryStatus.PENDING_APPROVAL)
        .order_by("created_at", "pk")
    )


class _Run(NamedTuple):
    """A run whose pool held the contributor: what their privacy loss and history show."""

    created_at: datetime
    query_id: int
    epsilon: Decimal
    delta: float | None
    dataset: str
    released_at: datetime | None
    organization: str
    status: str


def _runs_touching(contributor: Contributor) -> list[_Run]:
    # Plain tuples, not models: a contributor in every run reads one row per run here, on
    # every visit to their page.
    pk = int(contributor.pk)
    candidates = (
        QueryPool.objects.filter(query__mechanism_ran=True, min_member__lte=pk, max_member__gte=pk)
        .order_by("created_at", "pk")
        .values_list(
            "ranges",
            "created_at",
            "query_id",
            "query__epsilon",
            "query__delta",
            "query__dataset__slug",
            "query__released_at",
            "query__organization__name",
            "query__status",
        )
    )
    return [_Run(*row[1:]) for row in candidates if ranges_contain(bytes(row[0]), pk)]


def privacy_cap_effective(*, cap: Decimal | None, dataset: Dataset) -> Decimal | None:
    """A consent's own cap, else the policy's ``default_privacy_cap``, else None (no cap)."""
    if cap is not None:
        return cap
    try:
        return policy_decimal(dataset.policy or {}, "default_privacy_cap", None, positive=True)
    except QueryRefused:
        return None


def privacy_loss_for(
    *, contributor: Contributor, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Per dataset they ran in or consent to: epsilon and delta over every run that included
    them, the epsilon of the past 365 days, and the cap that counts against (or None)."""
    since = (now or timezone.now()) - CAP_WINDOW
    epsilon: dict[str, Decimal] = defaultdict(Decimal)
    delta: dict[str, float] = defaultdict(float)
    recent: dict[str, Decimal] = defaultdict(Decimal)
    for run in _runs_touching(contributor):
        epsilon[run.dataset] += run.epsilon
        delta[run.dataset] += run.delta or 0.0
        if run.created_at >= since:
            recent[run.dataset] += run.epsilon
    caps: dict[str, Decimal | None] = {}
    for consent in Consent.objects.filter(
        contributor=contributor, withdrawn_at__isnull=True
    ).select_related("dataset"):
        slug = consent.dataset.slug
        caps[slug] = privacy_cap_effective(cap=consent.privacy_cap, dataset=consent.dataset)
        epsilon.setdefault(slug, Decimal(0))
    return [
        {
            "dataset": slug,
            "epsilon": float(epsilon[slug]),
            "delta": delta[slug],
            "epsilon_past_year": float(recent[slug]),
            "cap": float(cap) if (cap := caps.get(slug)) is not None else None,
        }
        for slug in sorted(epsilon)
    ]


def privacy_loss_total(losses: list[dict[str, Any]]) -> dict[str, float]:
    """Across datasets the losses add up (basic composition)."""
    return {
        "epsilon": float(sum(Decimal(repr(row["epsilon"])) for row in losses)),
        "delta": sum(row["delta"] for row in losses),
    }


def members_over_cap(
    *, dataset: Dataset, members: np.ndarray, epsilon: Decimal, now: datetime | None = None
) -> np.ndarray:
    """The members (sorted pks) whom a run charged ``epsilon`` would take past their cap.

    Data-independent: caps come from consents and the policy, losses from the public
    ledger of past runs (``QueryPool``), never from contributed rows.
    """
    empty = np.empty(0, dtype=np.int64)
    default = privacy_cap_effective(cap=None, dataset=dataset)
    consents = Consent.objects.filter(
        dataset=dataset, withdrawn_at__isnull=True, terms_version=dataset.terms_version
    )
    if default is None:
        consents = consents.filter(privacy_cap__isnull=False)
    caps_by_pk = dict(consents.values_list("contributor_id", "privacy_cap"))
    if not caps_by_pk or members.size == 0:
        return empty
    members = np.asarray(members, dtype=np.int64)
    fallback = float(default) if default is not None else np.inf
    caps = np.array(
        [
            float(cap) if (cap := caps_by_pk.get(pk)) is not None else fallback
            for pk in members.tolist()
        ],
        dtype=np.float64,
    )
    loss = np.zeros(members.size, dtype=np.float64)
    since = (now or timezone.now()) - CAP_WINDOW
    runs = QueryPool.objects.filter(
        dataset=dataset, query__mechanism_ran=True, created_at__gte=since
    ).values_list("ranges", "query__epsilon")
    for blob, run_epsilon in runs:
        ranges = ranges_decode(bytes(blob))
        if ranges.size == 0:
            continue
        index = np.searchsorted(ranges[:, 0], members, side="right") - 1
        inside = (index >= 0) & (members < ranges[np.maximum(index, 0), 1])
        loss[inside] += float(run_epsilon)
    # A hair of slack for float sums: a run that exactly reaches the cap is allowed.
    over = loss + float(epsilon) > caps * (1 + 1e-12)
    return members[over]


def queries_touching(*, contributor: Contributor) -> list[dict[str, Any]]:
    """[{id, dataset, epsilon, released_at, organization, status}] for every run over them."""
    return [
        {
            "id": run.query_id,
            "dataset": run.dataset,
            "epsilon": float(run.epsilon),
            "released_at": run.released_at,
            "organization": run.organization,
            "status": run.status,
        }
        for run in _runs_touching(contributor)
    ]


def budget_summary(*, dataset: Dataset) -> dict[str, Any]:
    """Total, spent (charged plus reserved), remaining, per organization, and over time."""
    charges = BudgetCharge.objects.filter(dataset=dataset).exclude(state=ChargeState.REFUNDED)
    charged = charges.filter(state=ChargeState.CHARGED).aggregate(total=Sum("epsilon"))["total"]
    reserved = charges.filter(state=ChargeState.RESERVED).aggregate(total=Sum("epsilon"))["total"]
    by_organization = [
        {"organization": row["organization__name"], "epsilon": float(row["total"])}
        for row in charges.values("organization__name")
        .annotate(total=Sum("epsilon"))
        .order_by("organization__name")
    ]
    history = []
    cumulative = Decimal(0)
    for at, epsilon in charges.order_by("created_at", "pk").values_list("created_at", "epsilon"):
        cumulative += epsilon
        history.append({"at": at, "epsilon": float(epsilon), "cumulative": float(cumulative)})
    total = dataset.total_epsilon
    spent = dataset.spent_epsilon
    return {
        "total_epsilon": float(total),
        "spent_epsilon": float(spent),
        "remaining_epsilon": float(total - spent),
        "total_delta": float(dataset.total_delta),
        "spent_delta": float(dataset.spent_delta),
        "remaining_delta": float(dataset.total_delta - dataset.spent_delta),
        "privacy_unit": PRIVACY_UNIT,
        "charged_epsilon": float(charged or 0),
        "reserved_epsilon": float(reserved or 0),
        "by_organization": by_organization,
        "history": history,
    }


def organization_spent(*, dataset: Dataset, organization_id: int) -> Decimal:
    """Budget an organization holds on a dataset (charged or reserved)."""
    total = (
        BudgetCharge.objects.filter(dataset=dataset, organization_id=organization_id)
        .filter(Q(state=ChargeState.CHARGED) | Q(state=ChargeState.RESERVED))
        .aggregate(total=Sum("epsilon"))["total"]
    )
    return total or Decimal(0)


def query_pool_members_count(*, query: Query) -> int:
    pool = QueryPool.objects.filter(query=query).first()
    return pool.size if pool else 0


def user_label(user: User | None) -> str:
    return user.username if user else "policy"


def _table_name(dataset: Dataset) -> str:
    return dataset.slug if dataset.slug.isidentifier() else f'"{dataset.slug}"'


def query_examples(*, dataset: Dataset) -> list[dict[str, str]]:
    """Example queries built from the dataset's own schema, only those its policy accepts.

    Clean-room SQL for the allow-list compiler (never sent to a database): a grouped count
    and mean over a public key, a filtered count and sum, a median.
    """
    from cleanroom.queries.sql import compile_sql

    columns = dataset.schema.get("columns", [])
    keys = [c["name"] for c in columns if c.get("categories") or c["type"] == "boolean"]
    numbers = [c for c in columns if c["type"] in ("integer", "float") and "lower" in c]
    table = _table_name(dataset)
    candidates: list[tuple[str, str]] = []
    # The measure: a float column if there is one (an amount), else the last number.
    measure = next((c for c in numbers if c["type"] == "float"), numbers[-1] if numbers else None)
    if keys and measure:
        key, number = keys[0], measure["name"]
        candidates.append(
            (
                f"Count and mean of {number} per {key}",
                f"SELECT {key}, COUNT(*) AS n, AVG({number}) AS mean_{number}\n"
                f"FROM {table}\nGROUP BY {key}",
            )
        )
    if keys:
        candidates.append(
            (
                f"Count per {keys[-1]}",
                f"SELECT {keys[-1]}, COUNT(*) AS n\nFROM {table}\nGROUP BY {keys[-1]}",
            )
        )
    if numbers:
        first, last = numbers[0], measure or numbers[-1]
        middle = (float(first["lower"]) + float(first["upper"])) / 2
        threshold = int(middle) if first["type"] == "integer" else round(middle, 2)
        candidates.append(
            (
                f"Count and total {last['name']} where {first['name']} >= {threshold}",
                f"SELECT COUNT(*) AS n, SUM({last['name']}) AS total_{last['name']}\n"
                f"FROM {table}\nWHERE {first['name']} >= {threshold}",
            )
        )
        candidates.append(
            (
                f"Median {last['name']}",
                f"SELECT MEDIAN({last['name']}) AS median_{last['name']}\nFROM {table}",
            )
        )
    if not candidates:
        candidates.append(("Count", f"SELECT COUNT(*) AS n\nFROM {table}"))
    examples = []
    for label, sql in candidates:
        try:
            compile_sql(sql, table=dataset.slug, schema=dataset.schema, policy=dataset.policy)
        except QueryRefused:
            continue
        examples.append({"label": label, "sql": sql})
    return examples
