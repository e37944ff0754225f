"""Celery tasks of queries: a few lines around the idempotent ``query_execute`` service."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from cleanroom.queries.services import query_execute


@shared_task(
    name="cleanroom.queries.execute",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def query_execute_task(query_id: int) -> None:
    """Run one query; a redelivery or retry never runs the mechanism twice."""
    query_execute(query_id=int(query_id))
