"""The throwaway PostgreSQL crashes and restarts while queries run, uploads stream and a
settlement is in progress; the throwaway Redis restarts with queued and running tasks.
Work in flight is paused at named points (the crash plan's ``sleep``) so the restart is
known to hit it. Each ends with every query released, nothing half stored, every
distribution settled once, the ledger reconciled and the audit log verifying."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.faults.checks import ended_well
from tests.faults.conftest import ArmedWorker, Servers, reconnect

pytestmark = [pytest.mark.worker, pytest.mark.slow]

SQL = "SELECT region, COUNT(*) AS n FROM households GROUP BY region"
IBAN = "DE89 3704 0044 0532 0130 00"
UPLOAD_ROWS = 20


def _submit(api: Any, user: Any) -> int:
    response = api(user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": SQL, "epsilon": 0.2}, format="json"
    )
    assert response.status_code == 202, response.json()
    return int(response.json()["id"])


def _all_ended(worker: ArmedWorker, timeout: float = 90) -> None:
    from cleanroom.queries.models import Query

    def ended() -> bool:
        try:
            return not Query.objects.exclude(status__in=("released", "failed")).exists()
        except Exception:  # the database is coming back
            reconnect()
            return False

    wait_for(ended, timeout, "every query to end", worker.process)


def _charged_and_paused(count: int) -> Any:
    from cleanroom.queries.models import BudgetCharge

    return lambda: BudgetCharge.objects.filter(state="charged").count() >= count


def test_postgres_restarted_while_queries_run_uploads_stream_and_a_settlement_runs(
    worker_on_servers: ArmedWorker,
    servers: Servers,
    pool_dataset: Any,
    business_user: Any,
    make_contributor: Any,
    api: Any,
) -> None:
    from django.db import connection

    from cleanroom.datasets.models import Contribution
    from cleanroom.datasets.services import consent_give
    from payouts.models import Distribution, Settlement
    from payouts.services import payout_destination_set
    from payouts.tasks import settlement_run
    from tests.queries.conftest import rows_for

    dataset = pool_dataset(contributors=6)
    for index in range(6):
        person = make_contributor(f"did:example:households-{index}")
        payout_destination_set(contributor=person, holder_name="A Person", iban=IBAN)
    done = [_submit(api, business_user) for _ in range(2)]
    _all_ended(worker_on_servers)  # their distributions are what the settlement settles
    uploaders = []
    for index in range(12):
        person = make_contributor(f"did:example:uploader-{index}")
        consent_give(contributor=person, dataset=dataset)
        uploaders.append(person)

    # In flight when the database dies: a run paused after its charge and the settlement
    # paused inside its batch transaction (one in each of the worker's two processes),
    # and uploads posted one after another.
    worker_on_servers.arm(
        at="queries.execute.after_charge,settlement.batch.before_commit", sleep="4"
    )
    running = [_submit(api, business_user)]
    settlement_run.delay()
    answers: dict[int, Any] = {}
    started = threading.Event()

    def upload() -> None:
        for index, person in enumerate(uploaders):
            try:
                response = api(person.user).post(
                    f"/api/v1/datasets/{dataset.slug}/contributions/",
                    {"records": rows_for(100 + index, UPLOAD_ROWS)},
                    format="json",
                )
                answers[person.pk] = response.status_code
            except Exception as error:  # the connection died under the request
                answers[person.pk] = repr(error)
                connection.close()
            started.set()
            time.sleep(0.2)
        connection.close()

    uploading = threading.Thread(target=upload)
    uploading.start()
    wait_for(
        lambda: _charged_and_paused(3)() and Settlement.objects.filter(status="open").exists(),
        30,
        "the run to take its charge and the settlement to open",
        worker_on_servers.process,
    )
    assert started.wait(30)
    servers.restart_postgres()
    worker_on_servers.disarm()
    uploading.join(timeout=60)
    assert not uploading.is_alive()

    _all_ended(worker_on_servers)
    wait_for(
        lambda: Settlement.objects.filter(status="completed").exists(),
        60,
        "the interrupted settlement to complete",
        worker_on_servers.process,
    )
    settlement_run.delay()  # the next beat settles what was released since
    wait_for(
        lambda: (
            not Distribution.objects.filter(settlement__isnull=True).exists()
            and not Settlement.objects.exclude(status="completed").exists()
        ),
        60,
        "every distribution to be settled",
        worker_on_servers.process,
    )

    # Every query released once; no upload half stored; uploads that were answered 201
    # are there, the others either wholly there or absent.
    from cleanroom.queries.models import Query

    assert set(Query.objects.values_list("status", flat=True)) == {"released"}
    assert Query.objects.count() == len(done) + len(running)
    for person in uploaders:
        stored = list(
            Contribution.objects.filter(contributor=person).values_list("rows", flat=True)
        )
        assert stored in ([], [UPLOAD_ROWS]), (person.pk, stored, answers.get(person.pk))
        if answers.get(person.pk) == 201:
            assert stored == [UPLOAD_ROWS]
    settled = Distribution.objects.filter(settlement__isnull=False).count()
    assert settled == Query.objects.count()
    assert ended_well() == []


def test_redis_restarted_with_queued_and_running_tasks(
    worker_on_servers: ArmedWorker,
    servers: Servers,
    pool_dataset: Any,
    business_user: Any,
    api: Any,
) -> None:
    from cleanroom.queries.models import Query

    pool_dataset()
    worker_on_servers.arm(at="queries.execute.after_charge", sleep="3")
    ids = [_submit(api, business_user) for _ in range(5)]  # two run, three wait in Redis
    wait_for(_charged_and_paused(2), 30, "two runs to take their charge", worker_on_servers.process)
    assert Query.objects.filter(status="queued").count() >= 2
    servers.restart_redis()
    worker_on_servers.disarm()
    _all_ended(worker_on_servers)
    assert (
        sorted(Query.objects.filter(pk__in=ids).values_list("status", flat=True))
        == ["released"] * 5
    )
    assert ended_well() == []
