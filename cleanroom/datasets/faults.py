"""Injected failures for the tests of the pool's jobs (retries and the erasure reaper).

Active only in a test worker (``CLEANROOM_TEST_WORKER=1``, set by tests/conftest.py),
never in production. A test writes ``"<count> <kind>"`` to the file
``VAR_DIR/faults/<database name>/<point>`` (the worker and the test share VAR_DIR and the
test database, so a running worker picks it up without a restart); the next ``count``
passes through ``fault_point(<point>)`` raise, then it runs through. ``kind`` is
``transient`` (a database ``OperationalError``, retried by the job) or ``fatal`` (a
``RuntimeError``, not retried: left to the reaper).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from django.conf import settings
from django.db import OperationalError

POINTS = ("erasure.purge",)


def fault_path(point: str) -> Path:
    return Path(settings.VAR_DIR) / "faults" / str(settings.DATABASES["default"]["NAME"]) / point


def fault_set(point: str, *, count: int, kind: str = "transient") -> None:
    """Make the next `count` passes through `point` fail (tests only)."""
    path = fault_path(point)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{count} {kind}")


def fault_clear(point: str) -> None:
    fault_path(point).unlink(missing_ok=True)


def fault_point(point: str) -> None:
    if os.environ.get("CLEANROOM_TEST_WORKER") != "1":
        return
    path = fault_path(point)
    if not path.exists():
        return
    with path.open("r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two pool processes: one decrement each
        count_text, _, kind = handle.read().partition(" ")
        count = int(count_text or 0)
        if count <= 0:
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"{count - 1} {kind}")
    if kind.strip() == "fatal":
        raise RuntimeError(f"injected failure at {point}")
    raise OperationalError(f"injected transient failure at {point}")
