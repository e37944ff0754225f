"""A release is noisy, and its 95% intervals are honest about that noise.

Checked against the truth of a frame whose contributors have one row each (so
truncation changes nothing and the true counts and sums are known exactly), over
many releases: the released values are not the truth, they miss it by about as much
as the published half-widths say, and the intervals cover the truth about 95% of the
time. Nothing here depends on the engine's noise scale: errors are compared with the
half-widths the same mechanism publishes.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from cleanroom.queries import dp
from cleanroom.queries.sql import compile_sql

REGIONS = ["north", "south", "east", "west"]
SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": REGIONS},
        {"name": "income", "type": "float", "lower": 0, "upper": 100000},
        {"name": "owns_home", "type": "boolean"},
    ]
}
UNIT = dp.PrivacyUnit(max_rows_per_contributor=5, max_rows=5_000_000)
RELEASES = 40  # x 4 regions = 160 cells per statistic


def one_row_each(contributors: int = 4_000, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "contributor_id": np.arange(contributors, dtype=np.int64),
            "age": rng.integers(18, 90, contributors),
            "region": rng.choice(REGIONS, contributors),
            "income": rng.uniform(0, 100000, contributors),
            "owns_home": rng.random(contributors) < 0.5,
        }
    )


def test_releases_miss_the_truth_as_their_intervals_say() -> None:
    data = one_row_each()
    truth = {
        row["region"]: (row["n"], row["s"], row["s"] / row["n"])
        for row in data.group_by("region")
        .agg(pl.len().alias("n"), pl.col("income").sum().alias("s"))
        .iter_rows(named=True)
    }
    plan = compile_sql(
        "SELECT region, COUNT(*) AS n, SUM(income) AS s, AVG(income) AS m "
        "FROM households GROUP BY region",
        table="households",
        schema=SCHEMA,
    )
    m = dp.mechanism_build(plan=plan, unit=UNIT, epsilon=1.0)
    frame = data.lazy()
    cells: dict[str, list[tuple[float, float, list[float]]]] = {"n": [], "s": [], "m": []}
    for _ in range(RELEASES):
        release = dp.mechanism_release(mechanism=m, frame=frame)
        assert [row[0] for row in release.rows] == REGIONS
        for row, intervals in zip(release.rows, release.intervals, strict=True):
            assert intervals[0] is None  # a public key has no noise
            for index, name in enumerate(("n", "s", "m"), start=1):
                interval = intervals[index]
                assert interval is not None and interval[0] <= interval[1]
                cells[name].append((float(row[index]), truth[row[0]][index - 1], interval))

    for name in ("n", "s", "m"):
        values = cells[name]
        errors = np.array([abs(value - true) for value, true, _ in values])
        halves = np.array([(high - low) / 2 for _, _, (low, high) in values])
        # Noisy: hardly any cell is the truth (without noise every one is).
        exact = float(np.mean(errors <= 1e-9 * np.abs([true for _, true, _ in values])))
        assert exact < 0.2, (name, exact)
        # Honest: the 95% intervals cover the truth (expected >= 95%; 5 sd of slack).
        covered = float(np.mean([low <= true <= high for _, true, (low, high) in values]))
        assert covered >= 0.85, (name, covered)
        if name == "m":
            continue  # a mean's interval is clipped to the bounds and combines two noises
        # Not wider than the noise: for Laplace noise, |error| > half/4 with P = 20^-1/4
        # = 0.47; a release without noise (or far less than published) has none.
        wide = float(np.mean(errors > halves / 4))
        assert wide >= 0.25, (name, wide)
