"""Load benchmark: a bounded mixed workload against gunicorn and a Celery worker.

    python -m bench load [--clients 50] [--requests 6000] [--duration 180]
                         [--contributors 20000] [--rows 10] [--big-export-rows 200000]
                         [--web-workers 3] [--threads 4] [--worker-concurrency 2]
                         [--think 0] [--baseline-requests 300] [--keep-db]
                         [--samples FILE]

Everything runs on 127.0.0.1: a throwaway PostgreSQL database made like the test database
(from DATABASE_URL), a throwaway var folder (pool segments) under /tmp, ``gunicorn
cleanroom.wsgi`` on a free port and one ``celery worker``, both on the broker in
CELERY_BROKER_URL. The bench seeds its own synthetic data: a pool of --contributors x
--rows, 100 contributors with API tokens who upload, read their earnings and export,
one contributor with --big-export-rows rows (the export that used to take a worker's
memory), two businesses and a compliance officer.

--clients asynchronous clients (API tokens, keep-alive connections) send a fixed mix, back
to back (or --think seconds apart on average, like people reading each answer), until
--requests requests or --duration seconds, whichever comes first: catalog and detail
reads, query list and detail, previews and submissions (10% together), uploads, earnings,
exports and result downloads, billing, audit event pages. A request counts as an error
when its status is not the expected one (or it fails to connect, times out or is reset).

Before the run, the same mix from one client (--baseline-requests) gives each endpoint's
time without queueing, the baseline the concurrent figures are read against.
Reported: requests/s, p50/p95/p99 and errors per endpoint, peak RSS per process
(gunicorn master and workers, the Celery worker and its pool, this client), the load
average. Afterwards, once every submitted query has finished, the books are checked:
each dataset's spent epsilon equals its charges, every query is released (charged and
paid once) or failed with its budget and price given back, the ledger reconciles and the
audit log verifies. Goals on the development machine: 0 errors, no process above 1 GB,
p95 < 300 ms for reads at 50 clients.

Rate limits (cleanroom/throttling.py) apply to sign-in and anonymous presentation
requests only; the clients authenticate with tokens, so none applies. Should a limit ever
bite, raise it for the bench's server through the environment, never in code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACTIVE_CONTRIBUTORS = 100
SQLS = [
    "SELECT region, COUNT(*) AS n, AVG(income) AS mean_income FROM households GROUP BY region",
    "SELECT COUNT(*) AS n, SUM(visits) AS visits FROM households WHERE age >= 40",
    "SELECT owns_home, AVG(household_size) AS size FROM households GROUP BY owns_home",
]

# (endpoint, weight in percent, expected status); reads are the first group.
MIX: list[tuple[str, int, int]] = [
    ("catalog", 20, 200),
    ("dataset detail", 16, 200),
    ("query list", 4, 200),
    ("query detail", 8, 200),
    ("billing", 5, 200),
    ("me", 4, 200),
    ("earnings", 8, 200),
    ("audit events", 10, 200),
    ("preview", 5, 200),
    ("submit", 5, 202),
    ("upload", 6, 201),
    ("export", 5, 200),
    ("export (big)", 1, 200),
    ("result download", 3, 200),
]
READS = {
    "catalog",
    "dataset detail",
    "query list",
    "query detail",
    "billing",
    "me",
    "earnings",
    "audit events",
}


@dataclass
class Sample:
    endpoint: str
    seconds: float
    ok: bool
    status: int
    detail: str = ""
    at: float = 0.0  # when it was sent (time.perf_counter())


@dataclass
class World:
    """What the clients need: the server's address, tokens and object ids."""

    base: str
    business_tokens: list[str]
    officer_token: str
    contributor_tokens: list[str]
    big_exporter_token: str
    query_ids: list[int] = field(default_factory=list)
    released_ids: list[int] = field(default_factory=list)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench load")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=6000, help="stop after this many")
    parser.add_argument("--duration", type=float, default=180, help="or after this many seconds")
    parser.add_argument("--contributors", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=10, help="rows per pool contributor")
    parser.add_argument("--big-export-rows", type=int, default=200_000)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean seconds a client waits between requests (0: back to back, the worst case)",
    )
    parser.add_argument(
        "--baseline-requests", type=int, default=300, help="the same mix from one client first"
    )
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument(
        "--samples", type=Path, help="write every request (endpoint, start, seconds, status) as JSON"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.duration <= 0 or args.clients < 1:
        parser.error("--requests, --duration and --clients must be positive")

    scratch = Path(tempfile.mkdtemp(prefix="cleanroom-bench-load-"))
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        raise SystemExit("python -m bench load needs PostgreSQL: set DATABASE_URL")
    database.setdefault("TEST", {})["NAME"] = f"bench_load_{database['NAME']}"
    settings.MEDIA_ROOT = scratch / "media"  # the servers get CLEANROOM_VAR_DIR=scratch
    print(f"load average at start: {_load_average()}", flush=True)
    print("creating a throwaway database (migrations)...", flush=True)
    config = setup_databases(verbosity=0, interactive=False, keepdb=args.keep_db)
    try:
        run(args, scratch)
    finally:
        if not args.keep_db:
            teardown_databases(config, verbosity=0)
        # Only the folder this run made with mkdtemp above.
        if scratch.name.startswith("cleanroom-bench-load-") and scratch.parent == Path(
            tempfile.gettempdir()
        ):
            shutil.rmtree(scratch, ignore_errors=True)


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


# ---------------------------------------------------------------- seeding


def seed(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    from django.db import connection
    from tqdm import tqdm

    from bench.pool import SCHEMA, seed_contributors, synthetic_columns
    from cleanroom.accounts.models import Contributor
    from cleanroom.accounts.services import account_create, token_for
    from cleanroom.datasets.services import consent_give, dataset_create, pool_compact
    from payouts.services import topup_record

    rng = np.random.default_rng(args.seed)
    officer = account_create(role="compliance", username="load-officer", password="load-pass-123")
    businesses = []
    for name in ("Load Analytics", "Load Research"):
        user = account_create(
            role="business",
            username=f"load-{uuid.uuid4().hex[:6]}",
            password="load-pass-123",
            organization=name,
        )
        topup_record(
            organization=user.organization,
            amount=10**13,
            actor=None,
            currency="EUR",
            reference="load",
        )
        businesses.append(user)
    policy = {
        "total_epsilon": "1000000",
        "max_query_epsilon": "1",
        "min_contributors": 10,
        "max_rows_per_contributor": args.rows,
        "auto_approve": True,
    }
    price = {"currency": "EUR", "per_query": "1", "per_epsilon": "1", "platform_fee": "0.2"}
    households = dataset_create(
        actor=officer,
        slug="households",
        name="Households",
        purpose="load",
        schema=SCHEMA,
        policy=policy,
        price=price,
    )
    diaries = dataset_create(
        actor=officer,
        slug="diaries",
        name="Diaries",
        purpose="load (the big export)",
        schema=SCHEMA,
        policy={
            **policy,
            "max_rows_per_contributor": args.big_export_rows,
            "max_contributors": 1000,
        },
        price=price,
    )
    seed_contributors(
        dataset=households,
        columns=synthetic_columns(rng, args.contributors * args.rows),
        contributors=args.contributors,
        rows=args.rows,
        prefix="load",
        tqdm=tqdm,
    )
    active = list(Contributor.objects.select_related("user").order_by("pk")[:ACTIVE_CONTRIBUTORS])
    before = set(Contributor.objects.values_list("pk", flat=True))
    seed_contributors(
        dataset=diaries,
        columns=synthetic_columns(rng, args.big_export_rows),
        contributors=1,
        rows=args.big_export_rows,
        prefix="load-big",
        tqdm=tqdm,
    )
    big = Contributor.objects.exclude(pk__in=before).select_related("user").get()
    # Uploads during the run go to their own dataset: the pool's contributors already hold
    # the most rows its policy lets one person store.
    visits = dataset_create(
        actor=officer,
        slug="visits",
        name="Visits",
        purpose="load (uploads)",
        schema=SCHEMA,
        policy={**policy, "max_rows_per_contributor": 100_000, "max_contributors": 10_000},
        price=price,
    )
    for contributor in active:
        consent_give(contributor=contributor, dataset=visits)
    for dataset in (households, diaries, visits):
        pool_compact(dataset_pk=dataset.pk)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would after a bulk load
    return {
        "business_tokens": [token_for(user=user) for user in businesses],
        "officer_token": token_for(user=officer),
        "contributor_tokens": [token_for(user=c.user) for c in active],
        "big_exporter_token": token_for(user=big.user),
    }


# ---------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _database_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/{db['NAME']}"
    )


def server_environment(scratch: Path) -> dict[str, str]:
    from django.conf import settings

    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CLEANROOM_VAR_DIR": str(scratch),
        # The same keys as this process (which seeded the pool), not new ones in scratch.
        "CLEANROOM_KEK": settings.CLEANROOM_KEK,
        "CLEANROOM_AUDIT_KEY_FILE": str(settings.CLEANROOM_AUDIT_KEY_FILE),
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "false",
    }


