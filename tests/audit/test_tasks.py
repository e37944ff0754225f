"""Periodic checkpoints run through a real Celery worker (the beat entry points at them)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from django.conf import settings

from audit import chain
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import audit_record
from audit.tasks import audit_checkpoint_take


def test_the_beat_schedule_takes_periodic_checkpoints() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]
    assert entry["task"] == audit_checkpoint_take.name == "audit.tasks.audit_checkpoint_take"
    assert entry["schedule"] == 300


@pytest.mark.worker
def test_a_worker_signs_a_checkpoint_over_the_committed_log(worker) -> None:
    for i in range(3):
        audit_record(action="cleanroom.query.submitted", actor=None, subject=f"query:{i}")
    assert audit_checkpoint_take.delay().get(timeout=60) == 3
    checkpoint = AuditCheckpoint.objects.get()
    assert checkpoint.chain_head == AuditEvent.objects.get(seq=3).hash
    # The worker signs with the service's key file (not this test's temporary one).
    key_file = os.environ.get("CLEANROOM_AUDIT_KEY_FILE") or str(
        Path(settings.VAR_DIR) / "audit_key.pem"
    )
    public = chain.load_public_key(Path(key_file).read_bytes())
    body = chain.checkpoint_body(
        size=3,
        root=bytes.fromhex(checkpoint.root),
        chain_head=bytes.fromhex(checkpoint.chain_head),
        timestamp=checkpoint.timestamp,
    )
    assert chain.signature_is_valid(public, body, base64.b64decode(checkpoint.signature))
    assert audit_checkpoint_take.delay().get(timeout=60) == 3  # nothing new: no second checkpoint
    assert AuditCheckpoint.objects.count() == 1
