"""Settlement: turn the distributions recorded since the last settlement into what each
contributor is owed, in the ledger, and publish a Merkle root over it.

Invariants:
- a distribution is claimed by exactly one settlement (a conditional UPDATE of rows whose
  settlement is NULL; the database lets it be set once);
- a contributor's earnings in a settlement = sum of the shares of the claimed distributions
  whose pool held them, computed with a difference array over contributor pk boundaries
  (O(ranges + contributors), never shares x contributors);
- the ledger gets one line per contributor who is due, keyed (settlement, contributor),
  written in batches each balanced against the pool clearing account and unique on
  ``settlement:<id>:batch:<k>``: a re-run after a crash writes only the missing batches
  (the computation is deterministic for the claimed distributions);
- sum of the lines = sum of share * pool size of the claimed distributions, to the unit;
- the Merkle root commits to every (contributor, amount) line; each contributor can get
  an inclusion proof without seeing anyone else's line.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from audit.services import audit_record
from payouts.crash import crash_point
from payouts.ledger import account_get, entry_post_subledger
from payouts.membership import members_from_ranges, ranges_decode
from payouts.merkle import CHUNK, chunked_roots, leaf_hash, tree_proof, tree_root
from payouts.models import Account, Distribution, JournalEntry, PoolMembership, Posting, Settlement
from payouts.money import micro_format


class _NothingToSettle(Exception):
    pass


def earnings_compute(groups: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(pks, amounts) of everyone with non-zero earnings from (ranges, amount per member) groups.

    >>> r1 = np.array([[1, 4]]); r2 = np.array([[3, 6], [8, 9]])
    >>> pks, amounts = earnings_compute([(r1, 10), (r2, 5)])
    >>> pks.tolist(), amounts.tolist()
    ([1, 2, 3, 4, 5, 8], [10, 10, 15, 5, 5, 5])
    """
    groups = [(r, w) for r, w in groups if len(r) and w]
    if not groups:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    starts = np.concatenate([r[:, 0] for r, _ in groups])
    ends = np.concatenate([r[:, 1] for r, _ in groups])
    weights = np.concatenate([np.full(len(r), w, dtype=np.int64) for r, w in groups])
    boundaries = np.unique(np.concatenate((starts, ends)))
    diff = np.zeros(boundaries.size, dtype=np.int64)
    np.add.at(diff, np.searchsorted(boundaries, starts), weights)
    np.add.at(diff, np.searchsorted(boundaries, ends), -weights)
    values = np.cumsum(diff)[:-1]
    keep = values != 0
    segments = np.stack((boundaries[:-1][keep], boundaries[1:][keep]), axis=1)
    pks = members_from_ranges(segments)
    amounts = np.repeat(values[keep], segments[:, 1] - segments[:, 0])
    return pks, amounts


def settlement_open(*, currency: str, actor: Any = None) -> Settlement | None:
    """Claim every unsettled distribution in `currency` for a new settlement (None: nothing)."""
    try:
        with transaction.atomic():
            settlement = Settlement.objects.create(currency=currency, requested_by=actor)
            claimed = Distribution.objects.filter(
                currency=currency, settlement__isnull=True
            ).update(settlement=settlement)
            if not claimed:
                raise _NothingToSettle
            Settlement.objects.filter(pk=settlement.pk).update(distribution_count=claimed)
    except _NothingToSettle:
        return None
    settlement.refresh_from_db()
    return settlement


def settlement_earnings(*, settlement: Settlement) -> tuple[np.ndarray, np.ndarray, int]:
    """Every contributor's earnings in this settlement, and the total the lines must sum to."""
    grouped = (
        Distribution.objects.filter(settlement=settlement)
        .values("membership_id")
        .annotate(per_member=Sum("share"))
        .order_by("membership_id")
    )
    per_member = {row["membership_id"]: int(row["per_member"]) for row in grouped}
    memberships = PoolMembership.objects.filter(pk__in=per_member).values_list("pk", "ranges")
    groups = [(ranges_decode(bytes(blob)), per_member[pk]) for pk, blob in memberships]
    pks, amounts = earnings_compute(groups)
    expected = Distribution.objects.filter(settlement=settlement).aggregate(
        total=Sum(F("share") * F("pool_size"))
    )["total"]
    return pks, amounts, int(expected or 0)


