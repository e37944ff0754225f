"""Named crash points for the exactly-once tests: SIGKILL the worker at a chosen place.

Active only in a test worker (``CLEANROOM_TEST_WORKER=1``) whose environment names the
point (``CLEANROOM_CRASH_AT``). ``CLEANROOM_CRASH_MARKER`` is a file created just before
dying, so the point fires once and the redelivered task runs through.
``CLEANROOM_CRASH_SCOPE=worker`` (default) kills the whole worker process group, as a
lost machine would (the message stays unacked until the broker redelivers it);
``child`` kills only the pool process (the parent rejects and requeues the message).
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "query_charge.before_commit",
    "settlement.batch.before_commit",
    "settlement.after_commit_before_ack",
    "payout.after_provider_call",
    "payout.after_commit_before_ack",
)


def crash_point(name: str) -> None:
    if (
        os.environ.get("CLEANROOM_TEST_WORKER") != "1"
        or os.environ.get("CLEANROOM_CRASH_AT") != name
    ):
        return
    marker = os.environ.get("CLEANROOM_CRASH_MARKER", "")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, name.encode())
        os.fsync(fd)
        os.close(fd)
    if os.environ.get("CLEANROOM_CRASH_SCOPE", "worker") == "worker":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
