"""A failed purge job is not the end: retries (transient errors) and the reaper finish it.

Until the purge runs, the erased contributor's rows stay in compacted segments (encrypted
under segment keys, not under the destroyed data key), so ``pending`` must never be final.
Failures are injected in the real worker through ``cleanroom.datasets.faults``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from cleanroom.datasets.faults import fault_clear, fault_path, fault_set
from cleanroom.datasets.models import Contribution, Erasure, PoolSegment
from cleanroom.datasets.services import erasures_resume
from cleanroom.datasets.tasks import erasures_resume_task, pools_compact_task
from tests.conftest import _worker_busy, wait_for
from tests.datasets.conftest import record
from tests.datasets.test_erasure import all_compacted, segment_ids

POINT = "erasure.purge"


@pytest.fixture
def faults() -> Any:
    fault_clear(POINT)
    yield fault_set
    fault_clear(POINT)


def _compacted_pool(dataset: Any, consented: Any, upload: Any) -> tuple[Any, Any]:
    stays, erased = consented(), consented()
    upload(stays, dataset, [record()])
    upload(erased, dataset, [record(), record(age=60)])
    pools_compact_task.delay()
    wait_for(all_compacted, what="compaction by the worker")
    assert segment_ids(dataset) == {stays.pk, erased.pk}
    return stays, erased


def _purged_events(contributor: Any) -> int:
    return AuditEvent.objects.filter(
        action="cleanroom.contributor.erased",
        subject=f"contributor:{contributor.pk}",
        payload__stage="purged",
    ).count()


def test_transient_failures_are_retried_until_the_purge_completes(
    worker: Any, faults: Any, api: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    stays, erased = _compacted_pool(dataset, consented, upload)
    faults(POINT, count=2, kind="transient")

    assert api(erased.user).delete("/api/v1/me/data/").status_code == 202

    wait_for(
        lambda: Erasure.objects.get(contributor=erased).status == Erasure.Status.DONE,
        timeout=60,
        what="the erasure job after two failed attempts",
    )
    assert fault_path(POINT).read_text() == "0 transient"  # both injected failures happened
    erasure = Erasure.objects.get(contributor=erased)
    assert erasure.rows_removed == 1
    assert not Contribution.objects.filter(contributor=erased).exists()
    assert segment_ids(dataset) == {stays.pk}
    assert _purged_events(erased) == 1


def test_a_job_that_gave_up_is_completed_by_the_reaper(
    worker: Any, faults: Any, api: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    stays, erased = _compacted_pool(dataset, consented, upload)
    faults(POINT, count=1, kind="fatal")  # not a transient error: the job is not retried

    assert api(erased.user).delete("/api/v1/me/data/").status_code == 202
    wait_for(lambda: fault_path(POINT).read_text() == "0 fatal", what="the failing job")
    wait_for(lambda: not _worker_busy(), what="the worker to go idle")

    # The job failed: nothing purged yet, and the erasure is still pending.
    erasure = Erasure.objects.get(contributor=erased)
    assert erasure.status == Erasure.Status.PENDING
    assert Contribution.objects.filter(contributor=erased).count() == 1
    assert segment_ids(dataset) == {stays.pk, erased.pk}
    segments = PoolSegment.objects.count()
    # A fresh request is not stuck yet: the reaper leaves it to its own job's retries.
    assert erasures_resume() == 0
    assert PoolSegment.objects.count() == segments

    Erasure.objects.filter(pk=erasure.pk).update(
        requested_at=timezone.now() - timedelta(minutes=16)
    )
    erasures_resume_task.delay()  # the beat entry's task, through the real worker

    wait_for(
        lambda: Erasure.objects.get(pk=erasure.pk).status == Erasure.Status.DONE,
        what="the reaper's re-queued purge",
    )
    assert not Contribution.objects.filter(contributor=erased).exists()
    assert segment_ids(dataset) == {stays.pk}
    assert _purged_events(erased) == 1
    # Once done, the reaper has nothing left to do.
    assert erasures_resume(older_than=timedelta(0)) == 0
