"""The DP engine on synthetic Polars frames (no Django, no database)."""

from __future__ import annotations

import math
import time

import numpy as np
import polars as pl
import pytest

from cleanroom.queries import dp
from cleanroom.queries.dp.engine import _mean_interval
from cleanroom.queries.sql import compile_sql

SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": ["north", "south", "east", "west"]},
        {"name": "income", "type": "float", "lower": 0, "upper": 100000},
        {"name": "owns_home", "type": "boolean"},
    ]
}
UNIT = dp.PrivacyUnit(max_rows_per_contributor=5, max_rows=5_000_000)


def frame(rows: int = 20_000, contributors: int = 4_000, seed: int = 0) -> pl.LazyFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "contributor_id": np.sort(rng.integers(0, contributors, rows)).astype(np.int64),
            "age": rng.integers(18, 90, rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "income": rng.uniform(0, 100000, rows),
            "owns_home": rng.random(rows) < 0.5,
        }
    ).lazy()


def mechanism(sql: str, epsilon: float = 1.0, unit: dp.PrivacyUnit = UNIT) -> dp.Mechanism:
    plan = compile_sql(sql, table="households", schema=SCHEMA)
    return dp.mechanism_build(plan=plan, unit=unit, epsilon=epsilon)


def test_calibration_spends_exactly_the_requested_epsilon() -> None:
    for epsilon in (0.01, 0.3, 1.0, 2.5):
        m = mechanism(
            "SELECT region, COUNT(*), SUM(income), AVG(income) FROM households GROUP BY region",
            epsilon,
        )
        assert m.epsilon <= epsilon
        assert m.epsilon == pytest.approx(epsilon, rel=1e-9)


def test_closed_form_scale_is_the_binary_search_scale_and_fast() -> None:
    import opendp.prelude as opendp

    from cleanroom.queries.dp.engine import _make

    plan = compile_sql(
        "SELECT COUNT(*), SUM(age) FROM households", table="households", schema=SCHEMA
    )
    # CPU time of this process, not wall clock: other jobs on a loaded 2-core machine
    # cannot stretch it. Compared with the search it replaces, measured the same way.
    started = time.process_time()
    m = dp.mechanism_build(plan=plan, unit=UNIT, epsilon=0.7)
    closed_form = time.process_time() - started
    started = time.process_time()
    searched = opendp.binary_search_param(
        lambda scale: _make(plan, UNIT, scale)[0], d_in=1, d_out=0.7, T=float
    )
    search_seconds = time.process_time() - started
    assert m.scale == pytest.approx(searched, rel=1e-6)
    assert closed_form < 0.5
    assert closed_form < search_seconds


def test_release_has_an_interval_per_aggregate_cell() -> None:
    """The shape of a release. That it is noisy, and its intervals honest about the noise,
    is checked against the truth in test_dp_release_noise.py (a value inside an interval
    built around it says neither)."""
    m = mechanism(
        "SELECT region, COUNT(*) AS n, SUM(income) AS s, AVG(income) AS m FROM households GROUP BY region"
    )
    release = dp.mechanism_release(mechanism=m, frame=frame())
    assert release.columns == ["region", "n", "s", "m"]
    assert [row[0] for row in release.rows] == ["north", "south", "east", "west"]
    for intervals in release.intervals:
        assert intervals[0] is None
        n_interval, s_interval, m_interval = intervals[1], intervals[2], intervals[3]
        assert n_interval is not None and s_interval is not None and m_interval is not None
        assert m_interval[0] >= 0 and m_interval[1] <= 100000
    half = m.half_width("__len")
    assert half == pytest.approx(math.log(1 / 0.05) * m.noise["__len"][1], rel=0.2)
    assert release.epsilon == pytest.approx(1.0)


def test_avg_shares_the_count_with_count_star() -> None:
    both = mechanism("SELECT COUNT(*), AVG(income) FROM households")
    assert [s.kind for s in both.statistics] == ["len", "sum"]
    avg_only = mechanism("SELECT AVG(income) FROM households")
    # AVG alone releases a count and a sum: same two statistics, same noise.
    assert avg_only.noise == both.noise


def test_mean_interval_from_sum_and_count() -> None:
    """Count noise-free: the mean's error is the sum's Laplace noise over the count, so the
    half-width is the Laplace 95% quantile (b ln 20) over the count, clipped to the bounds."""
    interval = _mean_interval(
        mean=10.0, count=100.0, sum_scale=50.0, count_scale=0.0, count_half_width=0.0,
        lower=0.0, upper=100.0,
    )
    half = 50.0 * math.log(20) / 100.0
    assert interval == pytest.approx([10.0 - half, 10.0 + half])
    # Count noise widens it by |mean| x its scale (here equal to the sum's: 2x a Laplace sum).
    wider = _mean_interval(
        mean=10.0, count=100.0, sum_scale=50.0, count_scale=5.0, count_half_width=1.0,
        lower=0.0, upper=100.0,
    )
    assert wider[1] - wider[0] > interval[1] - interval[0]
    # A count within its own half-width of zero says nothing: the whole public range.
    tiny = _mean_interval(
        mean=10.0, count=3.0, sum_scale=5.0, count_scale=1.0, count_half_width=10.0,
        lower=0.0, upper=100.0,
    )
    assert tiny == [0.0, 100.0]


