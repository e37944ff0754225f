"""Reads of queries, the budget ledger and pool membership.

Visibility: a business sees its own organization's queries (others answer 404);
compliance sees all; contributors see only which queries touched them, never results.

Privacy loss of a contributor = the sum of the epsilons of every query whose mechanism
ran (status released, or failed after the mechanism) over a pool that included them.
Membership per run is stored as compact pk ranges in ``QueryPool`` (see ``membership``).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum

from cleanroom.accounts.models import Contributor, User
from cleanroom.datasets.models import Dataset
from cleanroom.errors import NotFound, QueryRefused
from cleanroom.queries.membership import ranges_contain
from cleanroom.queries.models import BudgetCharge, ChargeState, Query, QueryPool, QueryStatus
from cleanroom.queries.policy import policy_names


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


def _runs_touching(contributor: Contributor) -> list[QueryPool]:
    pk = int(contributor.pk)
    candidates = (
        QueryPool.objects.select_related("query", "query__dataset", "query__organization")
        .filter(query__mechanism_ran=True, min_member__lte=pk, max_member__gte=pk)
        .order_by("created_at", "pk")
    )
    return [pool for pool in candidates if ranges_contain(bytes(pool.ranges), pk)]


def privacy_loss_for(*, contributor: Contributor) -> list[dict[str, Any]]:
    """[{dataset: slug, epsilon: float}] summed over the runs whose pool included them."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for pool in _runs_touching(contributor):
        totals[pool.query.dataset.slug] += pool.query.epsilon
    return [{"dataset": slug, "epsilon": float(totals[slug])} for slug in sorted(totals)]


def queries_touching(*, contributor: Contributor) -> list[dict[str, Any]]:
    """[{id, dataset, epsilon, released_at, organization, status}] for every run over them."""
    out = []
    for pool in _runs_touching(contributor):
        query = pool.query
        out.append(
            {
                "id": query.pk,
                "dataset": query.dataset.slug,
                "epsilon": float(query.epsilon),
                "released_at": query.released_at,
                "organization": query.organization.name,
                "status": query.status,
            }
        )
    return out


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
