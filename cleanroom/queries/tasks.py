"""Celery tasks of queries: a few lines around the idempotent services.

Also: when a worker (process) starts, the decrypted pool scratch files left in /dev/shm
by a worker killed mid-run are swept (``dp.scratch_sweep``) instead of waiting for the
next query.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init, worker_ready
from django.db import InterfaceError, OperationalError

from cleanroom.queries.services import queries_reap, query_execute

logger = logging.getLogger(__name__)


@worker_process_init.connect
@worker_ready.connect
def scratch_sweep_at_start(**_: Any) -> None:
    from cleanroom.queries import dp

    removed = dp.scratch_sweep()
    if removed:
        logger.warning("removed %s pool scratch files of dead workers", removed)


@shared_task(
    bind=True,
    name="cleanroom.queries.execute",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def query_execute_task(self: Any, query_id: int, attempt: int | None = None) -> None:
    """Run one query; a redelivery or retry never runs the mechanism twice."""
    look_again = query_execute(
        query_id=int(query_id), attempt=None if attempt is None else int(attempt)
    )
    if look_again is not None:
        # Another run of it shows signs of life: check again once it would be silent.
        raise self.retry(
            args=(query_id,),
            kwargs={"attempt": look_again.attempt},
            countdown=max(1.0, look_again.after) + 1,
            max_retries=None,
        )


@shared_task(name="cleanroom.queries.reap", acks_late=True)
def queries_reap_task() -> dict[str, int]:
    """Take over runs whose worker went silent; requeue queued queries whose task was lost."""
    return queries_reap()
