"""Benchmark of the pool: upload throughput and materializing the consented pool.

    python -m bench pool [--contributors 100000] [--rows 10] [--api-uploads 20]
                         [--api-rows 5000] [--stream-rows 100000] [--repeat 5] [--keep-db]

Runs on a throwaway database created like the test database (from DATABASE_URL; the
default SQLite otherwise) and drops it at the end unless --keep-db.

Figures:
- upload throughput through the API (JSON and CSV, in-process DRF client, each upload
  validated, encrypted, stored and audited), and one streamed CSV of --stream-rows rows;
- the catalog's ``pool_size`` (one trigger-kept row) against counting the members;
- time to materialize the consented pool (``pool_snapshot`` -> collected Polars frame)
  for N contributors x M rows, against reading the same rows from an unencrypted local
  Parquet file in the same run (best of --repeat): target <= 1 s and ratio < 3.

Synthetic population: age, region, income, household size, weekly visits, home owner.
Contributors for the materialization phase are seeded in bulk (users, consents, data
keys and encrypted contributions written with the same storage code the service uses,
without per-row audit events), then compacted by the real ``pool_compact`` service.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REGIONS = ["north", "south", "east", "west", "centre"]
SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": REGIONS},
        {"name": "income", "type": "float", "lower": 0, "upper": 500000},
        {"name": "household_size", "type": "integer", "lower": 1, "upper": 12},
        {"name": "visits", "type": "integer", "lower": 0, "upper": 60},
        {"name": "owns_home", "type": "boolean"},
    ]
}


def synthetic_columns(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Realistic-looking households: skewed incomes, small households, Poisson visits."""
    age = np.clip(rng.normal(45, 15, n).round(), 18, 100).astype(np.int64)
    income = np.clip(rng.lognormal(10.5, 0.6, n), 0, 500000).round(2)
    return {
        "age": age,
        "region": np.array(REGIONS)[rng.integers(0, len(REGIONS), n)],
        "income": income,
        "household_size": np.clip(rng.poisson(1.6, n) + 1, 1, 12).astype(np.int64),
        "visits": np.clip(rng.poisson(6, n), 0, 60).astype(np.int64),
        "owns_home": rng.random(n) < 0.6,
    }


def records_of(columns: dict[str, Any]) -> list[dict[str, Any]]:
    names = list(columns)
    lists = [columns[name].tolist() for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]