def settlement_process(*, settlement_id: int) -> Settlement:
    """Write the settlement's missing ledger batches, then its Merkle root (idempotent)."""
    settlement = Settlement.objects.get(pk=settlement_id)
    if settlement.status == Settlement.Status.COMPLETED:
        return settlement
    pks, amounts, expected = settlement_earnings(settlement=settlement)
    if int(amounts.sum()) != expected:
        raise AssertionError(
            f"settlement {settlement.pk}: lines sum to {amounts.sum()}, distributions to {expected}"
        )
    clearing = account_get(kind=Account.Kind.POOL_CLEARING, currency=settlement.currency)
    payable = account_get(kind=Account.Kind.CONTRIBUTOR_PAYABLE, currency=settlement.currency)
    size = settlement.batch_size
    done = set(
        JournalEntry.objects.filter(
            settlement=settlement, kind=JournalEntry.Kind.SETTLEMENT
        ).values_list("key", flat=True)
    )
    batch_count = 0
    for batch, start in enumerate(range(0, pks.size, size)):
        batch_count += 1
        key = f"settlement:{settlement.pk}:batch:{batch}"
        if key in done:
            continue
        with transaction.atomic():
            entry_post_subledger(
                key=key,
                kind=JournalEntry.Kind.SETTLEMENT,
                counter=clearing,
                subledger=payable,
                contributor_pks=pks[start : start + size],
                amounts=amounts[start : start + size],
                memo=f"settlement {settlement.pk} batch {batch}",
                settlement_id=settlement.pk,
            )
            crash_point("settlement.batch.before_commit")
    currency = settlement.currency
    leaves = [
        leaf_hash(settlement=settlement.pk, contributor=pk, amount=amount, currency=currency)
        for pk, amount in zip(pks.tolist(), amounts.tolist(), strict=True)
    ]
    roots = chunked_roots(leaves, CHUNK)
    root = tree_root(roots)
    with transaction.atomic():
        completed = Settlement.objects.filter(
            pk=settlement.pk, status=Settlement.Status.OPEN
        ).update(
            status=Settlement.Status.COMPLETED,
            completed_at=timezone.now(),
            contributor_count=int(pks.size),
            total_amount=expected,
            batch_count=batch_count,
            merkle_root=root.hex(),
            chunk_roots=[r.hex() for r in roots],
            chunk_first_pks=[int(pk) for pk in pks[::CHUNK].tolist()],
        )
        if completed:
            audit_record(
                action="payouts.settlement.completed",
                actor=settlement.requested_by,
                subject=f"settlement:{settlement.pk}",
                payload={
                    "currency": currency,
                    "distributions": settlement.distribution_count,
                    "contributors": int(pks.size),
                    "total": micro_format(expected),
                    "merkle_root": root.hex(),
                },
            )
    settlement.refresh_from_db()
    return settlement


def settlement_line(*, settlement: Settlement, contributor_pk: int) -> int | None:
    """The contributor's amount in this settlement (None: not in it)."""
    row = Posting.objects.filter(
        entry__settlement=settlement,
        entry__kind=JournalEntry.Kind.SETTLEMENT,
        contributor_pk=contributor_pk,
    ).values_list("amount", flat=True)
    return int(row[0]) if row else None


def settlement_proof(*, settlement: Settlement, contributor_pk: int) -> dict[str, Any] | None:
    """Inclusion proof of the contributor's line in a completed settlement's Merkle root."""
    if settlement.status != Settlement.Status.COMPLETED or not settlement.chunk_first_pks:
        return None
    firsts = settlement.chunk_first_pks
    chunk = bisect.bisect_right(firsts, contributor_pk) - 1
    if chunk < 0:
        return None
    entries = list(
        JournalEntry.objects.filter(
            settlement=settlement, kind=JournalEntry.Kind.SETTLEMENT
        ).values_list("pk", flat=True)
    )
    lines = Posting.objects.filter(
        entry_id__in=entries, contributor_pk__gte=firsts[chunk], contributor_pk__isnull=False
    )
    if chunk + 1 < len(firsts):
        lines = lines.filter(contributor_pk__lt=firsts[chunk + 1])
    rows = list(lines.order_by("contributor_pk").values_list("contributor_pk", "amount"))
    index = next((i for i, (pk, _) in enumerate(rows) if pk == contributor_pk), None)
    if index is None:
        return None
    currency = settlement.currency
    leaves = [
        leaf_hash(
            settlement=settlement.pk, contributor=int(pk or 0), amount=amount, currency=currency
        )
        for pk, amount in rows
    ]
    chunk_roots = [bytes.fromhex(r) for r in settlement.chunk_roots]
    proof = tree_proof(leaves, index) + tree_proof(chunk_roots, chunk)
    amount = rows[index][1]
    return {
        "settlement": settlement.pk,
        "merkle_root": settlement.merkle_root,
        "amount": micro_format(amount),
        "currency": currency,
        "leaf": {
            "format": "sha256(0x00 || 'cleanroom-settlement-line:{settlement}:{contributor}:{amount_micro}:{currency}')",
            "settlement": settlement.pk,
            "contributor": contributor_pk,
            "amount_micro": amount,
            "currency": currency,
            "hash": leaves[index].hex(),
        },
        "proof": proof,
        "node_format": "sha256(0x01 || left || right)",
    }
