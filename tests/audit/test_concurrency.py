"""Many writers at once never fork the chain: appends are serialized in the database."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import log_verify
from audit.services import audit_record, checkpoint_create

THREADS = 8
PER_THREAD = 25


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_concurrent_appends_and_checkpoints_keep_one_chain(every_five) -> None:
    start = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                with transaction.atomic():
                    audit_record(
                        action="cleanroom.query.submitted",
                        actor=None,
                        subject=f"query:{number}",
                        payload={"i": i},
                    )
                if i % 10 == 0:
                    checkpoint_create()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    total = THREADS * PER_THREAD
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, total + 1)
    )
    assert (
        AuditEvent.objects.values("prev_hash").distinct().count() == total
    )  # no two events share a parent
    report = log_verify()
    assert (report.ok, report.entries, report.first_bad_entry) == (True, total, None), (
        report.problems
    )
    sizes = list(AuditCheckpoint.objects.values_list("tree_size", flat=True))
    # One checkpoint per size, none past the log, and one at every fifth event (the
    # on-demand ones fall anywhere in between).
    assert len(sizes) == len(set(sizes))
    assert all(1 <= size <= total for size in sizes)
    assert set(range(5, total + 1, 5)) <= set(sizes)
