"""Benchmark of queries: the DP engine and the end-to-end path, against plain Polars.

    python -m bench queries [--contributors 100000] [--rows 10] [--repeat 5]
                            [--skip-e2e] [--skip-default-calibration] [--keep-db]

Query (epsilon 1): ``SELECT region, COUNT(*), SUM(income), AVG(income) FROM bench
GROUP BY region`` over 8 public regions, 1,000,000 rows from 100,000 contributors.

Figures, each the median of --repeat runs in this process:
- engine: compile + closed-form calibration + execution (``mechanism_release``) on the
  pool frame as ``pool_snapshot`` returns it (an in-memory Polars LazyFrame);
- plain Polars running the same aggregation, and the same aggregation with the same
  per-contributor truncation and clipping (the non-private twin of the DP plan);
- OpenDP's default calibration (binary search through ``Context``), once, for scale;
- end to end: ``POST /api/v1/queries/`` (in-process DRF client) until the query reads
  ``released``, executed by a real ``celery worker`` subprocess against a throwaway
  database (from DATABASE_URL) and the broker in CELERY_BROKER_URL.
Targets: engine <= 0.5 s, end to end <= 1.5 s, engine <= 3x the truncated plain plan.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REGIONS = ["north", "south", "east", "west", "centre", "coast", "hills", "islands"]
SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": REGIONS},
        {"name": "income", "type": "float", "lower": 0, "upper": 500000},
    ]
}
SQL = (
    "SELECT region, COUNT(*) AS n, SUM(income) AS total_income, AVG(income) AS mean_income "
    "FROM bench GROUP BY region"
)
ROOT = Path(__file__).resolve().parent.parent


def synthetic(rng: np.random.Generator, contributors: int, rows: int) -> dict[str, Any]:
    n = contributors * rows
    return {
        "contributor_id": np.repeat(np.arange(1, contributors + 1, dtype=np.int64), rows),
        "age": np.clip(rng.normal(45, 15, n).round(), 18, 100).astype(np.int64),
        "region": np.array(REGIONS)[rng.integers(0, len(REGIONS), n)],
        "income": np.clip(rng.lognormal(10.5, 0.6, n), 0, 500000).round(2),
    }


def median(times: list[float]) -> float:
    return statistics.median(times)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench queries")
    parser.add_argument("--contributors", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=10, help="rows per contributor")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-default-calibration", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)

    import django

    django.setup()
    rng = np.random.default_rng(20261129)
    columns = synthetic(rng, args.contributors, args.rows)
    engine = engine_figures(args, columns)
    if args.skip_e2e:
        return
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("sqlite3"):
        database.setdefault("TEST", {})["NAME"] = f"bench_queries_{database['NAME']}"
    print("creating a throwaway database (migrations)...", flush=True)
    config = setup_databases(verbosity=0, interactive=False, keepdb=args.keep_db)
    try:
        end_to_end_figures(args, columns, engine)
    finally:
        if not args.keep_db:
            teardown_databases(config, verbosity=0)


def engine_figures(args: argparse.Namespace, columns: dict[str, Any]) -> dict[str, float]:
    import polars as pl
    from tqdm import tqdm

    from cleanroom.queries import dp
    from cleanroom.queries.sql import compile_sql

    k = args.rows
    frame = pl.DataFrame(columns).lazy()
    unit = dp.PrivacyUnit(max_rows_per_contributor=k, max_rows=k * 1_000_000)
    policy = {"max_rows_per_contributor": k}

    def run_engine() -> tuple[float, float, Any]:
        started = time.perf_counter()
        plan = compile_sql(SQL, table="bench", schema=SCHEMA, policy=policy)
        mechanism = dp.mechanism_build(plan=plan, unit=unit, epsilon=1.0)
        calibrated = time.perf_counter()
        release = dp.mechanism_release(mechanism=mechanism, frame=frame)
        return calibrated - started, time.perf_counter() - started, release

    def run_plain() -> pl.DataFrame:
        return (
            frame.group_by("region")
            .agg(
                pl.len().alias("n"),
                pl.col("income").sum().alias("total_income"),
                pl.col("income").mean().alias("mean_income"),
            )
            .collect()
        )

    def run_plain_truncated() -> pl.DataFrame:
        rank = pl.int_range(pl.len()).over("contributor_id")
        income = pl.col("income").fill_nan(0.0).fill_null(0.0).clip(0.0, 500000.0)
        return (
            frame.filter(rank < k)
            .group_by("region")
            .agg(
                pl.len().alias("n"),
                income.sum().alias("total_income"),
                income.mean().alias("mean_income"),
            )
            .collect()
        )

    run_engine(), run_plain(), run_plain_truncated()  # warm-up: imports, thread pools
    calibration, engine, plain, truncated = [], [], [], []
    release = None
    for _ in tqdm(range(args.repeat), desc="engine vs plain Polars", leave=False):
        plan_time, total, release = run_engine()
        calibration.append(plan_time)
        engine.append(total)
        started = time.perf_counter()
        run_plain()
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        run_plain_truncated()
        truncated.append(time.perf_counter() - started)
    rows = args.contributors * args.rows
    print(
        f"\n== queries bench: {rows:,} rows from {args.contributors:,} contributors, epsilon 1 =="
    )
    print(f"query: {SQL}")
    print(f"engine (plan + calibration + execution): {median(engine):.3f} s  (target <= 0.5 s)")
    print(f"  of which plan + closed-form calibration: {median(calibration) * 1000:.1f} ms")
    print(f"plain Polars, same aggregation:            {median(plain):.3f} s")
    print(f"plain Polars, same truncation + clipping:  {median(truncated):.3f} s")
    print(
        f"ratio engine / plain: {median(engine) / median(plain):.1f}x; "
        f"engine / plain with truncation: {median(engine) / median(truncated):.2f}x (target <= 3x)"
    )
    assert release is not None
    print("released (noisy) first rows:", release.rows[:2])
    if not args.skip_default_calibration:
        default_calibration(frame, k)
    return {
        "engine": median(engine),
        "plain": median(plain),
        "truncated": median(truncated),
    }


def default_calibration(frame: Any, k: int) -> None:
    """The same query through OpenDP's Context, which calibrates by binary search."""
    from cleanroom.queries.dp.engine import opendp_default_calibration_seconds

    seconds = opendp_default_calibration_seconds(frame=frame, regions=REGIONS, rows=k)
    print(f"OpenDP default calibration (binary search) for the same query: {seconds:.2f} s")


