"""A worker SIGKILLed inside pool compaction, contributor erasure and an audit checkpoint
(each just before its transaction commits), on throwaway servers: the redelivered job
finishes the work once, nothing is half stored, the books balance and the log verifies.
(The query run's kill points, `query_charge.before_commit` among them, are in
tests/queries/test_worker_crash.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.faults.checks import ended_well
from tests.faults.conftest import ArmedWorker

pytestmark = [pytest.mark.worker, pytest.mark.slow]

SQL = "SELECT region, COUNT(*) AS n FROM households GROUP BY region"


def _segment_files_match(dataset: Any) -> None:
    """Every committed segment has its file and there is no file without a segment."""
    from cleanroom.datasets import storage
    from cleanroom.datasets.models import PoolSegment

    names = set(PoolSegment.objects.filter(dataset=dataset).values_list("file_name", flat=True))
    directory = storage.segment_path(f"{dataset.pk}/x").parent
    on_disk = {f"{dataset.pk}/{path.name}" for path in directory.iterdir()}
    assert on_disk == names


def _pool_rows(dataset: Any) -> dict[int, int]:
    from cleanroom.datasets.pool import pool_snapshot

    frame = pool_snapshot(dataset=dataset).frame.collect()
    counts = frame.group_by("contributor_id").len()
    return dict(zip(counts["contributor_id"].to_list(), counts["len"].to_list(), strict=True))


def _run_query(api: Any, user: Any, worker: ArmedWorker) -> None:
    from cleanroom.queries.models import Query

    response = api(user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": SQL, "epsilon": 0.5}, format="json"
    )
    assert response.status_code == 202, response.json()
    pk = response.json()["id"]
    wait_for(
        lambda: Query.objects.get(pk=pk).status in ("released", "failed"),
        60,
        "the query",
        worker.process,
    )
    assert Query.objects.get(pk=pk).status == "released", Query.objects.get(pk=pk).error


def test_worker_killed_during_pool_compaction(
    worker_on_servers: ArmedWorker,
    pool_dataset: Any,
    business_user: Any,
    api: Any,
    tmp_path: Path,
) -> None:
    from cleanroom.datasets.models import Contribution
    from cleanroom.datasets.tasks import pool_compact_task

    dataset = pool_dataset(contributors=6, rows=3)
    marker = tmp_path / "crashed"
    worker_on_servers.arm(at="pool.compact.before_commit", marker=str(marker))
    pool_compact_task.delay(dataset.pk)  # what beat (or the 32nd upload) queues
    worker_on_servers.killed_then_restarted(marker, "the kill inside compaction")
    wait_for(
        lambda: not Contribution.objects.filter(dataset=dataset, is_compacted=False).exists(),
        60,
        "every upload to be compacted",
        worker_on_servers.process,
    )
    assert marker.read_text() == "pool.compact.before_commit"
    # Every contributor's rows exactly once, in segments whose files all exist.
    rows = _pool_rows(dataset)
    assert sorted(rows.values()) == [3] * 6
    assert Contribution.objects.filter(dataset=dataset).count() == 6
    _segment_files_match(dataset)
    _run_query(api, business_user, worker_on_servers)
    assert ended_well() == []


def test_worker_killed_during_contributor_erasure(
    worker_on_servers: ArmedWorker,
    pool_dataset: Any,
    make_contributor: Any,
    tmp_path: Path,
) -> None:
    from audit.models import AuditEvent
    from cleanroom.datasets.models import Contribution, Erasure
    from cleanroom.datasets.services import contributor_erase_request, pool_compact

    dataset = pool_dataset(contributors=6, rows=3)
    pool_compact(dataset_pk=dataset.pk)  # the rows to purge are in pool segments
    leaving = make_contributor("did:example:households-2")
    marker = tmp_path / "crashed"
    worker_on_servers.arm(at="erasure.purge.before_commit", marker=str(marker))
    erasure = contributor_erase_request(contributor=leaving)
    worker_on_servers.killed_then_restarted(marker, "the kill inside the erasure")
    wait_for(
        lambda: Erasure.objects.get(pk=erasure.pk).status == Erasure.Status.DONE,
        60,
        "the erasure to finish",
        worker_on_servers.process,
    )
    rows = _pool_rows(dataset)
    assert leaving.pk not in rows
    assert sorted(rows.values()) == [3] * 5  # everyone else's rows, each once
    assert not Contribution.objects.filter(contributor=leaving).exists()
    assert Erasure.objects.get(pk=erasure.pk).rows_removed == 1
    purged = AuditEvent.objects.filter(
        action="cleanroom.contributor.erased", subject=f"contributor:{leaving.pk}"
    )
    assert sorted(event.payload["stage"] for event in purged) == ["purged", "requested"]
    _segment_files_match(dataset)
    assert ended_well() == []


def test_worker_killed_during_an_audit_checkpoint(
    worker_on_servers: ArmedWorker,
    pool_dataset: Any,
    tmp_path: Path,
) -> None:
    from audit.models import AuditCheckpoint, AuditEvent
    from audit.selectors import log_verify
    from audit.tasks import audit_checkpoint_take
    from tests.conftest import _worker_busy

    pool_dataset(contributors=5)
    wait_for(lambda: not _worker_busy(), 60, "the worker to be idle", worker_on_servers.process)
    before = AuditCheckpoint.objects.count()
    marker = tmp_path / "crashed"
    worker_on_servers.arm(at="audit.checkpoint.before_commit", marker=str(marker))
    audit_checkpoint_take.delay()
    worker_on_servers.killed_then_restarted(marker, "the kill inside the checkpoint")
    size = AuditEvent.objects.count()
    wait_for(
        lambda: AuditCheckpoint.objects.filter(tree_size=size).exists(),
        60,
        "the checkpoint to be signed",
        worker_on_servers.process,
    )
    assert AuditCheckpoint.objects.filter(tree_size=size).count() == 1
    assert AuditCheckpoint.objects.count() == before + 1
    report = log_verify()
    assert report.ok and report.entries == size, report
    assert ended_well() == []
