"""Retention: uploads older than the dataset's retention leave every stored form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from audit.models import AuditEvent
from cleanroom.datasets import storage
from cleanroom.datasets.models import Contribution, PoolSegment
from cleanroom.datasets.pool import pool_snapshot
from cleanroom.datasets.services import contributions_expire, pool_compact
from tests.datasets.conftest import record


def test_expired_uploads_leave_contributions_and_segments(
    dataset: Any, consented: Any, upload: Any
) -> None:
    person, other = consented(), consented()
    old = upload(person, dataset, [record(age=30), record(age=31)])
    upload(other, dataset, [record(age=50)])
    pool_compact(dataset_pk=dataset.pk)
    Contribution.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=366))
    upload(person, dataset, [record(age=40)])  # newer upload of the same person stays
    pool_compact(dataset_pk=dataset.pk)
    before_files = [
        storage.segment_path(n) for n in PoolSegment.objects.values_list("file_name", flat=True)
    ]

    assert contributions_expire() == 1
    assert contributions_expire() == 0

    assert not Contribution.objects.filter(pk=old.pk).exists()
    snapshot = pool_snapshot(dataset=dataset)
    assert sorted((r[0], r[1]) for r in snapshot.frame.collect().rows()) == sorted(
        [(person.pk, 40), (other.pk, 50)]
    )
    for segment in PoolSegment.objects.all():
        frame = storage.segment_decrypt(
            dataset_pk=dataset.pk,
            kek_id=segment.kek_id,
            wrapped_key=segment.wrapped_key,
            file_name=segment.file_name,
        )
        assert old.pk not in frame.get_column(storage.PROVENANCE).to_list()
    assert any(not path.exists() for path in before_files)
    event = AuditEvent.objects.get(action="cleanroom.contribution.expired")
    assert event.payload == {"contributions": 1, "retention_days": 365}


def test_nothing_expires_within_retention(dataset: Any, consented: Any, upload: Any) -> None:
    upload(consented(), dataset, [record()])
    assert contributions_expire(now=timezone.now() + timedelta(days=364)) == 0
    assert Contribution.objects.count() == 1
