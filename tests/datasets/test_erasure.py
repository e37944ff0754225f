"""DELETE /api/v1/me/data/: the key is destroyed at once and one job run purges every form."""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps

from audit.models import AuditEvent
from cleanroom.accounts.models import Contributor
from cleanroom.datasets import storage
from cleanroom.datasets.models import (
    Consent,
    Contribution,
    ContributorKey,
    Erasure,
    PoolSegment,
)
from cleanroom.datasets.pool import pool_snapshot
from cleanroom.datasets.services import contributor_erase_run
from cleanroom.datasets.tasks import pools_compact_task
from tests.conftest import wait_for
from tests.datasets.conftest import record

UPLOAD = "/api/v1/datasets/households/contributions/"


def payouts_row_counts() -> dict[str, int]:
    """Rows of every payouts table: erasure must leave the earnings history alone."""
    return {
        model.__name__: model._default_manager.count()
        for model in apps.get_app_config("payouts").get_models()
    }


def all_compacted() -> bool:
    return not Contribution.objects.filter(is_compacted=False).exists()


def ids_in(segment: PoolSegment) -> set[int]:
    frame = storage.segment_decrypt(
        dataset_pk=segment.dataset_id,
        kek_id=segment.kek_id,
        wrapped_key=segment.wrapped_key,
        file_name=segment.file_name,
    )
    return set(frame.get_column("contributor_id").to_list())


def segment_ids(dataset: Any) -> set[int]:
    ids: set[int] = set()
    for segment in PoolSegment.objects.filter(dataset=dataset):
        ids |= ids_in(segment)
    return ids


def test_erasure_purges_every_stored_form_in_one_job(
    worker: Any, api: Any, dataset: Any, make_dataset: Any, consented: Any
) -> None:
    other = make_dataset(slug="commutes", name="Commutes")
    stays, erased = consented(), consented()
    api(erased.user).post("/api/v1/datasets/commutes/consent/")
    for person in (stays, erased):
        response = api(person.user).post(
            UPLOAD, {"records": [record(), record(age=50)]}, format="json"
        )
        assert response.status_code == 201
    assert (
        api(erased.user)
        .post("/api/v1/datasets/commutes/contributions/", {"records": [record()]}, format="json")
        .status_code
        == 201
    )
    pools_compact_task.delay()  # the periodic job, through the real worker
    wait_for(all_compacted, what="compaction by the worker")
    assert segment_ids(dataset) == {stays.pk, erased.pk}
    assert segment_ids(other) == {erased.pk}
    old_files = [
        storage.segment_path(s.file_name)
        for s in PoolSegment.objects.all()
        if erased.pk in ids_in(s)
    ]
    assert len(old_files) >= 2
    assert all(path.exists() for path in old_files)

    payouts_rows = payouts_row_counts()
    response = api(erased.user).delete("/api/v1/me/data/")

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    # At once, before the job: key destroyed, consents closed, out of the pool.
    key = ContributorKey.objects.get(contributor=erased)
    assert key.wrapped is None and key.destroyed_at is not None
    assert not Consent.objects.filter(contributor=erased, withdrawn_at__isnull=True).exists()
    assert pool_snapshot(dataset=dataset).members.tolist() == [stays.pk]

    wait_for(
        lambda: Erasure.objects.get(contributor=erased).status == Erasure.Status.DONE,
        what="the erasure job",
    )

    assert not Contribution.objects.filter(contributor=erased).exists()
    assert segment_ids(dataset) == {stays.pk}
    assert segment_ids(other) == set()
    assert [path for path in old_files if path.exists()] == []
    for ds in (dataset, other):
        directory = storage.segment_path(f"{ds.pk}/x").parent
        on_disk = (
            {f"{ds.pk}/{p.name}" for p in directory.iterdir()} if directory.exists() else set()
        )
        assert on_disk == set(
            PoolSegment.objects.filter(dataset=ds).values_list("file_name", flat=True)
        )
    snapshot = pool_snapshot(dataset=dataset)
    assert snapshot.members.tolist() == [stays.pk]
    assert sorted(r[1] for r in snapshot.frame.collect().rows()) == [34, 50]
    erasure = Erasure.objects.get(contributor=erased)
    assert erasure.rows_removed == 2 and erasure.completed_at is not None
    # The account stays (earnings history hangs off it); only the data is gone.
    assert Contributor.objects.filter(pk=erased.pk).exists()
    assert payouts_row_counts() == payouts_rows
    stages = [
        e.payload["stage"]
        for e in AuditEvent.objects.filter(
            action="cleanroom.contributor.erased", subject=f"contributor:{erased.pk}"
        ).order_by("pk")
    ]
    assert stages == ["requested", "purged"]
    export = api(erased.user).get("/api/v1/me/export/")
    assert json.loads(b"".join(export.streaming_content))["contributions"] == []
    # A redelivered job does nothing.
    assert contributor_erase_run(erasure_pk=erasure.pk) is False


def test_erasure_request_is_idempotent_and_contributor_only(
    api: Any, dataset: Any, consented: Any, business_user: Any
) -> None:
    person = consented()
    first = api(person.user).delete("/api/v1/me/data/")
    second = api(person.user).delete("/api/v1/me/data/")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert Erasure.objects.count() == 1
    assert api(business_user).delete("/api/v1/me/data/").status_code == 403


def test_after_erasure_a_contributor_can_start_over(
    api: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    person = consented()
    upload(person, dataset, [record(age=30)])
    erasure = api(person.user).delete("/api/v1/me/data/").json()
    contributor_erase_run(erasure_pk=erasure["id"])

    assert api(person.user).post("/api/v1/datasets/households/consent/").status_code == 201
    upload(person, dataset, [record(age=45)])
    key = ContributorKey.objects.get(contributor=person)
    assert key.wrapped is not None and key.destroyed_at is None
    assert [r[1] for r in pool_snapshot(dataset=dataset).frame.collect().rows()] == [45]