class Servers:
    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.port = _free_port()
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def _spawn(self, command: list[str], log: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_environment(self.scratch),
            stdout=(self.scratch / log).open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        from cleanroom.celery import app

        app.control.purge()
        self.worker = self._spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cleanroom",
                "worker",
                "--loglevel=WARNING",
                f"--concurrency={self.args.worker_concurrency}",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"bench-load-{os.getpid()}@%h",
            ],
            "worker.log",
        )
        self.web = self._spawn(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "cleanroom.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.args.web_workers),
                "--threads",
                str(self.args.threads),
                "--timeout",
                "120",
                "--log-level",
                "warning",
            ],
            "web.log",
        )
        import httpx

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for process, name in ((self.web, "web"), (self.worker, "worker")):
                if process.poll() is not None:
                    raise SystemExit(f"{name} exited:\n{self.log_tail(name)}")
            try:
                if httpx.get(
                    f"{self.base}/healthz", timeout=2
                ).status_code == 200 and app.control.ping(timeout=0.5):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(
            f"servers did not start:\n{self.log_tail('web')}\n{self.log_tail('worker')}"
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, name: str) -> str:
        path = self.scratch / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in (self.web, self.worker):
            if process is None:
                continue
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


# ---------------------------------------------------------------- memory


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def _rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in {"postgres", "postmaster"}:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuAccount:
    """Where the cores went during the run: CPU seconds per kind of process (a process
    that exits during the run is missed, so the sums are lower bounds)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.start = self._read()

    def _read(self) -> dict[tuple[str, int], float]:
        seen: dict[tuple[str, int], float] = {}
        for role, root in self.roots.items():
            pids = [root] if role == "load client" else [root, *_children(root)]
            for pid in pids:
                seen[(role, pid)] = _cpu_seconds(pid)
        for pid in _postgres_pids():
            seen[("postgresql", pid)] = _cpu_seconds(pid)
        return seen

    def spent(self) -> dict[str, float]:
        end = self._read()
        totals: dict[str, float] = defaultdict(float)
        for key, seconds in end.items():
            totals[key[0]] += seconds - self.start.get(key, 0.0)
        return dict(totals)


class MemorySampler(threading.Thread):
    """Peak resident memory of every process of the servers and of this client.

    Sampled every 0.2 s; the kernel's own high-water mark (VmHWM) is read at each sample
    too, so a spike between samples still counts."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peaks: dict[tuple[str, int], int] = {}
        self.halt = threading.Event()

    def sample(self) -> None:
        for role, root in self.roots.items():
            stack = [(root, role)]
            while stack:
                pid, label = stack.pop()
                peak = max(_rss_kib(pid), _rss_kib(pid, "VmHWM"))
                if peak:
                    key = (label, pid)
                    self.peaks[key] = max(self.peaks.get(key, 0), peak)
                child_label = {"gunicorn": "gunicorn worker", "celery": "celery pool process"}.get(
                    role, f"{role} child"
                )
                if role != "load client":  # its children are the servers, counted above
                    stack += [(child, child_label) for child in _children(pid)]

    def run(self) -> None:
        while not self.halt.wait(0.2):
            self.sample()


