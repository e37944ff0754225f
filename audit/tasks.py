"""Periodic checkpoints (Celery beat): a quiet log still gets its tail signed."""

from __future__ import annotations

from celery import shared_task

from audit.services import checkpoint_create


@shared_task(acks_late=True)
def audit_checkpoint_take() -> int | None:
    """Sign a checkpoint over whatever was appended since the last one (a no-op if nothing)."""
    checkpoint = checkpoint_create()
    return checkpoint.tree_size if checkpoint else None