def end_to_end_figures(
    args: argparse.Namespace, columns: dict[str, Any], engine: dict[str, float]
) -> None:
    from django.conf import settings
    from tqdm import tqdm

    from cleanroom.accounts.services import account_create, token_for
    from cleanroom.datasets.models import PoolSegment
    from cleanroom.datasets.services import dataset_create, pool_compact
    from payouts.services import topup_record

    settings.ALLOWED_HOSTS = ["*"]
    from cleanroom.accounts.models import User
    from cleanroom.datasets.models import Dataset

    business = User.objects.filter(organization__name="Bench Analytics").first()
    dataset = Dataset.objects.filter(slug="bench").first()
    if business is None or dataset is None:  # a fresh database (or --keep-db's first run)
        officer = account_create(
            role="compliance",
            username=f"bench-officer-{uuid.uuid4().hex[:6]}",
            password="x-pass-123",
        )
        business = account_create(
            role="business",
            username=f"bench-analyst-{uuid.uuid4().hex[:6]}",
            password="x-pass-123",
            organization="Bench Analytics",
        )
        topup_record(
            organization=business.organization,
            amount=10**12,
            actor=None,
            currency="EUR",
            reference="bench",
        )
        dataset = dataset_create(
            actor=officer,
            slug="bench",
            name="Bench",
            purpose="benchmark",
            schema=SCHEMA,
            policy={
                "total_epsilon": "1000",
                "max_query_epsilon": "1",
                "min_contributors": 10,
                "max_rows_per_contributor": args.rows,
                "auto_approve": True,
            },
            price={"currency": "EUR", "per_query": "1", "per_epsilon": "1", "platform_fee": "0.2"},
        )
        from bench.pool import seed_contributors

        seed_contributors(
            dataset=dataset,
            columns=columns,
            contributors=args.contributors,
            rows=args.rows,
            prefix="q",
            tqdm=tqdm,
        )
        started = time.perf_counter()
        pool_compact(dataset_pk=dataset.pk)
        from django.db import connection

        if connection.vendor == "postgresql":  # as autovacuum would after a bulk load
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        print(
            f"pool seeded and compacted into "
            f"{PoolSegment.objects.filter(dataset=dataset).count()} encrypted segment(s) in "
            f"{time.perf_counter() - started:.1f} s"
        )
    else:
        print("reusing the pool of the kept database")
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user=business)}")
    worker = start_worker()
    try:
        times = []
        for attempt in tqdm(
            range(args.repeat + 1), desc="end to end through the worker", leave=False
        ):
            seconds, status = submit_and_wait(client)
            if status != "released":
                raise SystemExit(f"query ended {status}; worker log:\n{worker_log_tail()}")
            if attempt:  # the first run warms the worker's imports
                times.append(seconds)
    finally:
        stop_worker(worker)
    e2e = median(times)
    from cleanroom.queries.models import Query

    recent = list(Query.objects.filter(status="released").order_by("-pk")[: len(times)])
    queued = median([(q.started_at - q.created_at).total_seconds() for q in recent])
    worked = median([(q.released_at - q.started_at).total_seconds() for q in recent])
    print(f"\nend to end POST -> released through a real worker: {e2e:.3f} s  (target <= 1.5 s)")
    print(
        f"  of which submission to claim by the worker: {queued:.3f} s; "
        f"claim to release (snapshot, engine, charge): {worked:.3f} s"
    )
    print(
        f"ratio end to end / plain: {e2e / engine['plain']:.1f}x; "
        f"end to end / plain with truncation: {e2e / engine['truncated']:.1f}x"
    )