# ---------------------------------------------------------------- the clients


def _pick(rng: random.Random) -> tuple[str, int]:
    endpoint, _, expected = rng.choices(MIX, weights=[w for _, w, _ in MIX])[0]
    return endpoint, expected


def _upload_records(rng: random.Random) -> list[dict[str, Any]]:
    regions = ["north", "south", "east", "west", "centre"]
    return [
        {
            "age": rng.randint(18, 90),
            "region": rng.choice(regions),
            "income": round(rng.uniform(5000, 150000), 2),
            "household_size": rng.randint(1, 6),
            "visits": rng.randint(0, 30),
            "owns_home": rng.random() < 0.6,
        }
        for _ in range(20)
    ]


async def _request(client: Any, world: World, endpoint: str, rng: random.Random) -> Any:
    business = {"Authorization": f"Token {rng.choice(world.business_tokens)}"}
    contributor = {"Authorization": f"Token {rng.choice(world.contributor_tokens)}"}
    officer = {"Authorization": f"Token {world.officer_token}"}
    query_body = {"dataset": "households", "sql": rng.choice(SQLS), "epsilon": "0.1"}
    if endpoint == "catalog":
        return await client.get("/api/v1/datasets/", headers=business)
    if endpoint == "dataset detail":
        slug = rng.choice(["households", "diaries"])
        return await client.get(f"/api/v1/datasets/{slug}/", headers=business)
    if endpoint == "query list":
        return await client.get("/api/v1/queries/", headers=officer)
    if endpoint == "query detail":
        return await client.get(f"/api/v1/queries/{rng.choice(world.query_ids)}/", headers=officer)
    if endpoint == "billing":
        return await client.get("/api/v1/billing/", headers=business)
    if endpoint == "me":
        return await client.get("/api/v1/me/", headers=contributor)
    if endpoint == "earnings":
        return await client.get("/api/v1/me/earnings/", headers=contributor)
    if endpoint == "audit events":
        page = rng.randint(1, 20)
        return await client.get(f"/api/v1/audit/events/?page={page}&page_size=50", headers=officer)
    if endpoint == "preview":
        return await client.post("/api/v1/queries/preview/", json=query_body, headers=business)
    if endpoint == "submit":
        return await client.post("/api/v1/queries/", json=query_body, headers=business)
    if endpoint == "upload":
        return await client.post(
            "/api/v1/datasets/visits/contributions/",
            json={"records": _upload_records(rng)},
            headers=contributor,
        )
    if endpoint == "export":
        return await _drain(client, "/api/v1/me/export/", contributor)
    if endpoint == "export (big)":
        return await _drain(
            client, "/api/v1/me/export/", {"Authorization": f"Token {world.big_exporter_token}"}
        )
    if endpoint == "result download":
        path = f"/api/v1/queries/{rng.choice(world.released_ids)}/result/?as=csv"
        return await _drain(client, path, officer)
    raise AssertionError(endpoint)


