"""The database itself refuses to change or remove audit rows."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditCheckpoint, AuditEvent, AuditNode
from audit.services import checkpoint_create

pytestmark = pytest.mark.django_db


def test_updates_and_deletes_are_refused_by_the_database(make_log) -> None:
    make_log(3)
    checkpoint_create()
    snapshot = list(AuditEvent.objects.order_by("seq").values_list("seq", "payload", "hash"))
    attempts = [
        lambda: AuditEvent.objects.filter(seq=2).update(payload={"forged": True}),
        lambda: AuditEvent.objects.filter(seq=2).delete(),
        lambda: AuditEvent.objects.filter(seq=3).delete(),
        lambda: AuditCheckpoint.objects.update(root="0" * 64),
        lambda: AuditNode.objects.filter(level=0).update(hash=b"\x00" * 32),
        lambda: AuditNode.objects.filter(level=1).delete(),
    ]
    if connection.vendor == "postgresql":
        attempts += [
            lambda: AuditEvent.objects.all().delete(),
            lambda: AuditEvent.objects.filter(seq=1).delete(),
            lambda: AuditCheckpoint.objects.all().delete(),
            lambda: AuditNode.objects.all().delete(),
        ]
    for attempt in attempts:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            attempt()
    assert (
        list(AuditEvent.objects.order_by("seq").values_list("seq", "payload", "hash")) == snapshot
    )
    assert AuditCheckpoint.objects.count() == 1
    assert AuditNode.objects.count() == 4  # three leaves and the subtree over the first two


def test_seq_is_unique_in_the_database(make_log) -> None:
    (event,) = make_log(1)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.create(
            seq=event.seq, action="x.y", entry="{}", prev_hash="0" * 64, hash="0" * 64
        )


def test_on_sqlite_only_the_oldest_row_can_go_and_the_verifier_notices(make_log) -> None:
    """SQLite cannot tell a table wipe (test teardown) from a row delete, so it lets the
    oldest remaining row go; the chain then starts at 2 and verification names entry 1."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's rule")
    from audit.selectors import log_verify

    make_log(3)
    AuditEvent.objects.filter(seq=1).delete()
    report = log_verify()
    assert (report.ok, report.first_bad_entry) == (False, 1)
