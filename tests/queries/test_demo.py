"""`manage.py seed_demo`'s queries step: released answers, one query waiting for review,
the second business's query apart; the README's queries answer within 5%."""

from __future__ import annotations

from typing import Any

import pytest

from cleanroom.queries import demo
from cleanroom.queries.models import Query


def _seed_world(monkeypatch: pytest.MonkeyPatch, population: int) -> None:
    from cleanroom.accounts import demo as accounts_demo
    from cleanroom.datasets import demo as datasets_demo

    monkeypatch.setenv("CLEANROOM_DEMO_POPULATION", str(population))
    accounts_demo.seed()
    datasets_demo.seed()


def test_demo_releases_queries_leaves_one_for_review_and_is_idempotent(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert demo.seed() == ["Queries: no demo business, skipped."]
    _seed_world(monkeypatch, 150)

    lines = demo.seed()

    queries = list(Query.objects.order_by("pk"))
    assert [(q.dataset.slug, q.organization.name, q.status) for q in queries] == [
        ("households", "Acme Analytics", "released"),
        ("households", "Acme Analytics", "released"),
        ("commutes", "Acme Analytics", "released"),
        ("commutes", "Acme Analytics", "pending_approval"),
        ("households", "Globex Research", "released"),
    ]
    assert (
        lines[0]
        == f"Query {queries[0].pk} on households by acme: released (portal /queries/{queries[0].pk}/)"
    )
    assert queries[0].sql == demo.README_HOUSEHOLDS
    assert queries[2].reviewed_by is not None and queries[2].reviewed_by.username == "compliance"
    assert demo.seed() == ["Queries: nothing to seed (the demo queries exist already)."]
    assert Query.objects.count() == 5


@pytest.mark.slow
def test_readme_queries_answer_within_five_percent_on_the_demo_population(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full demo population: every released cell of the README's queries has a 95%
    half-width under 5% of its value (the issue's bar for a useful first answer)."""
    from cleanroom.accounts.demo import DEMO_POPULATION

    _seed_world(monkeypatch, DEMO_POPULATION)
    demo.seed()
    for sql in (demo.README_HOUSEHOLDS, demo.README_COMMUTES):
        query = Query.objects.get(sql=sql)
        assert query.status == "released"
        assert float(query.epsilon) == 1.0  # the default epsilon (min of 1 and the cap)
        result = query.result or {}
        assert len(result["rows"]) == 4
        for row, intervals in zip(result["rows"], result["accuracy"], strict=True):
            for value, interval in zip(row[1:], intervals[1:], strict=True):
                half_width = (interval[1] - interval[0]) / 2
                assert half_width / abs(value) < 0.05, (sql, row, interval)