@dataclass
class Drained:
    status_code: int
    size: int


async def _drain(client: Any, path: str, headers: dict[str, str]) -> Drained:
    """A download read to its end in pieces (as a browser saves it), not held whole."""
    size = 0
    async with client.stream("GET", path, headers=headers) as response:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
        return Drained(response.status_code, size)


async def _client_loop(
    client: Any,
    world: World,
    index: int,
    seed: int,
    budget: dict[str, Any],
    samples: list[Sample],
    think: float = 0.0,
) -> None:
    rng = random.Random(seed * 1000 + index)
    if think:  # people arrive over time: the first click, too, comes after a pause
        await asyncio.sleep(rng.expovariate(1 / think))
    while budget["left"] > 0 and time.monotonic() < budget["deadline"]:
        budget["left"] -= 1
        endpoint, expected = _pick(rng)
        started = time.perf_counter()
        try:
            response = await _request(client, world, endpoint, rng)
            status = response.status_code
            detail = "" if status == expected else getattr(response, "text", "")[:200]
        except Exception as error:  # connection reset, timeout: an error, counted
            status, detail = 0, f"{type(error).__name__}: {error}"[:200]
        elapsed = time.perf_counter() - started
        samples.append(Sample(endpoint, elapsed, status == expected, status, detail, started))
        if endpoint == "submit" and status == expected:
            world.query_ids.append(int(response.json()["id"]))
        if think:  # a person reading the answer before the next click (exponential)
            await asyncio.sleep(rng.expovariate(1 / think))


