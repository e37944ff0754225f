"""Attacks on the clean room: each is refused, or answered only with calibrated noise."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from cleanroom.queries import dp
from cleanroom.queries.models import Query
from cleanroom.queries.services import query_execute
from cleanroom.queries.sql import compile_sql
from tests.queries.conftest import SCHEMA, budget_state, rows_for

TARGET = {"age": 77, "region": "north", "income": 123456.0, "household_size": 9, "owns_home": True}
TARGETING = "SELECT COUNT(*) AS n FROM households WHERE age = 77 AND household_size = 9"


def run(api: Any, user: Any, sql: str, epsilon: float = 0.5) -> Query:
    response = api(user).post(
        "/api/v1/queries/", {"dataset": "households", "sql": sql, "epsilon": epsilon}, format="json"
    )
    assert response.status_code == 202, response.json()
    query_execute(query_id=response.json()["id"])
    return Query.objects.get(pk=response.json()["id"])


def result_of(query: Query) -> dict[str, Any]:
    assert query.result is not None, query.error
    return query.result


def with_target(pool_dataset: Any, **policy: Any) -> Any:
    records = [rows_for(i) for i in range(6)] + [[TARGET]]
    return pool_dataset(records=records, policy=policy or None)


def test_single_person_targeting_gets_only_noise(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    with_target(pool_dataset)
    answers = []
    for _ in range(6):  # 3 of the 10 epsilon
        query = run(api, business_user, TARGETING)
        (row,) = result_of(query)["rows"]
        (interval,) = [cell for cell in result_of(query)["accuracy"][0] if cell]
        # The public 95% half-width is far wider than the one person it could reveal.
        half = result_of(query)["column_accuracy"][0]["half_width"]
        assert half > 10
        # The released interval is [raw - half, raw + half] with both ends clamped at 0. Its
        # width is only 2 * half when the noisy raw count is >= half; asserting "width > 10"
        # failed whenever Laplace(6) noise was <= -10, P = 0.10 per run. What is never
        # random: an unclamped interval is exactly 2 * half wide, and a clamped one starts at 0.
        assert row[0] >= 0 and 0.0 <= interval[0] <= interval[1]
        assert interval[0] == 0.0 or abs((interval[1] - interval[0]) - 2 * half) < 1e-6
        answers.append(row[0])
    # Only noise: the true count is 1 (one person matches), and a noiseless engine answers
    # 1 every time. With noise whose 95% half-width exceeds 10 the answer is exactly 1 with
    # P < 0.15 per run (discrete Laplace, scale > 3.3), all six times with P < 2e-5.
    assert answers != [1] * 6, answers


def test_targeting_answers_are_indistinguishable_with_or_without_the_person() -> None:
    plan = compile_sql(TARGETING, table="households", schema=SCHEMA)
    mechanism = dp.mechanism_build(
        plan=plan, unit=dp.PrivacyUnit(max_rows_per_contributor=3, max_rows=10_000), epsilon=0.5
    )
    base = [dict(r, contributor_id=i) for i in range(30) for r in rows_for(i)]
    target = [dict(TARGET, contributor_id=99)]

    def answers(rows: list[dict[str, Any]]) -> np.ndarray:
        frame = pl.DataFrame(rows).lazy()
        return np.array(
            [dp.mechanism_release(mechanism=mechanism, frame=frame).rows[0][0] for _ in range(300)]
        )

    without, with_person = answers(base), answers(base + target)
    p_without, p_with = float(np.mean(without >= 1)), float(np.mean(with_person >= 1))
    assert 0.2 < p_without < 0.8 and 0.2 < p_with < 0.8
    # epsilon = 0.5 bounds the odds ratio by e^0.5 = 1.65; sampling slack on top.
    assert max(p_with, p_without) / min(p_with, p_without) < 1.65 * 1.35


def test_differencing_two_queries_pays_twice_and_gets_two_noises(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    dataset = with_target(pool_dataset)
    everyone = run(api, business_user, "SELECT COUNT(*) AS n FROM households")
    all_but = run(
        api,
        business_user,
        "SELECT COUNT(*) AS n FROM households WHERE NOT (age = 77 AND household_size = 9)",
    )
    dataset.refresh_from_db()
    assert dataset.spent_epsilon == Decimal("1.0")
    for query in (everyone, all_but):
        # Two noises, each as wide as a query alone: the public half-width, not the
        # clamped interval (narrower than 10 when the noise is <= -22: P = 0.03 per run).
        half = result_of(query)["column_accuracy"][0]["half_width"]
        assert half > 10
        low, high = result_of(query)["accuracy"][0][0]
        assert low == 0.0 or abs((high - low) - 2 * half) < 1e-6


def test_averaging_a_repeated_query_is_stopped_by_the_budget(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    dataset = pool_dataset(policy={"total_epsilon": "1", "max_query_epsilon": "0.2"})
    body = {"dataset": "households", "sql": TARGETING, "epsilon": 0.2}
    statuses = [
        api(business_user).post("/api/v1/queries/", body, format="json").status_code
        for _ in range(8)
    ]
    assert statuses == [202] * 5 + [400] * 3
    dataset.refresh_from_db()
    assert dataset.spent_epsilon == dataset.total_epsilon == Decimal("1")


def test_tiny_groups_are_released_only_with_noise(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    # "west" holds a single contributor.
    records = [rows_for(0), rows_for(1), rows_for(2), rows_for(4), rows_for(5), rows_for(3)[:1]]
    pool_dataset(records=records)
    query = run(
        api,
        business_user,
        "SELECT region, COUNT(*) AS n, AVG(income) AS m FROM households GROUP BY region",
    )
    west = result_of(query)["rows"][3]
    assert west[0] == "west"
    n_low, n_high = result_of(query)["accuracy"][3][1]
    m_low, m_high = result_of(query)["accuracy"][3][2]
    # The noise is wide for a group of one: a public half-width well above the group's size.
    half = next(c for c in result_of(query)["column_accuracy"] if c["column"] == "n")["half_width"]
    assert half > 5
    # Both ends are clamped at 0 (a count is never negative); unclamped, it is 2 * half wide.
    assert 0.0 <= n_low <= n_high
    assert n_low == 0.0 or abs((n_high - n_low) - 2 * half) < 1e-6
    # The mean of a tiny group says nothing: the sum's noise scale alone dwarfs one income.
    m_accuracy = next(c for c in result_of(query)["column_accuracy"] if c["column"] == "m")
    assert m_accuracy["scale"] > 200000
    # Its interval is the whole public range exactly when the noisy count is within its
    # own half-width of zero, i.e. when the count's clamped interval starts at 0.
    if n_low == 0.0:
        assert (m_low, m_high) == (0.0, 200000.0)
    else:
        assert 0.0 <= m_low <= m_high <= 200000.0


def test_histogram_with_one_bin_per_value_is_refused(
    households: Any, business_user: Any, api: Any
) -> None:
    before = budget_state(households)
    response = api(business_user).post(
        "/api/v1/queries/",
        {
            "dataset": "households",
            "sql": "SELECT WIDTH_BUCKET(household_size, 1, 13, 12) AS b, COUNT(*) FROM households GROUP BY b",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "one bin per value" in response.json()["detail"]
    assert budget_state(households) == before


def test_grouping_by_the_contributor_or_a_private_column_is_refused(
    households: Any, business_user: Any, api: Any
) -> None:
    before = budget_state(households)
    for sql in (
        "SELECT contributor_id, COUNT(*) FROM households GROUP BY contributor_id",
        "SELECT age, COUNT(*) FROM households GROUP BY age",
        "SELECT income FROM households WHERE age = 77",
    ):
        response = api(business_user).post(
            "/api/v1/queries/", {"dataset": "households", "sql": sql}, format="json"
        )
        assert response.status_code == 400, sql
    assert budget_state(households) == before


def test_sql_injection_in_every_field_changes_nothing(
    households: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    before = budget_state(households)
    client = api(business_user)
    payloads = [
        {
            "dataset": "households; DROP TABLE queries_query",
            "sql": "SELECT COUNT(*) FROM households",
        },
        {
            "dataset": "households",
            "sql": "SELECT COUNT(*) FROM households WHERE region = '' OR 1=1 --'",
        },
        {
            "dataset": "households",
            "sql": "SELECT COUNT(*) FROM households WHERE region = 'x'; DELETE FROM datasets_dataset",
        },
        {
            "dataset": "households",
            "sql": "SELECT COUNT(*) FROM households",
            "epsilon": "0.1); DROP TABLE x; --",
        },
        {"dataset": "households", "sql": "SELECT pg_sleep(10) FROM households"},
        {
            "dataset": "households",
            "sql": "SELECT COUNT(*) FROM households WHERE region = U&'\\0041'",
        },
    ]
    # No such dataset (404) for the first; every other payload is refused as SQL or input (400).
    for payload, status in zip(payloads, [404] + [400] * (len(payloads) - 1), strict=True):
        response = client.post("/api/v1/queries/", payload, format="json")
        assert response.status_code == status, (payload, response.json())
    assert client.get("/api/v1/queries/?status=' OR '1'='1").status_code == 400
    assert client.get("/api/v1/queries/1 OR 1=1/").status_code == 404
    assert (
        api(compliance_user)
        .post("/api/v1/queries/1%20OR%201=1/reject/", {"reason": "x"})
        .status_code
        == 404
    )
    assert budget_state(households) == before


def test_float_edge_values_in_uploaded_data_give_finite_noisy_answers(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    from cleanroom.datasets.models import Contribution
    from cleanroom.datasets.services import contribution_upload
    from cleanroom.errors import DomainError

    dataset = pool_dataset(policy={"total_epsilon": "100", "max_query_epsilon": "50"})
    edge = dict(rows_for(99)[0])
    stored = Contribution.objects.filter(dataset=dataset).count()
    for value in (float("nan"), float("inf"), -float("inf"), 1e308):
        # Values outside the schema are refused at upload, nothing stored.
        with contextlib.suppress(DomainError):
            contribution_upload(
                contributor=_new_contributor(dataset),
                dataset=dataset,
                records=[dict(edge, income=value)],
            )
    refused_all = Contribution.objects.filter(dataset=dataset).count() == stored
    for value in (0.0, 200000.0, 5e-324, -0.0):  # valid, at the edges of float and bounds
        contribution_upload(
            contributor=_new_contributor(dataset),
            dataset=dataset,
            records=[dict(edge, income=value)],
        )
    # epsilon 50 (count noise Laplace(0.12)): at epsilon 1 (Laplace(6)) the noisy count of
    # the 16 rows fell below 1 with P = 0.038, and AVG is then None by design, not a leak.
    query = run(
        api, business_user, "SELECT SUM(income) AS s, AVG(income) AS m FROM households", 50.0
    )
    (row,) = result_of(query)["rows"]
    assert all(value is not None for value in row)
    assert 0 <= row[1] <= 200000
    assert refused_all


_made = iter(range(10**6))


def _new_contributor(dataset: Any) -> Any:
    from cleanroom.accounts.services import contributor_get_or_create
    from cleanroom.datasets.services import consent_give

    contributor, _ = contributor_get_or_create(did=f"did:example:edge-{next(_made)}")
    consent_give(contributor=contributor, dataset=dataset)
    return contributor
