"""Named crash points for the exactly-once tests: SIGKILL the worker at a chosen place.

Active only in a test worker (``CLEANROOM_TEST_WORKER=1``). The plan comes from the
environment (``CLEANROOM_CRASH_AT``, ``CLEANROOM_CRASH_SCOPE``, ``CLEANROOM_CRASH_MARKER``)
or from a JSON file named by ``CLEANROOM_CRASH_PLAN`` (``{"at", "scope", "marker"}``), which
a test rewrites between cases without restarting the worker. The marker file is created
just before dying, so a point fires once and the redelivered task runs through.
Scope ``worker`` (default) kills the whole worker process group, as a lost machine would
(the message stays unacked until the broker redelivers it); ``child`` kills only the pool
process (the parent rejects and requeues the message). A plan with ``"sleep": seconds``
pauses there instead (every time; ``at`` may then name several points, comma-separated),
so a fault test can restart a server while work is known to be in flight there.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

POINTS = (
    "query_charge.before_commit",
    "settlement.batch.before_commit",
    "settlement.after_commit_before_ack",
    "payout.after_provider_call",
    "payout.after_commit_before_ack",
    # Kill points of the fault tests (tests/faults), each before its transaction commits,
    # and of the query runs (tests/queries/test_worker_crash.py).
    "pool.compact.before_commit",
    "erasure.purge.before_commit",
    "audit.checkpoint.before_commit",
    "queries.execute.after_claim",
    "queries.execute.after_charge",
    "queries.execute.after_release",
)


def _plan() -> dict[str, str]:
    path = os.environ.get("CLEANROOM_CRASH_PLAN", "")
    if path:
        try:
            plan = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in plan.items()} if isinstance(plan, dict) else {}
    return {
        "at": os.environ.get("CLEANROOM_CRASH_AT", ""),
        "scope": os.environ.get("CLEANROOM_CRASH_SCOPE", "worker"),
        "marker": os.environ.get("CLEANROOM_CRASH_MARKER", ""),
    }


def crash_point(name: str) -> None:
    if os.environ.get("CLEANROOM_TEST_WORKER") != "1":
        return
    plan = _plan()
    if name not in plan.get("at", "").split(","):
        return
    if plan.get("sleep"):
        time.sleep(float(plan["sleep"]))
        return
    marker = plan.get("marker", "")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, name.encode())
        os.fsync(fd)
        os.close(fd)
    if plan.get("scope", "worker") == "worker":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