def csv_of(columns: dict[str, Any]) -> bytes:
    out = io.StringIO()
    names = list(columns)
    out.write(",".join(names) + "\n")
    lists = [columns[name].tolist() for name in names]
    for values in zip(*lists, strict=True):
        out.write(",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values))
        out.write("\n")
    return out.getvalue().encode()


def best(times: list[float]) -> float:
    return min(times)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench pool")
    parser.add_argument("--contributors", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=10, help="rows per contributor")
    parser.add_argument("--api-uploads", type=int, default=20)
    parser.add_argument("--api-rows", type=int, default=5000, help="rows per API upload")
    parser.add_argument("--stream-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--skip-uploads", action="store_true", help="only the pool figures")
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("sqlite3"):
        database.setdefault("TEST", {})["NAME"] = f"bench_pool_{database['NAME']}"
    print("creating a throwaway database (migrations)...", flush=True)
    config = setup_databases(verbosity=0, interactive=False, keepdb=args.keep_db)
    from cleanroom.datasets.storage import segment_path

    segments = segment_path("x").parent  # MEDIA_ROOT/pool/<throwaway database>
    try:
        run(args)
    finally:
        if not args.keep_db:
            teardown_databases(config, verbosity=0)
            shutil.rmtree(segments, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    from django.conf import settings
    from tqdm import tqdm

    from cleanroom.accounts.services import account_create

    settings.ALLOWED_HOSTS = ["*"]
    rng = np.random.default_rng(20261129)
    officer = account_create(
        role="compliance", username=f"bench-{uuid.uuid4().hex[:8]}", password="bench-pass-1"
    )
    if not args.skip_uploads:
        upload_figures(args, rng, officer, tqdm)
    materialize_figures(args, rng, officer, tqdm)


def _dataset(officer: Any, slug: str, max_rows: int) -> Any:
    from cleanroom.datasets.services import dataset_create

    return dataset_create(
        actor=officer,
        slug=slug,
        name=slug,
        purpose="benchmark",
        schema=SCHEMA,
        policy={
            "total_epsilon": "10",
            "max_query_epsilon": "1",
            "min_contributors": 10,
            "max_rows_per_contributor": max_rows,
            "auto_approve": True,
        },
        price={"currency": "EUR", "per_query": "1", "per_epsilon": "1", "platform_fee": "0.2"},
    )


def upload_figures(
    args: argparse.Namespace, rng: np.random.Generator, officer: Any, tqdm: Any
) -> None:
    from rest_framework.test import APIClient

    from cleanroom.accounts.services import contributor_get_or_create, token_for
    from cleanroom.datasets.services import consent_give

    dataset = _dataset(officer, "bench_uploads", max(args.api_rows, args.stream_rows))

    def client_for_new_contributor() -> APIClient:
        contributor, _ = contributor_get_or_create(did=f"did:example:bench-{uuid.uuid4().hex}")
        consent_give(contributor=contributor, dataset=dataset)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user=contributor.user)}")
        return client

    url = f"/api/v1/datasets/{dataset.slug}/contributions/"
    # Warm up: the first request imports the URLconf (and OpenDP with it); not an upload cost.
    assert client_for_new_contributor().get(f"/api/v1/datasets/{dataset.slug}/").status_code == 200
    for kind in ("json", "csv"):
        payloads = []
        for _ in range(args.api_uploads):
            columns = synthetic_columns(rng, args.api_rows)
            payloads.append(records_of(columns) if kind == "json" else csv_of(columns))
        clients = [client_for_new_contributor() for _ in payloads]
        start = time.perf_counter()
        for client, payload in tqdm(
            list(zip(clients, payloads, strict=True)), desc=f"API uploads ({kind})", leave=False
        ):
            if kind == "json":
                response = client.post(url, {"records": payload}, format="json")
            else:
                response = client.post(url, {"file": io.BytesIO(payload)}, format="multipart")
            assert response.status_code == 201, response.content[:500]
        elapsed = time.perf_counter() - start
        rows = args.api_uploads * args.api_rows
        print(
            f"upload via API ({kind}, {args.api_uploads} uploads x {args.api_rows} rows): "
            f"{rows / elapsed:,.0f} rows/s ({elapsed:.2f} s)"
        )
    big = csv_of(synthetic_columns(rng, args.stream_rows))
    client = client_for_new_contributor()
    start = time.perf_counter()
    response = client.post(url, {"file": io.BytesIO(big)}, format="multipart")
    elapsed = time.perf_counter() - start
    assert response.status_code == 201, response.content[:500]
    print(
        f"one streamed CSV upload of {args.stream_rows:,} rows ({len(big) / 1e6:.1f} MB): "
        f"{elapsed:.2f} s, {args.stream_rows / elapsed:,.0f} rows/s"
    )


def seed_pool(args: argparse.Namespace, rng: np.random.Generator, dataset: Any, tqdm: Any) -> None:
    """Bulk-write the bench's contributors with synthetic records."""
    columns = synthetic_columns(rng, args.contributors * args.rows)
    seed_contributors(
        dataset=dataset,
        columns=columns,
        contributors=args.contributors,
        rows=args.rows,
        prefix="pool",
        tqdm=tqdm,
    )


