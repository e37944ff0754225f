"""The Celery application: `celery -A cleanroom worker` / `celery -A cleanroom beat`."""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cleanroom.settings")

app = Celery("cleanroom")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _yield_the_cpu_to_requests(**_: Any) -> None:
    """Batch work (query runs, compaction, erasure, checkpoints) runs below web requests'
    CPU priority, so a query run never slows the pages people are waiting for; its pool
    processes inherit this. CLEANROOM_WORKER_NICE (default 10; 0 leaves it as started)."""
    from django.conf import settings

    increment = int(settings.CLEANROOM_WORKER_NICE)
    if increment > 0 and hasattr(os, "nice"):
        os.nice(increment)
