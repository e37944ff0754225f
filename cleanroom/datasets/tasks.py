"""Jobs of the pool: compaction after uploads, purge after an erasure request, retention."""

from __future__ import annotations

from celery import shared_task

from cleanroom.datasets.services import (
    contributions_expire,
    contributor_erase_run,
    pool_compact,
    pools_compact,
)


@shared_task(acks_late=True)
def pool_compact_task(dataset_pk: int) -> int:
    return pool_compact(dataset_pk=dataset_pk)


@shared_task(acks_late=True)
def contributor_erase_task(erasure_pk: int) -> bool:
    return contributor_erase_run(erasure_pk=erasure_pk)


@shared_task(acks_late=True)
def contributions_expire_task() -> int:
    return contributions_expire()


@shared_task(acks_late=True)
def pools_compact_task() -> int:
    return pools_compact()
