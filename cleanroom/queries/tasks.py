"""Celery tasks of queries: a few lines around the idempotent ``query_execute`` service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from cleanroom.queries.services import query_execute


@shared_task(
    bind=True,
    name="cleanroom.queries.execute",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def query_execute_task(self: Any, query_id: int) -> None:
    """Run one query; a redelivery or retry never runs the mechanism twice."""
    look_again = query_execute(query_id=int(query_id))
    if look_again is not None:
        # A run that took the mechanism may still be alive: check once it cannot be.
        raise self.retry(countdown=max(1.0, look_again) + 1, max_retries=None)
