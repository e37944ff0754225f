"""Review findings: a malformed policy, a lost worker or task, a restricted dataset's
budget, an inverted count interval, decrypted scratch files that outlive their worker."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from cleanroom.datasets.models import Dataset
from cleanroom.queries.models import BudgetCharge, Query
from cleanroom.queries.selectors import dataset_visible_to
from cleanroom.queries.services import queries_reap, query_execute
from payouts.models import Account
from tests.queries.conftest import budget_state

SQL = "SELECT COUNT(*) AS n FROM households"


def _post(api: Any, user: Any, path: str) -> Any:
    return api(user).post(
        path, {"dataset": "households", "sql": SQL, "epsilon": 0.5}, format="json"
    )


def _money(user: Any) -> tuple[int, int]:
    business = Account.objects.get(kind=Account.Kind.BUSINESS, organization=user.organization)
    held = Account.objects.filter(kind=Account.Kind.QUERY_HOLDS).first()
    return business.balance, held.balance if held else 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_contributors", "ten"),
        ("max_rows_per_contributor", 1.5),
        ("max_contributors", -3),
        ("auto_approve", "maybe"),
        ("max_query_epsilon", "NaN"),
        ("max_groups", "lots"),
        ("allowed_columns", "age"),
    ],
)
def test_malformed_policy_value_is_a_clear_400_and_nothing_changes(
    households: Any, business_user: Any, api: Any, field: str, value: Any
) -> None:
    Dataset.objects.filter(pk=households.pk).update(policy={**households.policy, field: value})
    # A refusal appends only its own record (cleanroom/refusals.py).
    others = AuditEvent.objects.exclude(action__endswith=".refused")
    before = (budget_state(households), _money(business_user), others.count())
    for path in ("/api/v1/queries/preview/", "/api/v1/queries/"):
        response = _post(api, business_user, path)
        assert response.status_code == 400, response.content
        assert f"malformed {field}" in response.json()["detail"]
    assert (budget_state(households), _money(business_user), others.count()) == before


def test_policy_broken_after_submission_fails_the_run_with_a_refund(
    households: Any, business_user: Any, api: Any
) -> None:
    before = _money(business_user)
    pk = _post(api, business_user, "/api/v1/queries/").json()["id"]
    Dataset.objects.filter(pk=households.pk).update(
        policy={**households.policy, "max_rows_per_contributor": "three"}
    )
    query_execute(query_id=pk)
    query = Query.objects.get(pk=pk)
    assert query.status == "failed"
    assert "malformed max_rows_per_contributor" in query.error
    assert BudgetCharge.objects.get(query=query).state == "refunded"
    assert _money(business_user) == before
    households.refresh_from_db()
    assert households.spent_epsilon == 0


def test_reaper_has_stuck_runs_taken_over_and_requeues_lost_tasks(
    pool_dataset: Any,
    business_user: Any,
    api: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cleanroom.queries import tasks

    dataset = pool_dataset()
    before = _money(business_user)
    stuck = _post(api, business_user, "/api/v1/queries/").json()["id"]
    lost = _post(api, business_user, "/api/v1/queries/").json()["id"]
    fresh = _post(api, business_user, "/api/v1/queries/").json()["id"]
    long_ago = timezone.now() - timedelta(hours=2)
    # A run from before heartbeats (none recorded), silent for two hours.
    Query.objects.filter(pk=stuck).update(status="running", started_at=long_ago)
    Query.objects.filter(pk=lost).update(updated_at=long_ago)
    sent: list[tuple[int, Any]] = []
    monkeypatch.setattr(
        tasks.query_execute_task,
        "delay",
        lambda pk, attempt=None: sent.append((pk, attempt)),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert queries_reap() == {"recovered": 1, "requeued": 1}
    assert sorted(sent) == sorted([(stuck, 0), (lost, None)])
    # The delivery sent for the stuck run takes it over: nothing ran, so it runs now.
    assert query_execute(query_id=stuck, attempt=0) is None
    query = Query.objects.get(pk=stuck)
    assert (query.status, query.attempt) == ("released", 1)
    assert BudgetCharge.objects.get(query=query).state == "charged"
    assert Query.objects.get(pk=fresh).status == "queued"
    price = Query.objects.get(pk=lost).price
    assert _money(business_user) == (before[0] - 3 * price, before[1] + 2 * price)
    dataset.refresh_from_db()
    # A second pass finds nothing to do.
    with django_capture_on_commit_callbacks(execute=True):
        assert queries_reap() == {"recovered": 0, "requeued": 0}
    assert len(sent) == 2


def test_budget_of_a_restricted_dataset_is_404_for_other_organizations(
    pool_dataset: Any,
    business_user: Any,
    other_business_user: Any,
    compliance_user: Any,
    api: Any,
) -> None:
    dataset = pool_dataset(policy={"allowed_organizations": ["Acme"]})
    path = "/api/v1/queries/budget/households/"
    assert api(other_business_user).get(path).status_code == 404
    assert api(business_user).get(path).status_code == 200
    assert api(compliance_user).get(path).status_code == 200
    assert not dataset_visible_to(dataset=dataset, user=other_business_user)
    assert dataset_visible_to(dataset=dataset, user=business_user)
    # A malformed restriction fails closed.
    dataset.policy = {**dataset.policy, "allowed_organizations": "Acme"}
    assert not dataset_visible_to(dataset=dataset, user=business_user)


@pytest.mark.parametrize(
    ("raw", "expected"), [(-3.0, [0.0, 0.0]), (-1.0, [0.0, 1.55]), (10.0, [7.45, 12.55])]
)
def test_count_interval_is_never_inverted(raw: float, expected: list[float]) -> None:
    from cleanroom.queries.dp.engine import _value

    aggregate = SimpleNamespace(kind="count")
    value, interval = _value(SimpleNamespace(), aggregate, {"__len": raw}, 2.55)  # type: ignore[arg-type]
    assert value == max(int(raw), 0)
    assert interval is not None
    assert [round(end, 6) for end in interval] == expected
    assert interval[0] <= interval[1]


def test_scratch_sweep_ignores_a_reused_pid_and_keeps_live_files(tmp_path: Any) -> None:
    from cleanroom.queries.dp import engine, scratch_sweep

    if not os.path.isdir(engine.SHM_DIR):
        pytest.skip("no /dev/shm")
    alive = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        names = {
            # A live pid, but not the process that wrote the file (pid reused): stale.
            "reused": f"{engine.SHM_PREFIX}{alive.pid}-1-deadbeef-x.arrow",
            "dead": f"{engine.SHM_PREFIX}{dead.pid}-1-deadbeef-x.arrow",
            "old_style": f"{engine.SHM_PREFIX}{alive.pid}-leftover.arrow",
            "mine": f"{engine._scratch_prefix()}x.arrow",
        }
        for name in names.values():
            with open(os.path.join(engine.SHM_DIR, name), "wb") as handle:
                handle.write(b"decrypted pool rows")
        scratch_sweep()
        left = {
            key for key, name in names.items() if os.path.exists(os.path.join(engine.SHM_DIR, name))
        }
        assert left == {"mine"}
    finally:
        alive.kill()
        alive.wait()
        for name in names.values():
            path = os.path.join(engine.SHM_DIR, name)
            if os.path.exists(path):
                os.unlink(path)


def test_worker_start_sweeps_scratch_files() -> None:
    from celery.signals import worker_process_init, worker_ready

    from cleanroom.queries import tasks

    receivers = [r[1]() for r in worker_process_init.receivers] + [
        r[1]() for r in worker_ready.receivers
    ]
    assert receivers.count(tasks.scratch_sweep_at_start) == 2