def submit_and_wait(client: Any, timeout: float = 120) -> tuple[float, str]:
    from cleanroom.queries.models import Query

    started = time.perf_counter()
    response = client.post(
        "/api/v1/queries/", {"dataset": "bench", "sql": SQL, "epsilon": 1}, format="json"
    )
    if response.status_code != 202:
        raise SystemExit(f"submission refused: {response.status_code} {response.content!r}")
    pk = response.json()["id"]
    deadline = started + timeout
    while time.perf_counter() < deadline:
        status = Query.objects.filter(pk=pk).values_list("status", flat=True)[0]
        if status in ("released", "failed"):
            return time.perf_counter() - started, status
        time.sleep(0.01)
    return time.perf_counter() - started, "timeout"


LOG = Path(os.environ.get("CLEANROOM_VAR_DIR", ROOT / "var")) / "bench-queries-worker.log"


def _database_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def start_worker() -> subprocess.Popen[bytes]:
    from django.conf import settings

    from cleanroom.celery import app

    app.control.purge()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    LOG.parent.mkdir(parents=True, exist_ok=True)
    log = LOG.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cleanroom",
            "worker",
            "--loglevel=WARNING",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"bench-queries-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"worker exited:\n{worker_log_tail()}")
        if app.control.ping(timeout=0.5):
            return process
    raise SystemExit(f"worker did not start:\n{worker_log_tail()}")


def worker_log_tail() -> str:
    return LOG.read_text(errors="replace")[-4000:] if LOG.exists() else ""


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
