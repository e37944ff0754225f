"""Jobs of the pool: compaction after uploads, purge after an erasure request, retention."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from cleanroom.datasets.services import (
    contributions_expire,
    contributor_erase_run,
    erasures_resume,
    pool_compact,
    pools_compact,
)

# Failures worth another try: the database or a segment file was briefly unavailable.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, OSError)


@shared_task(acks_late=True)
def pool_compact_task(dataset_pk: int) -> int:
    return pool_compact(dataset_pk=dataset_pk)


# Until the purge runs, the contributor's rows stay readable (with the KEK) in the
# compacted segments, so a transient failure is retried with backoff (about 1, 2, 4 ...
# 120 s, jittered; under 10 minutes in all); past that, or after any other error, the
# reaper (``erasures_resume_task``, a beat entry) queues the erasure again.
@shared_task(
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def contributor_erase_task(erasure_pk: int) -> bool:
    return contributor_erase_run(erasure_pk=erasure_pk)


@shared_task(acks_late=True)
def erasures_resume_task(older_than_seconds: int | None = None) -> int:
    """The reaper: queue the purge again for erasures stuck pending."""
    if older_than_seconds is None:
        return erasures_resume()
    from datetime import timedelta

    return erasures_resume(older_than=timedelta(seconds=older_than_seconds))


@shared_task(acks_late=True)
def contributions_expire_task() -> int:
    return contributions_expire()


@shared_task(acks_late=True)
def pools_compact_task() -> int:
    return pools_compact()
