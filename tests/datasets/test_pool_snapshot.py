"""pool_snapshot: the one reader of the pool, and who is in it."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from cleanroom.datasets.models import Contribution, PoolSegment
from cleanroom.datasets.pool import pool_snapshot
from cleanroom.datasets.selectors import pool_size
from cleanroom.datasets.services import (
    SMALL_SEGMENTS_MAX,
    consent_give,
    consent_withdraw,
    contributor_erase_request,
    dataset_update,
    pool_compact,
)
from tests.datasets.conftest import record

SCHEMA = pl.Schema(
    {
        "contributor_id": pl.Int64,
        "age": pl.Int64,
        "region": pl.String,
        "income": pl.Float64,
        "household_size": pl.Int64,
        "owns_home": pl.Boolean,
    }
)


def rows_of(snapshot: Any) -> list[tuple[Any, ...]]:
    return sorted(snapshot.frame.collect().rows())


def test_empty_pool(dataset: Any) -> None:
    snapshot = pool_snapshot(dataset=dataset)
    assert snapshot.size == 0
    assert snapshot.members.dtype == np.int64 and snapshot.members.tolist() == []
    assert snapshot.frame.collect_schema() == SCHEMA
    assert snapshot.frame.collect().height == 0


def test_rows_of_consented_contributors_with_opaque_ids(
    dataset: Any, consented: Any, upload: Any
) -> None:
    first, second = consented(), consented()
    upload(first, dataset, [record(age=30), record(age=31)])
    upload(second, dataset, [record(age=40, region="east", owns_home=False)])

    snapshot = pool_snapshot(dataset=dataset)

    assert isinstance(snapshot.frame, pl.LazyFrame)
    assert snapshot.frame.collect_schema() == SCHEMA
    assert snapshot.members.tolist() == sorted([first.pk, second.pk])
    assert snapshot.size == 2 == pool_size(dataset=dataset)
    assert rows_of(snapshot) == sorted(
        [
            (first.pk, 30, "north", 41250.5, 3, True),
            (first.pk, 31, "north", 41250.5, 3, True),
            (second.pk, 40, "east", 41250.5, 3, False),
        ]
    )
    assert "did:" not in str(snapshot.frame.collect().to_dicts())


def test_compacted_and_waiting_uploads_are_each_read_once(
    dataset: Any, consented: Any, upload: Any
) -> None:
    first, second = consented(), consented()
    upload(first, dataset, [record(age=30)])
    assert pool_compact(dataset_pk=dataset.pk) == 1
    assert pool_compact(dataset_pk=dataset.pk) == 0  # nothing left: a redelivery is a no-op
    upload(second, dataset, [record(age=50)])
    upload(first, dataset, [record(age=33)])

    assert Contribution.objects.filter(is_compacted=False).count() == 2
    before = rows_of(pool_snapshot(dataset=dataset))
    assert [row[:2] for row in before] == sorted([(first.pk, 30), (first.pk, 33), (second.pk, 50)])
    pool_compact(dataset_pk=dataset.pk)
    assert Contribution.objects.filter(is_compacted=False).count() == 0
    assert rows_of(pool_snapshot(dataset=dataset)) == before


def test_small_segments_are_merged(dataset: Any, consented: Any, upload: Any) -> None:
    people = [consented() for _ in range(SMALL_SEGMENTS_MAX + 1)]
    for index, person in enumerate(people):
        upload(person, dataset, [record(age=20 + index)])
        pool_compact(dataset_pk=dataset.pk)
    assert PoolSegment.objects.count() == 1
    segment = PoolSegment.objects.get()
    assert (segment.rows, segment.contributors) == (len(people), len(people))
    snapshot = pool_snapshot(dataset=dataset)
    assert snapshot.members.tolist() == sorted(p.pk for p in people)
    assert sorted(r[1] for r in rows_of(snapshot)) == list(range(20, 20 + len(people)))


def test_withdrawal_excludes_from_the_next_snapshot(
    dataset: Any, consented: Any, upload: Any
) -> None:
    stays, leaves = consented(), consented()
    upload(stays, dataset, [record(age=30)])
    upload(leaves, dataset, [record(age=60), record(age=61)])
    pool_compact(dataset_pk=dataset.pk)

    consent_withdraw(contributor=leaves, dataset=dataset)

    snapshot = pool_snapshot(dataset=dataset)
    assert snapshot.members.tolist() == [stays.pk]
    assert [row[:2] for row in rows_of(snapshot)] == [(stays.pk, 30)]
    assert pool_size(dataset=dataset) == 1

    consent_give(contributor=leaves, dataset=dataset)  # rejoining brings the rows back
    assert pool_snapshot(dataset=dataset).members.tolist() == sorted([stays.pk, leaves.pk])


def test_outdated_consent_is_excluded_until_renewed(
    dataset: Any, consented: Any, upload: Any, compliance_user: Any
) -> None:
    renews, lapses = consented(), consented()
    upload(renews, dataset, [record()])
    upload(lapses, dataset, [record()])
    dataset_update(actor=compliance_user, dataset=dataset, changes={"purpose": "New terms"})

    assert pool_snapshot(dataset=dataset).size == 0
    consent_give(contributor=renews, dataset=dataset)
    snapshot = pool_snapshot(dataset=dataset)
    assert snapshot.members.tolist() == [renews.pk]
    assert [row[0] for row in rows_of(snapshot)] == [renews.pk]


def test_erasure_excludes_at_once_before_the_job_runs(
    dataset: Any, consented: Any, upload: Any
) -> None:
    stays, erased = consented(), consented()
    upload(stays, dataset, [record()])
    upload(erased, dataset, [record()])
    pool_compact(dataset_pk=dataset.pk)
    upload(erased, dataset, [record(age=77)])  # one waiting, one compacted

    contributor_erase_request(contributor=erased)

    snapshot = pool_snapshot(dataset=dataset)
    assert snapshot.members.tolist() == [stays.pk]
    assert [row[0] for row in rows_of(snapshot)] == [stays.pk]


def test_datasets_do_not_mix(dataset: Any, make_dataset: Any, consented: Any, upload: Any) -> None:
    other = make_dataset(slug="commutes", name="Commutes")
    person = consented()
    consent_give(contributor=person, dataset=other)
    upload(person, dataset, [record(age=30)])
    upload(person, other, [record(age=40), record(age=41)])
    assert [r[1] for r in rows_of(pool_snapshot(dataset=dataset))] == [30]
    assert [r[1] for r in rows_of(pool_snapshot(dataset=other))] == [40, 41]