async def drive(
    world: World, *, clients: int, requests: int, duration: float, seed: int, think: float = 0.0
) -> tuple[list[Sample], float]:
    import httpx

    samples: list[Sample] = []
    budget = {"left": requests, "deadline": time.monotonic() + duration}
    # Idle connections are dropped after 1 s, before gunicorn's own keep-alive (2 s) closes
    # them: reusing one the server is closing at that moment is a reset on the client's
    # side (as any client or proxy must, the idle limit sits below the server's).
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=1.0
    )
    async with httpx.AsyncClient(base_url=world.base, limits=limits, timeout=120) as client:
        started = time.perf_counter()
        await asyncio.gather(
            *[_client_loop(client, world, i, seed, budget, samples, think) for i in range(clients)]
        )
        return samples, time.perf_counter() - started


def warm_up(world: World) -> None:
    """One request of each kind per server worker (imports), and released queries to read."""
    import httpx

    from cleanroom.queries.models import Query

    business = {"Authorization": f"Token {world.business_tokens[0]}"}
    with httpx.Client(base_url=world.base, timeout=120) as client:
        for sql in SQLS:
            response = client.post(
                "/api/v1/queries/",
                json={"dataset": "households", "sql": sql, "epsilon": "0.1"},
                headers=business,
            )
            if response.status_code != 202:
                raise SystemExit(
                    f"warm-up submission refused: {response.status_code} {response.text[:500]}"
                )
            world.query_ids.append(int(response.json()["id"]))
        deadline = time.monotonic() + 120
        while Query.objects.filter(pk__in=world.query_ids, status="released").count() < len(SQLS):
            if time.monotonic() > deadline:
                raise SystemExit("warm-up queries were not released in 120 s")
            time.sleep(0.2)
    world.released_ids = list(world.query_ids)
    rng = random.Random(0)
    for endpoint, _, expected in MIX:
        if endpoint in ("submit", "upload", "export (big)"):
            continue
        for _ in range(4):
            response = asyncio.run(_one(world, endpoint, rng))
            if response.status_code != expected:
                raise SystemExit(
                    f"warm-up {endpoint}: {response.status_code} {getattr(response, 'text', '')[:500]}"
                )


async def _one(world: World, endpoint: str, rng: random.Random) -> Any:
    import httpx

    async with httpx.AsyncClient(base_url=world.base, timeout=120) as client:
        return await _request(client, world, endpoint, rng)


# ---------------------------------------------------------------- afterwards


