"""Issue 11, defect 6: a run whose worker dies after the charge is recovered, not failed.

The run is driven in-process (the real-worker kills are in test_worker_crash.py): a
run "dies" at a crash point (a BaseException, like SIGKILL it unwinds nothing the run
would commit), its query goes silent, and the next delivery takes it over. Whatever the
point, the budget row stays the one charge, the money moves once, one result is released.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from cleanroom.queries import dp
from cleanroom.queries.membership import ranges_members
from cleanroom.queries.models import BudgetCharge, Query, QueryPool
from cleanroom.queries.services import MAX_RUN_ATTEMPTS, queries_reap, query_execute
from payouts.models import Account, Distribution, JournalEntry

SQL = "SELECT region, COUNT(*) AS n FROM households GROUP BY region"


class Killed(BaseException):
    """What SIGKILL does to a run, in-process: it stops, and nothing after it happens."""


def _submitted(api: Any, user: Any) -> int:
    response = api(user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": SQL, "epsilon": 0.5}, format="json"
    )
    assert response.status_code == 202, response.json()
    return int(response.json()["id"])


def _kill_at(monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    import payouts.crash

    def crash_point(name: str) -> None:
        if name == point:
            raise Killed(name)

    monkeypatch.setattr(payouts.crash, "crash_point", crash_point)


def _silence(pk: int, seconds: float = 30) -> None:
    """The dead run's last heartbeat is this old (a live one beats every 5 s)."""
    Query.objects.filter(pk=pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def _business_balance(user: Any) -> int:
    return Account.objects.get(kind=Account.Kind.BUSINESS, organization=user.organization).balance


def _run_killed_after_charge(api: Any, user: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    pk = _submitted(api, user)
    _kill_at(monkeypatch, "queries.execute.after_charge")
    with pytest.raises(Killed):
        query_execute(query_id=pk)
    monkeypatch.undo()
    query = Query.objects.get(pk=pk)
    assert (query.status, query.attempt, query.mechanism_ran) == ("running", 1, True)
    assert BudgetCharge.objects.get(query_id=pk).state == "charged"
    assert not Distribution.objects.filter(query_id=pk).exists()
    return pk


def test_release_lost_after_the_charge_is_run_again_under_the_same_charge(
    households: Any, business_user: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _business_balance(business_user)
    pk = _run_killed_after_charge(api, business_user, monkeypatch)
    price = Query.objects.get(pk=pk).price
    # A delivery right after the death finds the run not yet silent: it looks again later.
    look_again = query_execute(query_id=pk)
    assert look_again is not None and look_again.attempt == 1
    assert Query.objects.get(pk=pk).status == "running"
    _silence(pk)
    assert query_execute(query_id=pk, attempt=1) is None

    query = Query.objects.get(pk=pk)
    assert (query.status, query.attempt) == ("released", 2), query.error
    assert query.result is not None and len(query.result["rows"]) == 4
    # One charge of budget, one pool record, one payment, one release.
    assert list(BudgetCharge.objects.filter(query_id=pk).values_list("state", "epsilon")) == [
        ("charged", Decimal("0.5"))
    ]
    households.refresh_from_db()
    assert households.spent_epsilon == Decimal("0.5")
    assert QueryPool.objects.filter(query_id=pk).count() == 1
    assert Distribution.objects.filter(query_id=pk).count() == 1
    assert JournalEntry.objects.filter(key=f"query:{pk}:charge").count() == 1
    assert _business_balance(business_user) == before - price
    actions = list(
        AuditEvent.objects.filter(subject=f"query:{pk}")
        .order_by("pk")
        .values_list("action", "payload")
    )
    running = [payload for action, payload in actions if action == "cleanroom.query.running"]
    assert running == [{}, {"attempt": 2, "recovered": True, "mechanism_taken": True}]
    assert [a for a, _ in actions].count("cleanroom.query.released") == 1
    assert [a for a, _ in actions].count("cleanroom.budget.charged") == 1
    assert "cleanroom.query.failed" not in [a for a, _ in actions]
    # Later deliveries of either attempt change nothing.
    events = AuditEvent.objects.count()
    assert query_execute(query_id=pk) is None
    assert query_execute(query_id=pk, attempt=1) is None
    assert AuditEvent.objects.count() == events


def test_recovered_run_never_includes_anyone_it_was_not_charged_for(
    pool_dataset: Any,
    business_user: Any,
    api: Any,
    make_contributor: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cleanroom.datasets.services import consent_give, consent_withdraw, contribution_upload
    from tests.queries.conftest import rows_for

    households = pool_dataset(contributors=7)
    pk = _run_killed_after_charge(api, business_user, monkeypatch)
    charged_for = ranges_members(bytes(QueryPool.objects.get(query_id=pk).ranges)).tolist()
    assert len(charged_for) == 7
    # Between the death and the recovery one member leaves and a newcomer joins.
    leaver = make_contributor("did:example:households-0")
    consent_withdraw(contributor=leaver, dataset=households)
    newcomer = make_contributor("did:example:newcomer")
    consent_give(contributor=newcomer, dataset=households)
    contribution_upload(contributor=newcomer, dataset=households, records=rows_for(99))
    _silence(pk)
    query_execute(query_id=pk)

    query = Query.objects.get(pk=pk)
    assert query.status == "released", query.error
    assert query.result is not None and query.result["pool_size"] == 6
    released_over = ranges_members(bytes(QueryPool.objects.get(query_id=pk).ranges)).tolist()
    assert released_over == [m for m in charged_for if m != leaver.pk]
    assert newcomer.pk not in released_over
    distribution = Distribution.objects.get(query_id=pk)
    assert distribution.pool_size == 6


def test_run_taken_over_cannot_release_and_its_numbers_are_dropped(
    households: Any, business_user: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run presumed dead that was only slow: the attempt that took it over releases,
    the slow one's release is refused under the row lock (never two results)."""
    pk = _submitted(api, business_user)
    real_release = dp.mechanism_release
    drawn: list[Any] = []

    def slow_release(**kwargs: Any) -> Any:
        release = real_release(**kwargs)
        drawn.append(release)
        if len(drawn) == 1:
            # While the first run draws, it is taken for dead and the next attempt runs.
            _silence(pk)
            assert query_execute(query_id=pk) is None
        return release

    monkeypatch.setattr(dp, "mechanism_release", slow_release)
    assert query_execute(query_id=pk) is None
    assert len(drawn) == 2
    query = Query.objects.get(pk=pk)
    assert (query.status, query.attempt) == ("released", 2)
    assert query.result is not None and query.result["rows"] == drawn[1].rows
    assert Distribution.objects.filter(query_id=pk).count() == 1
    assert (
        AuditEvent.objects.filter(subject=f"query:{pk}", action="cleanroom.query.released").count()
        == 1
    )


@pytest.mark.parametrize("charged", [True, False], ids=["after-charge", "before-charge"])
def test_after_the_last_attempt_the_query_fails_refunded_only_if_nothing_ran(
    households: Any,
    business_user: Any,
    api: Any,
    monkeypatch: pytest.MonkeyPatch,
    charged: bool,
) -> None:
    before = _business_balance(business_user)
    if charged:
        pk = _run_killed_after_charge(api, business_user, monkeypatch)
    else:
        pk = _submitted(api, business_user)
        Query.objects.filter(pk=pk).update(status="running", attempt=1)
    Query.objects.filter(pk=pk).update(attempt=MAX_RUN_ATTEMPTS)
    _silence(pk)
    assert query_execute(query_id=pk) is None
    query = Query.objects.get(pk=pk)
    assert query.status == "failed"
    assert f"lost {MAX_RUN_ATTEMPTS} times" in query.error
    households.refresh_from_db()
    if charged:
        assert "stay charged" in query.error
        assert BudgetCharge.objects.get(query_id=pk).state == "charged"
        assert households.spent_epsilon == Decimal("0.5")
        assert Distribution.objects.filter(query_id=pk).count() == 1
        assert _business_balance(business_user) == before - query.price
    else:
        assert BudgetCharge.objects.get(query_id=pk).state == "refunded"
        assert households.spent_epsilon == 0
        assert _business_balance(business_user) == before


def test_reaper_sends_silent_runs_to_be_taken_over_and_leaves_live_ones(
    pool_dataset: Any,
    business_user: Any,
    api: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cleanroom.queries import tasks

    pool_dataset()
    silent, alive, lost, fresh = (_submitted(api, business_user) for _ in range(4))
    now = timezone.now()
    Query.objects.filter(pk=silent).update(
        status="running", attempt=1, heartbeat_at=now - timedelta(seconds=21)
    )
    Query.objects.filter(pk=alive).update(
        status="running", attempt=1, heartbeat_at=now - timedelta(seconds=15)
    )
    Query.objects.filter(pk=lost).update(updated_at=now - timedelta(hours=2))
    sent: list[tuple[int, dict[str, Any]]] = []
    monkeypatch.setattr(
        tasks.query_execute_task, "delay", lambda pk, **kwargs: sent.append((pk, kwargs))
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert queries_reap() == {"recovered": 1, "requeued": 1}
    assert sorted(sent) == sorted([(silent, {"attempt": 1}), (lost, {})])
    assert Query.objects.get(pk=fresh).status == "queued"
    assert Query.objects.get(pk=silent).status == "running"  # the delivery takes it over


@pytest.mark.django_db(transaction=True)
def test_a_running_query_records_a_heartbeat(
    households: Any, business_user: Any, api: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CLEANROOM_QUERY_HEARTBEAT_SECONDS = 0.2
    pk = _submitted(api, business_user)
    real_release = dp.mechanism_release
    seen: list[Any] = []

    def slow_release(**kwargs: Any) -> Any:
        first = Query.objects.get(pk=pk).heartbeat_at
        time.sleep(1.0)
        seen.extend([first, Query.objects.get(pk=pk).heartbeat_at])
        return real_release(**kwargs)

    monkeypatch.setattr(dp, "mechanism_release", slow_release)
    query_execute(query_id=pk)
    assert Query.objects.get(pk=pk).status == "released"
    first, later = seen
    assert first is not None and later is not None
    assert (later - first).total_seconds() >= 0.5


def test_recovered_run_reports_the_members_its_charge_left_out_at_their_cap(
    pool_dataset: Any,
    business_user: Any,
    api: Any,
    make_contributor: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The charge excluded one member at their cap; the recovered release says so too."""
    pool_dataset(contributors=7)
    capped = make_contributor("did:example:households-2")  # a member, consenting anew
    response = api(capped.user).post(
        "/api/v1/datasets/households/consent/", {"privacy_cap": {"epsilon": "0.1"}}, format="json"
    )
    assert response.status_code in (200, 201), response.json()
    pk = _run_killed_after_charge(api, business_user, monkeypatch)
    assert QueryPool.objects.get(query_id=pk).excluded_at_cap == 1
    _silence(pk)
    assert query_execute(query_id=pk, attempt=1) is None
    query = Query.objects.get(pk=pk)
    assert (query.status, query.attempt) == ("released", 2), query.error
    assert (query.result["pool_size"], query.result["excluded_at_cap"]) == (6, 1)