def test_histogram_quantiles_and_filters() -> None:
    m = mechanism(
        "SELECT WIDTH_BUCKET(age, 0, 100, 5) AS band, COUNT(*) AS n FROM households "
        "WHERE owns_home AND region IN ('north', 'south') GROUP BY band"
    )
    release = dp.mechanism_release(mechanism=m, frame=frame())
    assert [row[0] for row in release.rows] == [
        "[0, 20)",
        "[20, 40)",
        "[40, 60)",
        "[60, 80)",
        "[80, 100)",
    ]
    q = mechanism("SELECT MEDIAN(age) AS med, QUANTILE(income, 0.9) AS p90 FROM households")
    (row,) = dp.mechanism_release(mechanism=q, frame=frame()).rows
    assert 40 <= row[0] <= 70
    assert 80000 <= row[1] <= 100000


def test_truncation_bounds_each_contributor_to_k_rows() -> None:
    # One contributor with 10,000 rows among 100 with one row each: they count as k=5.
    whale = pl.DataFrame(
        {
            "contributor_id": [0] * 10_000 + list(range(1, 101)),
            "age": [50] * 10_100,
            "region": ["north"] * 10_100,
            "income": [1.0] * 10_100,
            "owns_home": [True] * 10_100,
        }
    ).lazy()
    m = mechanism("SELECT COUNT(*) AS n FROM households", epsilon=5.0)
    counts = [dp.mechanism_release(mechanism=m, frame=whale).rows[0][0] for _ in range(20)]
    assert abs(float(np.mean(counts)) - 105) < 10


def test_nan_and_infinite_values_in_data_are_clamped_not_leaked() -> None:
    edge = pl.DataFrame(
        {
            "contributor_id": list(range(6)),
            "age": [18, 100, 50, 50, 50, 50],
            "region": ["north"] * 6,
            "income": [float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 5e-324],
            "owns_home": [True] * 6,
        }
    ).lazy()
    m = mechanism("SELECT SUM(income) AS s, AVG(income) AS m FROM households", epsilon=50.0)
    (row,) = dp.mechanism_release(mechanism=m, frame=edge).rows
    assert all(value is not None and math.isfinite(value) for value in row)
    assert 0 <= row[1] <= 100000


def test_bounds_near_int64_max_are_refused_at_build() -> None:
    schema = {"columns": [{"name": "big", "type": "integer", "lower": 0, "upper": 2**62}]}
    plan = compile_sql("SELECT SUM(big) FROM t", table="t", schema=schema)
    with pytest.raises(dp.EngineError):
        dp.mechanism_build(plan=plan, unit=UNIT, epsilon=1.0)


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("nan"), float("inf"), 1e9])
def test_bad_epsilon_is_refused_by_the_engine(epsilon: float) -> None:
    plan = compile_sql("SELECT COUNT(*) FROM households", table="households", schema=SCHEMA)
    with pytest.raises(dp.EngineError):
        dp.mechanism_build(plan=plan, unit=UNIT, epsilon=epsilon)


def test_dry_run_on_an_empty_frame_runs_the_exact_measurement() -> None:
    m = mechanism("SELECT region, COUNT(*), MEDIAN(age) FROM households GROUP BY region")
    dp.mechanism_dry_run(m)  # no exception: nothing real was touched


def test_in_memory_frame_and_scan_give_the_same_shape(tmp_path: object) -> None:
    m = mechanism("SELECT region, COUNT(*) AS n FROM households GROUP BY region", epsilon=1.0)
    data = frame()
    in_memory = dp.mechanism_release(mechanism=m, frame=data)
    path = f"{tmp_path}/pool.arrow"
    data.collect().write_ipc(path)
    scanned = dp.mechanism_release(mechanism=m, frame=pl.scan_ipc(path))
    assert [r[0] for r in in_memory.rows] == [r[0] for r in scanned.rows]
    for a, b in zip(in_memory.rows, scanned.rows, strict=True):
        assert abs(a[1] - b[1]) < 200


def test_frame_missing_columns_is_an_engine_error() -> None:
    m = mechanism("SELECT COUNT(*) FROM households")
    with pytest.raises(dp.EngineError, match="lacks columns"):
        dp.mechanism_release(mechanism=m, frame=pl.LazyFrame({"contributor_id": [1]}))