def books_after(timeout: float = 300) -> tuple[list[str], dict[str, int]]:
    """Wait for every query to finish, then check budget, money and the audit log."""
    from decimal import Decimal

    from django.db import close_old_connections
    from django.db.models import Count, Sum

    from audit.selectors import log_verify
    from cleanroom.datasets.models import Dataset
    from cleanroom.queries.models import BudgetCharge, Query
    from payouts.models import Distribution
    from payouts.reconcile import ledger_reconcile

    deadline = time.monotonic() + timeout
    while Query.objects.exclude(status__in=("released", "failed", "rejected")).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
        close_old_connections()
    problems: list[str] = []
    statuses = {
        row["status"]: row["n"] for row in Query.objects.values("status").annotate(n=Count("pk"))
    }
    for status, count in statuses.items():
        if status not in ("released", "failed", "rejected"):
            problems.append(f"{count} queries still {status}")
    for query in Query.objects.filter(status="released"):
        charge = BudgetCharge.objects.filter(query=query).values_list("state", flat=True).first()
        if charge != "charged" or Distribution.objects.filter(query_id=query.pk).count() != 1:
            problems.append(f"released query {query.pk}: charge {charge}")
    for query in Query.objects.filter(status__in=("failed", "rejected")):
        charge = BudgetCharge.objects.filter(query=query).values_list("state", flat=True).first()
        if charge not in ("refunded", "charged"):
            problems.append(f"{query.status} query {query.pk}: charge {charge}")
    for dataset in Dataset.objects.all():
        held = BudgetCharge.objects.filter(
            dataset=dataset, state__in=("reserved", "charged")
        ).aggregate(total=Sum("epsilon"))["total"] or Decimal(0)
        if dataset.spent_epsilon != held:
            problems.append(
                f"{dataset.slug}: spent {dataset.spent_epsilon} but charges hold {held}"
            )
    ledger = ledger_reconcile()
    problems += [f"ledger: {p}" for p in ledger.problems]
    verified = log_verify()
    if not verified.ok:
        problems.append(f"audit log: {verified.reason}")
    return problems, statuses


