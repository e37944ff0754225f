"""Reads of money: balances, charges, a contributor's earnings (settled or not), payouts,
settlements and their proofs. Nothing here writes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from django.db.models import Count, Q, QuerySet, Sum

from cleanroom.accounts.models import Contributor, Organization
from payouts.fields import mask_iban
from payouts.membership import ranges_contains, ranges_decode
from payouts.models import (
    Account,
    Distribution,
    JournalEntry,
    Payout,
    PayoutDestination,
    Posting,
    Settlement,
)
from payouts.money import micro_format
from payouts.services import default_currency
from payouts.settlement import settlement_proof


@lru_cache(maxsize=256)
def _ranges(membership_pk: int, blob: bytes) -> np.ndarray:
    return ranges_decode(blob)


def _containing(distributions: QuerySet[Distribution], pk: int) -> QuerySet[Distribution]:
    """Narrow by the pool's first/last pk in SQL; exact membership is checked on the ranges."""
    return distributions.filter(membership__first_pk__lte=pk, membership__last_pk__gte=pk)


def _member(distribution: Distribution, pk: int) -> bool:
    membership = distribution.membership
    return ranges_contains(_ranges(membership.pk, bytes(membership.ranges)), pk)


def contributor_balance(*, contributor_pk: int, currency: str) -> int:
    """Earned and not yet paid out (micro-units): settled lines + shares not yet settled."""
    settled = (
        Posting.objects.filter(
            account__kind=Account.Kind.CONTRIBUTOR_PAYABLE,
            currency=currency,
            contributor_pk=contributor_pk,
        ).aggregate(total=Sum("amount"))["total"]
        or 0
    )
    open_settlements = set(
        Settlement.objects.filter(currency=currency, status=Settlement.Status.OPEN).values_list(
            "pk", flat=True
        )
    )
    # Open settlements whose line for this contributor is already written count as settled.
    written = set(
        Posting.objects.filter(
            entry__settlement_id__in=open_settlements, contributor_pk=contributor_pk
        ).values_list("entry__settlement_id", flat=True)
    )
    pending = _containing(
        Distribution.objects.filter(currency=currency)
        .filter(Q(settlement__isnull=True) | Q(settlement_id__in=open_settlements - written))
        .exclude(share=0),
        contributor_pk,
    ).values_list("share", "membership_id", "membership__ranges")  # tuples: one per query
    unsettled = sum(
        share
        for share, membership_pk, blob in pending
        if ranges_contains(_ranges(membership_pk, bytes(blob)), contributor_pk)
    )
    return int(settled) + unsettled


