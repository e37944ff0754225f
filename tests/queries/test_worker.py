"""Job paths through a real Celery worker process (never eager mode)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.queries.models import BudgetCharge, Query, QueryPool
from tests.conftest import wait_for as wait_until

pytestmark = pytest.mark.worker

SQL = "SELECT region, COUNT(*) AS n, AVG(income) AS mean_income FROM households GROUP BY region"


def wait_for(
    pk: int, statuses: tuple[str, ...] = ("released", "failed"), timeout: float = 60
) -> Query:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        query = Query.objects.get(pk=pk)
        if query.status in statuses:
            return query
        time.sleep(0.2)
    raise AssertionError(f"query {pk} is still {Query.objects.get(pk=pk).status}")


def test_submit_is_released_by_the_worker(
    worker: Any, pool_dataset: Any, business_user: Any, other_business_user: Any, api: Any
) -> None:
    pool_dataset()
    response = api(business_user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": SQL, "epsilon": 0.5}, format="json"
    )
    assert response.status_code == 202
    pk = response.json()["id"]
    query = wait_for(pk)
    assert query.status == "released", (query.error, worker.log_tail())
    body = api(business_user).get(f"/api/v1/queries/{pk}/").json()
    assert body["status"] == "released" and body["progress"] == 100
    assert body["result"]["columns"] == ["region", "n", "mean_income"]
    assert len(body["result"]["rows"]) == 4
    assert body["price"] == "6.500000"
    assert api(other_business_user).get(f"/api/v1/queries/{pk}/").status_code == 404
    from payouts.models import Distribution

    assert Distribution.objects.filter(query_id=pk).count() == 1


def test_approved_query_runs_and_duplicate_deliveries_run_it_once(
    worker: Any, pool_dataset: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    from cleanroom.queries.tasks import query_execute_task

    pool_dataset(policy={"auto_approve": False})
    pk = (
        api(business_user)
        .post(
            "/api/v1/queries/", {"dataset": "households", "sql": SQL, "epsilon": 0.5}, format="json"
        )
        .json()["id"]
    )
    time.sleep(1)
    assert Query.objects.get(pk=pk).status == "pending_approval"
    approved = api(compliance_user).post(
        f"/api/v1/queries/{pk}/approve/", {"reason": "ok"}, format="json"
    )
    assert approved.status_code == 200
    # Two more deliveries of the same job, as a broker redelivery would send.
    duplicates = [query_execute_task.delay(pk), query_execute_task.delay(pk)]
    query = wait_for(pk)
    assert query.status == "released", (query.error, worker.log_tail())
    # Poll until both duplicates have ended (run, or deferred by a retry), not a fixed
    # sleep(2): on a loaded machine they could still be queued and prove nothing.
    wait_until(
        lambda: all(d.state in ("SUCCESS", "RETRY", "FAILURE") for d in duplicates),
        timeout=60,
        what="the duplicate deliveries to end",
    )
    assert "FAILURE" not in [d.state for d in duplicates], worker.log_tail()
    assert QueryPool.objects.filter(query_id=pk).count() == 1
    assert BudgetCharge.objects.get(query_id=pk).state == "charged"
    assert (
        AuditEvent.objects.filter(subject=f"query:{pk}", action="cleanroom.query.released").count()
        == 1
    )
    assert (
        AuditEvent.objects.filter(subject=f"query:{pk}", action="cleanroom.query.running").count()
        == 1
    )
    from payouts.models import Distribution

    assert Distribution.objects.filter(query_id=pk).count() == 1
    assert Query.objects.get(pk=pk).result == query.result


def _niceness(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of proc(5): nice


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_worker_and_its_pool_run_below_the_web_tiers_cpu_priority(worker: Any) -> None:
    """Query runs, compaction and erasure yield the CPU to requests people wait for."""
    from django.conf import settings

    assert worker.process is not None
    main = worker.process.pid
    pool = [
        int(child)
        for task in Path(f"/proc/{main}/task").glob("*/children")
        for child in task.read_text().split()
    ]
    assert pool, "the worker has pool processes"
    expected = min(os.nice(0) + settings.CLEANROOM_WORKER_NICE, 19)
    assert settings.CLEANROOM_WORKER_NICE > 0
    assert [_niceness(pid) for pid in [main, *pool]] == [expected] * (1 + len(pool))
