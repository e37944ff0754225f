"""Money at scale: `python -m bench payouts [--queries N] [--contributors N] [--snapshots N]`.

Runs in a throwaway database (created and dropped here) and prints:
1. recording the distribution of one query over 1,000,000 contributors (target < 50 ms),
   against the naive design that writes one row per share (COPY, at 100,000 contributors,
   extrapolated linearly);
2. settling 10,000 queries x 1,000,000 contributors (target < 60 s) with the ledger
   reconciled to the unit afterwards, against the naive design (one row per share, then
   GROUP BY) at 20 queries x 100,000 contributors, extrapolated per share.
"""

from __future__ import annotations

import argparse
import statistics
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np


def _pool(rng: np.random.Generator, size: int, withdrawn: float) -> np.ndarray:
    """`size` contributor pks from 1..~size/(1-withdrawn), a random `withdrawn` share missing."""
    universe = np.arange(1, int(size / (1 - withdrawn)) + 2, dtype=np.int64)
    keep = rng.random(universe.size) >= withdrawn
    return universe[keep][:size]


def _naive_record(n: int, repeats: int) -> float:
    """One row per share: COPY n (query, contributor, amount) rows; median seconds."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_naive_share "
            "(query_id bigint, contributor_pk bigint, amount bigint, PRIMARY KEY (query_id, contributor_pk))"
        )
    times = []
    pks = np.arange(1, n + 1, dtype=np.int64)
    for query_id in range(repeats):
        start = time.perf_counter()
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.cursor.copy(
                "COPY bench_naive_share (query_id, contributor_pk, amount) FROM STDIN"
            ) as copy,
        ):
            copy.write("".join(f"{query_id}\t{pk}\t4\n" for pk in pks.tolist()))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _naive_settle(queries: int, n: int) -> tuple[float, float]:
    """Naive settlement: write queries x n share rows, then GROUP BY contributor."""
    from django.db import connection, transaction
    from tqdm import tqdm

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE bench_naive_share")
    pks = np.arange(1, n + 1, dtype=np.int64).tolist()
    start = time.perf_counter()
    for query_id in tqdm(range(queries), desc="naive: one row per share", unit="query"):
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.cursor.copy(
                "COPY bench_naive_share (query_id, contributor_pk, amount) FROM STDIN"
            ) as copy,
        ):
            copy.write("".join(f"{query_id}\t{pk}\t4\n" for pk in pks))
    write = time.perf_counter() - start
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_naive_due AS SELECT contributor_pk, SUM(amount) AS amount "
            "FROM bench_naive_share GROUP BY contributor_pk"
        )
    return write, time.perf_counter() - start


def _setup_distributions(
    *, queries: int, contributors: int, snapshots: int, organization: Any, dataset: Any
) -> tuple[int, int]:
    """Bulk-create `queries` charged distributions over `snapshots` evolving pools."""
    from django.db import transaction
    from django.db.models import F
    from tqdm import tqdm

    from payouts.ledger import account_get
    from payouts.membership import ranges_from_members
    from payouts.models import Account, Distribution, JournalEntry, Posting
    from payouts.services import business_account, membership_store

    rng = np.random.default_rng(2024)
    memberships = []
    for _ in tqdm(range(snapshots), desc="pool snapshots", unit="pool"):
        pool = _pool(rng, contributors, withdrawn=float(rng.uniform(0.001, 0.01)))
        memberships.append(membership_store(ranges=ranges_from_members(pool)))
    accounts = {
        "business": business_account(organization=organization, currency="EUR"),
        "revenue": account_get(kind=Account.Kind.PLATFORM_REVENUE, currency="EUR"),
        "clearing": account_get(kind=Account.Kind.POOL_CLEARING, currency="EUR"),
        "rounding": account_get(kind=Account.Kind.ROUNDING, currency="EUR"),
    }
    totals = dict.fromkeys(accounts, 0)
    step = 1000
    for start in tqdm(range(0, queries, step), desc="charged queries", unit="k queries"):
        with transaction.atomic():
            entries = JournalEntry.objects.bulk_create(
                JournalEntry(key=f"query:{q}:charge", kind=JournalEntry.Kind.QUERY_CHARGE)
                for q in range(start + 1, min(queries, start + step) + 1)
            )
            postings = []
            distributions = []
            for entry in entries:
                query_id = int(entry.key.split(":")[1])
                membership = memberships[int(rng.integers(0, snapshots))]
                epsilon = Decimal(int(rng.integers(1, 100))) / 100
                gross = 1_000_000 + int(epsilon * 10_000_000)
                fee = gross // 5
                share, remainder = divmod(gross - fee, membership.size)
                parts = {
                    "business": -gross,
                    "revenue": fee,
                    "clearing": share * membership.size,
                    "rounding": remainder,
                }
                for name, amount in parts.items():
                    if amount:
                        totals[name] += amount
                        postings.append(
                            Posting(
                                entry=entry, account=accounts[name], currency="EUR", amount=amount
                            )
                        )
                distributions.append(
                    Distribution(
                        query_id=query_id,
                        dataset=dataset,
                        organization=organization,
                        currency="EUR",
                        epsilon=epsilon,
                        gross=gross,
                        fee=fee,
                        pool_size=membership.size,
                        share=share,
                        remainder=remainder,
                        membership=membership,
                        membership_hash=membership.hash,
                        entry=entry,
                    )
                )
            Posting.objects.bulk_create(postings)
            Distribution.objects.bulk_create(distributions)
    with transaction.atomic():
        for name, account in accounts.items():
            Account.objects.filter(pk=account.pk).update(balance=F("balance") + totals[name])
    return -totals["business"], totals["clearing"]


def _run(args: argparse.Namespace) -> None:
    from django.db import connection

    from cleanroom.accounts.services import account_create
    from cleanroom.datasets.models import Dataset
    from payouts.models import Posting
    from payouts.reconcile import ledger_reconcile
    from payouts.services import query_charge, topup_record
    from payouts.settlement import settlement_open, settlement_process

    user = account_create(
        role="business", username="bench", password="bench-pass-1", organization="Bench"
    )
    organization = user.organization
    assert organization is not None
    dataset = Dataset.objects.create(
        slug="bench",
        name="Bench",
        purpose="benchmark",
        schema={"columns": []},
        policy={},
        price={
            "currency": "EUR",
            "per_query": "1.00",
            "per_epsilon": "10.00",
            "platform_fee": "0.20",
        },
        total_epsilon=Decimal("1000000"),
    )
    topup_record(organization=organization, amount=10**15, actor=None)
    rng = np.random.default_rng(1)

    print(f"\n== 1. recording one query's distribution over {args.contributors:,} contributors")
    pools = [_pool(rng, args.contributors, withdrawn=0.01) for _ in range(3)]
    times = []
    for i in range(args.repeats):
        query = SimpleNamespace(
            pk=10_000_000 + i,
            dataset=dataset,
            organization=organization,
            epsilon=Decimal("0.5"),
            price=6_000_000,
            requester=None,
        )
        members = pools[i % len(pools)] if i < len(pools) else np.delete(pools[0], i)
        start = time.perf_counter()
        query_charge(query=query, members=members)
        times.append(time.perf_counter() - start)
    ranges = int(np.count_nonzero(np.diff(pools[0]) != 1)) + 1
    ours = statistics.median(times)
    print(
        f"ours (one distribution row, {ranges:,} pk ranges): median {ours * 1000:.1f} ms, "
        f"p95 {sorted(times)[int(len(times) * 0.95) - 1] * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
        f"over {args.repeats} queries  (target < 50 ms: {'PASS' if ours < 0.05 else 'FAIL'})"
    )
    naive_n = args.contributors // 10
    if connection.vendor == "postgresql":
        naive = _naive_record(naive_n, repeats=3)
        naive_full = naive * args.contributors / naive_n
        print(
            f"naive (one row per share, COPY): {naive * 1000:.0f} ms at {naive_n:,} contributors "
            f"-> {naive_full * 1000:.0f} ms extrapolated to {args.contributors:,}; "
            f"ours is {naive_full / ours:.0f}x faster"
        )
    print(f"rows written per query: ours 1 distribution + 4 postings; naive {args.contributors:,}")

    print(f"\n== 2. settling {args.queries:,} queries x {args.contributors:,} contributors")
    _setup_distributions(
        queries=args.queries,
        contributors=args.contributors,
        snapshots=args.snapshots,
        organization=organization,
        dataset=dataset,
    )
    start = time.perf_counter()
    settlement = settlement_open(currency="EUR")
    assert settlement is not None
    opened = time.perf_counter() - start
    settlement = settlement_process(settlement_id=settlement.pk)
    settle = time.perf_counter() - start
    lines = Posting.objects.filter(
        entry__settlement=settlement, contributor_pk__isnull=False
    ).count()
    print(
        f"ours: {settle:.1f} s ({opened:.2f} s to claim {settlement.distribution_count:,} distributions), "
        f"{lines:,} ledger lines in {settlement.batch_count} batches, "
        f"total {settlement.total_amount:,} micro-units, Merkle root {settlement.merkle_root[:16]}... "
        f"(target < 60 s: {'PASS' if settle < 60 else 'FAIL'})"
    )
    start = time.perf_counter()
    report = ledger_reconcile()
    from django.db.models import F, Sum

    from payouts.models import Distribution

    totals = Distribution.objects.aggregate(
        gross=Sum("gross"), pool=Sum(F("share") * F("pool_size"))
    )
    exact = (
        totals["pool"]
        == settlement.total_amount
        == int(
            Posting.objects.filter(
                entry__settlement=settlement, contributor_pk__isnull=False
            ).aggregate(total=Sum("amount"))["total"]
        )
    )
    print(
        f"reconcile_ledger: {'OK' if report.ok else 'BREACH'} in {time.perf_counter() - start:.1f} s; "
        f"charged {totals['gross']:,}, owed to pools {totals['pool']:,}, settled "
        f"{settlement.total_amount:,} micro-units: {'exact to the unit' if exact else 'MISMATCH'}"
    )
    for problem in report.problems:
        print("  BREACH:", problem)
    if connection.vendor == "postgresql":
        nq, nc = 20, naive_n
        write, group = _naive_settle(nq, nc)
        per_share_naive = (write + group) / (nq * nc)
        per_share_ours = settle / (args.queries * args.contributors)
        print(
            f"naive: {write:.1f} s to write {nq * nc:,} share rows + {group:.1f} s GROUP BY "
            f"= {per_share_naive * 1e9:.0f} ns/share -> {per_share_naive * args.queries * args.contributors / 3600:.1f} h "
            f"extrapolated to {args.queries:,} x {args.contributors:,}; ours {per_share_ours * 1e9:.2f} ns/share, "
            f"{per_share_naive / per_share_ours:.0f}x faster"
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench payouts")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--contributors", type=int, default=1_000_000)
    parser.add_argument("--snapshots", type=int, default=50, help="distinct pool memberships")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.db import connection

    test_settings = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        from django.conf import settings

        test_settings["NAME"] = str(settings.VAR_DIR / "bench-payouts.sqlite3")
    else:
        test_settings["NAME"] = "cleanroom_bench_payouts"
    print(f"creating a throwaway {connection.vendor} database for the bench...")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        _run(args)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