def contributor_earnings(*, contributor: Contributor) -> dict[str, Any]:
    """{balance, currency, earned, paid_out, in_transit} for the contributor's dashboard."""
    currency = default_currency()
    balance = contributor_balance(contributor_pk=contributor.pk, currency=currency)
    payouts = Payout.objects.filter(contributor=contributor, currency=currency)
    paid = payouts.filter(status=Payout.Status.PAID).aggregate(total=Sum("amount"))["total"] or 0
    in_transit = (
        payouts.filter(status__in=[Payout.Status.PENDING, Payout.Status.SENT]).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
    return {
        "balance": micro_format(balance),
        "currency": currency,
        "paid_out": micro_format(paid),
        "in_transit": micro_format(in_transit),
        "earned": micro_format(balance + paid + in_transit),
    }


def contributor_shares(*, contributor: Contributor, limit: int = 200) -> list[dict[str, Any]]:
    """The contributor's share of each query that ran over a pool they were in, newest first."""
    pk = contributor.pk
    candidates = _containing(
        Distribution.objects.select_related("membership", "dataset", "organization").order_by(
            "-pk"
        ),
        pk,
    )
    shares: list[dict[str, Any]] = []
    for distribution in candidates.iterator(chunk_size=200):
        if not _member(distribution, pk):
            continue
        shares.append(
            {
                "query": distribution.query_id,
                "dataset": distribution.dataset.slug,
                "purpose": distribution.dataset.purpose,
                "organization": distribution.organization.name,
                "epsilon": str(distribution.epsilon.normalize()),
                "amount": micro_format(distribution.share),
                "currency": distribution.currency,
                "at": distribution.created_at.isoformat(),
                "settlement": distribution.settlement_id,
            }
        )
        if len(shares) >= limit:
            break
    return shares


def payout_row(payout: Payout) -> dict[str, Any]:
    return {
        "id": payout.pk,
        "settlement": payout.settlement_id,
        "contributor": payout.contributor_id,
        "amount": micro_format(payout.amount),
        "currency": payout.currency,
        "status": payout.status,
        "provider": payout.provider,
        "reference": payout.provider_reference,
        "attempts": payout.attempts,
        "error": payout.last_error,
        "created_at": payout.created_at.isoformat(),
        "updated_at": payout.updated_at.isoformat(),
    }


def contributor_proofs(*, contributor: Contributor, limit: int = 10) -> list[dict[str, Any]]:
    settlement_ids = list(
        Posting.objects.filter(
            contributor_pk=contributor.pk,
            entry__kind=JournalEntry.Kind.SETTLEMENT,
            entry__settlement__status=Settlement.Status.COMPLETED,
        )
        .order_by("-entry__settlement_id")
        .values_list("entry__settlement_id", flat=True)[:limit]
    )
    proofs = []
    for settlement in Settlement.objects.filter(pk__in=settlement_ids).order_by("-pk"):
        proof = settlement_proof(settlement=settlement, contributor_pk=contributor.pk)
        if proof is not None:
            proofs.append(proof)
    return proofs


def destination_view(*, contributor: Contributor) -> dict[str, Any] | None:
    destination = PayoutDestination.objects.filter(contributor=contributor).first()
    if destination is None:
        return None
    return {
        "provider": destination.provider,
        "holder_name": destination.holder_name,
        # The full number is never shown back: enough to recognise it.
        "iban": mask_iban(destination.iban),
        "updated_at": destination.updated_at.isoformat(),
    }


def contributor_earnings_detail(*, contributor: Contributor) -> dict[str, Any]:
    out = contributor_earnings(contributor=contributor)
    out["shares"] = contributor_shares(contributor=contributor)
    out["payouts"] = [
        payout_row(p) for p in Payout.objects.filter(contributor=contributor).order_by("-pk")[:100]
    ]
    out["settlements"] = contributor_proofs(contributor=contributor)
    out["payout_destination"] = destination_view(contributor=contributor)
    return out


def billing_summary(*, organization: Organization, limit: int = 200) -> dict[str, Any]:
    """{balance, currency, balances, charges: [{query, amount, at, ...}], top_ups}."""
    currency = default_currency()
    accounts = Account.objects.filter(kind=Account.Kind.BUSINESS, organization=organization)
    balances = {a.currency: a.balance for a in accounts}
    charges = [
        {
            "query": d.query_id,
            "amount": micro_format(d.gross),
            "currency": d.currency,
            "dataset": d.dataset.slug,
            "epsilon": str(d.epsilon.normalize()),
            "at": d.created_at.isoformat(),
        }
        for d in Distribution.objects.filter(organization=organization)
        .select_related("dataset")
        .order_by("-pk")[:limit]
    ]
    top_ups = [
        {
            "id": p.entry_id,
            "amount": micro_format(p.amount),
            "currency": p.currency,
            "at": p.entry.created_at.isoformat(),
        }
        for p in Posting.objects.filter(account__in=accounts, entry__kind=JournalEntry.Kind.TOP_UP)
        .select_related("entry")
        .order_by("-pk")[:limit]
    ]
    return {
        "balance": micro_format(balances.get(currency, 0)),
        "currency": currency,
        "balances": [
            {"currency": c, "balance": micro_format(b)} for c, b in sorted(balances.items())
        ],
        "charges": charges,
        "top_ups": top_ups,
    }


def distribution_row(d: Distribution) -> dict[str, Any]:
    return {
        "id": d.pk,
        "query": d.query_id,
        "dataset": d.dataset.slug,
        "organization": d.organization.name,
        "currency": d.currency,
        "epsilon": str(d.epsilon.normalize()),
        "gross": micro_format(d.gross),
        "fee": micro_format(d.fee),
        "pool_size": d.pool_size,
        "share": micro_format(d.share),
        "remainder": micro_format(d.remainder),
        "membership_hash": d.membership_hash,
        "membership_ranges": d.membership.range_count,
        "settlement": d.settlement_id,
        "at": d.created_at.isoformat(),
    }


def distributions_list(*, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    queryset = Distribution.objects.select_related("dataset", "organization", "membership")
    return [distribution_row(d) for d in queryset.order_by("-pk")[offset : offset + limit]]


def settlement_row(s: Settlement) -> dict[str, Any]:
    return {
        "id": s.pk,
        "currency": s.currency,
        "status": s.status,
        "distributions": s.distribution_count,
        "contributors": s.contributor_count,
        "total": micro_format(s.total_amount),
        "batches": s.batch_count,
        "merkle_root": s.merkle_root,
        "created_at": s.created_at.isoformat(),
        "completed_at": s.completed_at.isoformat() if s.completed_at else None,
    }


def settlement_outcome(*, settlement: Settlement) -> dict[str, Any]:
    """Who of a settlement's contributors was paid, who could not be (no payout
    destination: their money stays owed to them) and who waits (below the threshold)."""
    from payouts.disbursement import payout_threshold

    lines = Posting.objects.filter(
        entry__settlement=settlement,
        entry__kind=JournalEntry.Kind.SETTLEMENT,
        contributor_pk__isnull=False,
        amount__gt=0,
    )
    with_destination = PayoutDestination.objects.values("contributor_id")
    unpaid = lines.exclude(contributor_pk__in=with_destination).aggregate(
        n=Count("pk"), total=Sum("amount")
    )
    payouts = Payout.objects.filter(settlement=settlement)
    paid = payouts.exclude(status=Payout.Status.FAILED).count()
    reachable = lines.filter(contributor_pk__in=with_destination).count()
    return {
        "paid": paid,
        "failed": payouts.filter(status=Payout.Status.FAILED).count(),
        "no_destination": unpaid["n"] or 0,
        "no_destination_amount": micro_format(unpaid["total"] or 0),
        "waiting": max(reachable - payouts.count(), 0),
        "threshold": micro_format(payout_threshold()),
    }


def settlements_list(*, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    return [
        settlement_row(s) | settlement_outcome(settlement=s)
        for s in Settlement.objects.order_by("-pk")[offset : offset + limit]
    ]


def payouts_list(
    *, status: str = "", settlement: int | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    queryset = Payout.objects.order_by("-pk")
    if status:
        queryset = queryset.filter(status=status)
    if settlement:
        queryset = queryset.filter(settlement_id=settlement)
    return [payout_row(p) for p in queryset[offset : offset + limit]]


def payout_schedule() -> dict[str, Any]:
    """When and how contributors are paid: the settlement interval and the threshold."""
    from django.conf import settings

    from payouts.disbursement import payout_threshold

    entry = getattr(settings, "CELERY_BEAT_SCHEDULE", {}).get("payouts-settlement", {})
    seconds = float(entry.get("schedule", 3600))
    return {
        "every_minutes": max(1, round(seconds / 60)),
        "threshold": micro_format(payout_threshold()),
    }
