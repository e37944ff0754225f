"""Uploads are compacted in batches: a job is queued once enough wait, and periodically."""

from __future__ import annotations

from typing import Any

from cleanroom.datasets import services
from cleanroom.datasets.models import Contribution, PoolSegment
from cleanroom.datasets.services import contribution_upload, pools_compact
from tests.datasets.conftest import record


def test_a_job_is_queued_once_enough_uploads_wait(
    dataset: Any, consented: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr(services, "COMPACT_AFTER_UPLOADS", 3)
    people = [consented() for _ in range(3)]
    queued = []
    monkeypatch.setattr(
        "cleanroom.datasets.tasks.pool_compact_task.delay", lambda pk: queued.append(pk)
    )
    for person in people[:2]:
        with django_capture_on_commit_callbacks(execute=True):
            contribution_upload(contributor=person, dataset=dataset, records=[record()])
    assert queued == []
    with django_capture_on_commit_callbacks(execute=True):
        contribution_upload(contributor=people[2], dataset=dataset, records=[record()])
    assert queued == [dataset.pk]


def test_a_large_upload_queues_a_job_at_once(
    dataset: Any, consented: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr(services, "COMPACT_AFTER_ROWS", 5)
    queued = []
    monkeypatch.setattr(
        "cleanroom.datasets.tasks.pool_compact_task.delay", lambda pk: queued.append(pk)
    )
    with django_capture_on_commit_callbacks(execute=True):
        contribution_upload(contributor=consented(), dataset=dataset, records=[record()] * 5)
    assert queued == [dataset.pk]


def test_the_periodic_job_compacts_every_dataset(
    dataset: Any, make_dataset: Any, consented: Any, upload: Any
) -> None:
    from cleanroom.datasets.services import consent_give

    other = make_dataset(slug="commutes", name="Commutes")
    person = consented()
    consent_give(contributor=person, dataset=other)
    upload(person, dataset, [record()])
    upload(person, other, [record(), record()])

    assert pools_compact() == 3
    assert pools_compact() == 0
    assert not Contribution.objects.filter(is_compacted=False).exists()
    assert sorted(PoolSegment.objects.values_list("rows", flat=True)) == [1, 2]
