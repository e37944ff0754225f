"""A real worker SIGKILLed at named points of a query run; the job is redelivered.

Whatever the point, the budget is charged once, the business pays once, one result is
released: a run killed after its charge (whose numbers nobody saw) is run again under
that same charge by the attempt that takes the silent query over (issue 11, defect 6).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit.models import AuditEvent
from audit.selectors import log_verify
from cleanroom.queries.models import BudgetCharge, Query, QueryPool
from payouts.reconcile import ledger_reconcile
from tests.conftest import WorkerProcess
from tests.conftest import restore_unacked as _restore_unacked
from tests.conftest import wait_for as _wait
from tests.queries.conftest import submit_until_the_worker_dies

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture(scope="module")
def armed_worker(
    celery_worker_process: WorkerProcess, tmp_path_factory: Any
) -> Iterator[tuple[WorkerProcess, Path]]:
    celery_worker_process.stop()  # only the armed worker may take the jobs
    plan = tmp_path_factory.mktemp("query-crash") / "plan.json"
    plan.write_text("{}")
    worker = WorkerProcess(
        extra_env={
            "CLEANROOM_CRASH_PLAN": str(plan),
            "CELERY_VISIBILITY_TIMEOUT": "2",
            "CELERY_TASK_TIME_LIMIT": "6",
            "CELERY_TASK_SOFT_TIME_LIMIT": "5",
            "CLEANROOM_QUERY_HEARTBEAT_SECONDS": "0.5",
            "CLEANROOM_QUERY_DEAD_AFTER_SECONDS": "3",
        }
    )
    worker.start()
    yield worker, plan
    worker.stop()


@pytest.mark.parametrize(
    ("point", "final", "charged"),
    [
        ("queries.execute.after_claim", "released", True),
        ("queries.execute.after_charge", "released", True),
        ("query_charge.before_commit", "released", True),
        ("queries.execute.after_release", "released", True),
    ],
)
def test_killed_worker_charges_once_and_releases_once(
    point: str,
    final: str,
    charged: bool,
    transactional_db: Any,
    pool_dataset: Any,
    business_user: Any,
    api: Any,
    armed_worker: tuple[WorkerProcess, Path],
    tmp_path: Path,
) -> None:
    from payouts.models import Distribution

    worker, plan = armed_worker
    if worker.process is None or worker.process.poll() is not None:
        worker.start()
    dataset = pool_dataset()
    marker = tmp_path / "crashed"
    try:
        pk = submit_until_the_worker_dies(
            api=api, user=business_user, worker=worker, plan=plan, point=point, marker=marker
        )
        _restore_unacked()
        worker.start()
        _wait(
            lambda: Query.objects.get(pk=pk).status in ("released", "failed"),
            60,
            f"query {pk} to end",
            worker,
        )
    finally:
        plan.write_text("{}")
    query = Query.objects.get(pk=pk)
    assert query.status == final, query.error
    assert marker.read_text() == point
    assert BudgetCharge.objects.get(query_id=pk).state == ("charged" if charged else "refunded")
    assert QueryPool.objects.filter(query_id=pk).count() == 1
    dataset.refresh_from_db()
    assert str(dataset.spent_epsilon) in ("0.500000000000", "0.5")
    assert AuditEvent.objects.filter(
        subject=f"query:{pk}", action="cleanroom.query.released"
    ).count() == (1 if final == "released" else 0)
    # A mechanism that ran is paid for exactly once, released or not (contributors bore it).
    assert Distribution.objects.filter(query_id=pk).count() == (1 if charged else 0)
    assert query.result is not None and len(query.result["rows"]) == 4
    assert (
        AuditEvent.objects.filter(subject=f"query:{pk}", action="cleanroom.budget.charged").count()
        == 1
    )
    report = ledger_reconcile()
    assert report.ok, report.problems
    audit = log_verify()  # the audit log too: nothing half-written by the killed run
    assert audit.ok, (audit.first_bad_entry, audit.reason)
