"""A dead worker is noticed within a minute, with the shipped settings and no redelivery.

The worker runs beat inside it (``-B``, as ``scripts/run`` runs beat beside it) with the
default heartbeat (5 s), silence limit (20 s) and reaper period (15 s). It is SIGKILLed
after a query's charge; its message stays unacknowledged in Redis (whose visibility
timeout is an hour). A new worker's reaper notices the silent run and the query is
released, charged once, well within a minute of the kill (issue 11, defect 6).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.queries.models import BudgetCharge, Query, QueryPool
from payouts.reconcile import ledger_reconcile
from tests.conftest import WorkerProcess
from tests.conftest import wait_for as _wait
from tests.queries.conftest import submit_until_the_worker_dies

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture(scope="module")
def beat_worker(
    celery_worker_process: WorkerProcess, tmp_path_factory: Any
) -> Iterator[tuple[WorkerProcess, Path]]:
    celery_worker_process.stop()  # only this worker may take the jobs
    folder = tmp_path_factory.mktemp("heartbeat")
    plan = folder / "plan.json"
    plan.write_text("{}")
    worker = WorkerProcess(
        extra_env={"CLEANROOM_CRASH_PLAN": str(plan)},
        extra_args=["-B", "-s", str(folder / "beat-schedule")],
    )
    yield worker, plan
    worker.stop()


def test_query_of_a_killed_worker_is_released_within_a_minute(
    transactional_db: Any,
    pool_dataset: Any,
    business_user: Any,
    api: Any,
    beat_worker: tuple[WorkerProcess, Path],
    tmp_path: Path,
) -> None:
    from payouts.models import Distribution

    worker, plan = beat_worker
    worker.start()
    pool_dataset()
    marker = tmp_path / "crashed"
    point = "queries.execute.after_charge"
    try:
        pk = submit_until_the_worker_dies(
            api=api, user=business_user, worker=worker, plan=plan, point=point, marker=marker
        )
        killed_at = time.monotonic()
        worker.start()  # no restore_unacked: the message stays with the dead worker
        _wait(
            lambda: Query.objects.get(pk=pk).status in ("released", "failed"),
            90,
            f"query {pk} to end",
            worker,
        )
        noticed_after = time.monotonic() - killed_at
    finally:
        plan.write_text("{}")
    query = Query.objects.get(pk=pk)
    assert query.status == "released", query.error
    assert query.attempt == 2
    assert noticed_after < 60, f"released {noticed_after:.1f} s after the kill"
    print(f"released {noticed_after:.1f} s after the worker was killed")
    assert BudgetCharge.objects.get(query_id=pk).state == "charged"
    assert QueryPool.objects.filter(query_id=pk).count() == 1
    assert Distribution.objects.filter(query_id=pk).count() == 1
    assert (
        AuditEvent.objects.filter(subject=f"query:{pk}", action="cleanroom.query.released").count()
        == 1
    )
    report = ledger_reconcile()
    assert report.ok, report.problems
