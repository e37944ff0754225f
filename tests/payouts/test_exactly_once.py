"""Exactly once, even when workers die: a real Celery worker is SIGKILLed at named points
(inside the settlement's batch transaction, after its commit but before the ack, after the
bank accepted a payout but before we recorded it, after a payout task committed), the task
is redelivered, and every query is charged once, every contributor paid once, and the
ledger reconciles to the unit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from payouts.models import (
    Distribution,
    FakeBankTransfer,
    JournalEntry,
    Payout,
    Posting,
    Settlement,
)
from payouts.reconcile import ledger_reconcile
from payouts.services import business_account, payout_destination_set, query_charge
from tests.conftest import WorkerProcess
from tests.conftest import restore_unacked as _restore_unacked
from tests.conftest import wait_for as _wait
from tests.payouts.conftest import members

pytestmark = [pytest.mark.worker, pytest.mark.slow]

IBAN = "DE89 3704 0044 0532 0130 00"


def _all_paid() -> bool:
    return (
        Settlement.objects.filter(status="completed").exists()
        and Payout.objects.count() == 4
        and not Payout.objects.exclude(status="paid").exists()
    )


@pytest.fixture
def committed(
    transactional_db: Any,
    funded: Any,
    make_dataset: Any,
    make_query: Any,
    make_contributor: Any,
) -> Any:
    people = [make_contributor() for _ in range(4)]
    for person in people:
        payout_destination_set(contributor=person, holder_name="A Person", iban=IBAN)
    dataset = make_dataset()
    pks = [p.pk for p in people]
    distributions = [
        query_charge(query=make_query(dataset, epsilon="0.5"), members=members(*pks)),
        query_charge(query=make_query(dataset, epsilon="0.2"), members=members(*pks[:2])),
        query_charge(query=make_query(dataset, epsilon="0.9"), members=members(*pks[1:])),
    ]
    expected: dict[int, int] = {}
    for distribution, pool in zip(distributions, (pks, pks[:2], pks[1:]), strict=True):
        for pk in pool:
            expected[pk] = expected.get(pk, 0) + distribution.share
    return funded, expected, sum(d.gross for d in distributions)


MATRIX = [
    ("settlement.batch.before_commit", "worker"),
    ("settlement.after_commit_before_ack", "worker"),
    ("payout.after_provider_call", "worker"),
    ("payout.after_commit_before_ack", "child"),
]


@pytest.fixture(scope="module")
def armed_worker(
    celery_worker_process: WorkerProcess, tmp_path_factory: Any
) -> Iterator[tuple[WorkerProcess, Path]]:
    """One worker for the matrix whose crash plan each case rewrites (no restart between)."""
    celery_worker_process.stop()  # only the armed worker may take the tasks
    plan = tmp_path_factory.mktemp("crash") / "plan.json"
    plan.write_text("{}")
    worker = WorkerProcess(
        extra_env={"CLEANROOM_CRASH_PLAN": str(plan), "CELERY_VISIBILITY_TIMEOUT": "2"}
    )
    worker.start()
    yield worker, plan
    worker.stop()


@pytest.mark.parametrize(("point", "scope"), MATRIX, ids=[f"{p}-{s}" for p, s in MATRIX])
def test_killed_worker_charges_and_pays_exactly_once(
    point: str,
    scope: str,
    committed: Any,
    armed_worker: tuple[WorkerProcess, Path],
    tmp_path: Path,
) -> None:
    from payouts.tasks import settlement_run

    organization, expected, charged = committed
    worker, plan = armed_worker
    if worker.process is None or worker.process.poll() is not None:
        worker.start()
    marker = tmp_path / "crashed"
    plan.write_text(json.dumps({"at": point, "scope": scope, "marker": str(marker)}))
    try:
        settlement_run.delay()
        _wait(marker.exists, 60, f"the crash at {point}", worker)
        if scope == "worker":
            assert worker.process is not None
            worker.process.wait(timeout=30)  # the whole worker is gone, its task unacked
            _restore_unacked()
            worker.start()
        _wait(_all_paid, 90, "every payout to be paid", worker)
    finally:
        plan.write_text("{}")

    assert marker.read_text() == point
    # Every query charged once.
    assert Distribution.objects.count() == 3
    assert JournalEntry.objects.filter(kind="query_charge").count() == 3
    assert business_account(organization=organization).balance == 100_000_000 - charged
    # One settlement, one line per contributor, each exactly their shares.
    settlement = Settlement.objects.get()
    lines = dict(
        Posting.objects.filter(
            entry__settlement=settlement, contributor_pk__isnull=False
        ).values_list("contributor_pk", "amount")
    )
    assert lines == expected
    # Every contributor paid once, by the bank too.
    paid = dict(Payout.objects.values_list("contributor_id", "amount"))
    assert paid == expected
    assert FakeBankTransfer.objects.count() == 4
    assert dict(FakeBankTransfer.objects.values_list("idempotency_key", "amount")) == {
        f"settlement:{settlement.pk}:contributor:{pk}": amount for pk, amount in expected.items()
    }
    report = ledger_reconcile()
    assert report.ok, report.problems