# ---------------------------------------------------------------- report


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def report(
    baseline: list[Sample],
    samples: list[Sample],
    elapsed: float,
    peaks: dict[tuple[str, int], int],
    args: argparse.Namespace,
) -> bool:
    by_endpoint: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_endpoint[sample.endpoint].append(sample)
    errors = [s for s in [*baseline, *samples] if not s.ok]
    print(
        f"\n== load: {len(samples):,} requests from {args.clients} clients "
        f"({'back to back' if not args.think else f'{args.think:g} s apart on average'}) in {elapsed:.1f} s: "
        f"{len(samples) / elapsed:,.1f} requests/s, {len(errors)} errors =="
    )
    alone: dict[str, list[float]] = defaultdict(list)
    for sample in baseline:
        alone[sample.endpoint].append(sample.seconds * 1000)

    def single(endpoints: set[str]) -> str:
        values = [v for name in endpoints for v in alone.get(name, [])]
        return f"{statistics.median(values):,.0f}" if values else "-"

    print("| endpoint | requests | p50 ms | p95 ms | p99 ms | errors | p50 ms, one client |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for endpoint, _, _ in MIX:
        rows = by_endpoint.get(endpoint, [])
        if not rows:
            continue
        times = [s.seconds * 1000 for s in rows]
        print(
            f"| {endpoint} | {len(rows):,} | {statistics.median(times):,.0f} | "
            f"{_percentile(times, 0.95):,.0f} | {_percentile(times, 0.99):,.0f} | "
            f"{sum(not s.ok for s in rows)} | {single({endpoint})} |"
        )
    reads = [s.seconds * 1000 for s in samples if s.endpoint in READS]
    read_p95 = _percentile(reads, 0.95) if reads else 0.0
    print(
        f"| all reads | {len(reads):,} | {statistics.median(reads) if reads else 0:,.0f} | "
        f"{read_p95:,.0f} | {_percentile(reads, 0.99) if reads else 0:,.0f} | "
        f"{sum(not s.ok for s in samples if s.endpoint in READS)} | {single(READS)} |"
    )
    if errors:
        kinds: dict[str, int] = defaultdict(int)
        for sample in errors:
            kinds[f"{sample.endpoint}: {sample.status} {sample.detail[:120]}"] += 1
        print("errors:")
        for kind, count in sorted(kinds.items(), key=lambda item: -item[1])[:10]:
            print(f"  {count} x {kind}")
    print("\npeak resident memory per process:")
    biggest = 0
    for (role, pid), kib in sorted(peaks.items(), key=lambda item: (item[0][0], -item[1])):
        biggest = max(biggest, kib)
        print(f"  {role:<22} pid {pid:<8} {kib / 1024:,.0f} MB")
    print(f"load average at the end: {_load_average()}")
    goals = {
        "0 errors": not errors,
        "no process above 1 GB": biggest < 1024 * 1024,
        "p95 of reads < 300 ms": read_p95 < 300,
    }
    print(
        "goals: "
        + "; ".join(f"{name}: {'met' if met else 'MISSED'}" for name, met in goals.items())
    )
    return all(goals.values())


def run(args: argparse.Namespace, scratch: Path) -> None:
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["*"]
    started = time.perf_counter()
    tokens = seed(args)
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
    servers = Servers(args, scratch)
    servers.start()
    try:
        world = World(base=servers.base, query_ids=[], **tokens)
        warm_up(world)
        assert servers.web is not None and servers.worker is not None
        sampler = MemorySampler(
            {"gunicorn": servers.web.pid, "celery": servers.worker.pid, "load client": os.getpid()}
        )
        sampler.start()
        print(
            f"driving {args.clients} clients: at most {args.requests:,} requests or "
            f"{args.duration:.0f} s (load average {_load_average()})...",
            flush=True,
        )
        baseline: list[Sample] = []
        if args.baseline_requests:
            baseline, _ = asyncio.run(
                drive(
                    world,
                    clients=1,
                    requests=args.baseline_requests,
                    duration=args.duration,
                    seed=args.seed + 1,
                )
            )
        cpu = CpuAccount(
            {"gunicorn": servers.web.pid, "celery": servers.worker.pid, "load client": os.getpid()}
        )
        samples, elapsed = asyncio.run(
            drive(
                world,
                clients=args.clients,
                requests=args.requests,
                duration=args.duration,
                seed=args.seed,
                think=args.think,
            )
        )
        spent = cpu.spent()
        if args.samples:
            origin = min((sample.at for sample in samples), default=0.0)
            args.samples.write_text(
                json.dumps(
                    [
                        [s.endpoint, round(s.at - origin, 4), round(s.seconds, 4), s.status]
                        for s in samples
                    ]
                )
            )
        problems, statuses = books_after()
        sampler.halt.set()
        sampler.join()
        sampler.sample()
        met = report(baseline, samples, elapsed, sampler.peaks, args)
        print(
            f"CPU during the run ({elapsed:.0f} s x {os.cpu_count()} cores = "
            f"{elapsed * (os.cpu_count() or 1):.0f} core-seconds): "
            + ", ".join(f"{role} {seconds:.0f} s" for role, seconds in sorted(spent.items()))
            + f"; per request: web {1000 * spent.get('gunicorn', 0) / max(len(samples), 1):.1f} ms, "
            f"PostgreSQL {1000 * spent.get('postgresql', 0) / max(len(samples), 1):.1f} ms"
        )
        if any(not sample.ok for sample in [*baseline, *samples]):
            for name in ("web", "worker"):  # the scratch folder holding them goes at the end
                print(f"--- {name} log (tail):\n{servers.log_tail(name)}")
    finally:
        servers.stop()
    print(f"queries by status: {json.dumps(statuses, sort_keys=True)}")
    if problems:
        print("BOOKS: " + "; ".join(problems[:20]))
    else:
        print(
            "books afterwards: every query released (charged and paid once) or failed with "
            "budget and price given back; spent epsilon equals the charges per dataset; the "
            "ledger reconciles; the audit log verifies"
        )
    if problems or not met:
        raise SystemExit(1)