def seed_contributors(
    *, dataset: Any, columns: dict[str, Any], contributors: int, rows: int, prefix: str, tqdm: Any
) -> None:
    """Bulk-write contributors with consent, wrapped data keys and encrypted uploads.

    The service's bulk path (``cleanroom.datasets.bulk``, also used by ``seed_demo``),
    without an audit event per contributor (shared by the pool and queries benches).
    """
    from cleanroom.accounts.services import contributors_bulk_create
    from cleanroom.datasets.bulk import BulkUpload, contributions_bulk_seed

    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    batch = 5000
    for start in tqdm(range(0, contributors, batch), desc="seeding contributors", unit_scale=batch):
        size = min(batch, contributors - start)
        people = contributors_bulk_create(
            dids=[f"did:example:{tag}-{start + i}" for i in range(size)],
            username_prefix=f"{tag}-{start}",
            audit=False,
        )
        contributions_bulk_seed(
            contributors=people,
            uploads=[
                BulkUpload(
                    dataset=dataset,
                    columns={
                        name: values[start * rows : (start + size) * rows]
                        for name, values in columns.items()
                    },
                    rows=rows,
                )
            ],
            audit=False,
            compacted=False,
        )


def materialize_figures(
    args: argparse.Namespace, rng: np.random.Generator, officer: Any, tqdm: Any
) -> None:
    import polars as pl

    from cleanroom.datasets.models import PoolSegment
    from cleanroom.datasets.pool import pool_snapshot
    from cleanroom.datasets.services import pool_compact

    n, m = args.contributors, args.rows
    dataset = _dataset(officer, "bench_pool", m)
    seed_pool(args, rng, dataset, tqdm)
    start = time.perf_counter()
    compacted = pool_compact(dataset_pk=dataset.pk)
    print(
        f"compaction of {n:,} uploads ({compacted:,} rows) into "
        f"{PoolSegment.objects.filter(dataset=dataset).count()} segment(s): "
        f"{time.perf_counter() - start:.2f} s"
    )

    pool_size_figures(dataset, n, args.repeat)

    def materialize() -> pl.DataFrame:
        snapshot = pool_snapshot(dataset=dataset)
        frame = snapshot.frame.collect()
        assert snapshot.size == n and frame.height == n * m
        return frame

    frame = materialize()  # warm-up (imports, connection)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "pool.parquet"
        frame.write_parquet(path)
        del frame
        pool_times, parquet_times = [], []
        for _ in tqdm(range(args.repeat), desc="materialize vs parquet", leave=False):
            start = time.perf_counter()
            materialize()
            pool_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            plain = pl.read_parquet(path)
            parquet_times.append(time.perf_counter() - start)
            assert plain.height == n * m
            del plain
        size_mb = path.stat().st_size / 1e6
    pool_best, parquet_best = best(pool_times), best(parquet_times)
    print(
        f"materialize consented pool ({n:,} contributors x {m} rows = {n * m:,} rows): "
        f"best {pool_best:.3f} s, median {statistics.median(pool_times):.3f} s"
    )
    print(
        f"read same rows from unencrypted local Parquet ({size_mb:.1f} MB): "
        f"best {parquet_best:.3f} s, median {statistics.median(parquet_times):.3f} s"
    )
    print(
        f"ratio pool/parquet: {pool_best / parquet_best:.2f} (target < 3); "
        f"pool within 1 s: {'yes' if pool_best <= 1 else 'NO'}"
    )


def pool_size_figures(dataset: Any, n: int, repeat: int) -> None:
    """The catalog's pool size: the trigger-kept counter against counting (same database)."""
    from django.db import connection

    from cleanroom.datasets.selectors import pool_members_queryset, pool_size

    def timed(read: Any) -> float:
        times = []
        for _ in range(max(repeat, 3)):
            start = time.perf_counter()
            assert read() == n
            times.append(time.perf_counter() - start)
        return best(times)

    # The count that pool_size ran before the counter (consents x keys x contributions).
    counted = timed(lambda: pool_members_queryset(dataset=dataset).count())
    kept = timed(lambda: pool_size(dataset=dataset))
    source = "trigger-kept row" if connection.vendor == "postgresql" else "count (no triggers)"
    print(
        f"pool_size of {n:,} contributors: {kept * 1000:.2f} ms ({source}) vs "
        f"{counted * 1000:.1f} ms counting; ratio {counted / kept:.0f}x"
    )
