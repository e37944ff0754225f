"""OpenDP 0.16.0 traps, reproduced, and the engine's guards against each of them."""

from __future__ import annotations

import time

import opendp.prelude as opendp
import polars as pl
import pytest

from cleanroom.queries import dp
from cleanroom.queries.sql import compile_sql

opendp.enable_features("contrib")
SCHEMA = {
    "columns": [
        {"name": "region", "type": "string", "categories": ["a", "b"]},
        {"name": "x", "type": "integer", "lower": 0, "upper": 10},
    ]
}
# Every contributor has exactly one row in one group.
DATA = pl.LazyFrame(
    {
        "contributor_id": list(range(400)),
        "region": ["a", "b"] * 200,
        "x": [1] * 400,
    }
)


def context(margin_by: list[str] | None = None) -> opendp.Context:
    return opendp.Context.compositor(
        data=DATA,
        privacy_unit=opendp.unit_of(contributions=1, identifier="contributor_id"),
        privacy_loss=opendp.loss_of(epsilon=50.0),
        split_evenly_over=1,
        margins=[opendp.polars.Margin(by=margin_by or [], max_length=1000)],
    )


def test_truncate_num_groups_one_drops_every_row() -> None:
    def release_once() -> list[int]:
        released = (
            context()
            .query()
            .truncate_num_groups(1, by=["region"], keep="first")
            .group_by("region")
            .agg(opendp.len(signed=True))
            .with_keys(pl.LazyFrame({"region": ["a", "b"]}))
            .release()
            .collect()
        )
        return list(released["len"])

    # The trap: rank("dense") starts at 1, so `< 1` keeps nothing; the truth is 200 each.
    # The noise is Integer Laplace with scale 20 (`.summarize()`), so one release may stray
    # past 100 (P = 0.007 per cell): average 20 cells (standard error ~6.3) to tell "nothing
    # kept" (0) from "everything kept" (200); |mean| >= 100 has P < 1e-15 (Chernoff).
    values = [value for _ in range(10) for value in release_once()]
    assert abs(sum(values) / len(values)) < 100


def test_keep_sample_with_one_grouping_column_fails_at_collect_after_charging() -> None:
    ctx = context()
    once = (
        ctx.query()
        .truncate_num_groups(2, by=["region"], keep="sample")
        .group_by("region")
        .agg(opendp.len(signed=True))
        .with_keys(pl.LazyFrame({"region": ["a", "b"]}))
        .release()
    )
    # The budget is already gone when collect() fails: why the engine dry-runs first.
    assert ctx.current_privacy_loss() == [pytest.approx(50.0)]
    with pytest.raises(opendp.OpenDPException, match="multiple fields"):
        once.collect()


def test_engine_keeps_every_one_row_contributor_with_k_equal_one() -> None:
    plan = compile_sql(
        "SELECT region, COUNT(*) AS n FROM t GROUP BY region", table="t", schema=SCHEMA
    )
    unit = dp.PrivacyUnit(max_rows_per_contributor=1, max_rows=10_000)
    m = dp.mechanism_build(plan=plan, unit=unit, epsilon=50.0)
    release = dp.mechanism_release(mechanism=m, frame=DATA)
    assert [row[0] for row in release.rows] == ["a", "b"]
    assert all(abs(row[1] - 200) < 5 for row in release.rows)


def test_closed_form_calibration_is_much_faster_than_the_default_search() -> None:
    plan = compile_sql(
        "SELECT region, COUNT(*), SUM(x) FROM t GROUP BY region", table="t", schema=SCHEMA
    )
    unit = dp.PrivacyUnit(max_rows_per_contributor=3, max_rows=10_000)
    # CPU time of this process, not wall clock, so a loaded machine cannot fail it. The
    # closed form takes ~4 ms; OpenDP's binary search over the same plan takes ~2 s.
    started = time.process_time()
    for _ in range(5):
        dp.mechanism_build(plan=plan, unit=unit, epsilon=1.0)
    assert (time.process_time() - started) / 5 < 0.2


def test_the_engine_turns_an_in_memory_frame_into_a_scan() -> None:
    from cleanroom.queries.dp.engine import _as_scan

    scan, path = _as_scan(DATA)
    try:
        assert path is not None
        assert not scan.explain(optimized=False).lstrip().startswith("DF [")
        assert scan.collect().equals(DATA.collect())
    finally:
        import os

        if path:
            os.unlink(path)


def test_pool_files_of_a_dead_worker_are_swept() -> None:
    import os
    import subprocess

    from cleanroom.queries.dp.engine import SHM_DIR, SHM_PREFIX, _as_scan

    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = os.path.join(SHM_DIR, f"{SHM_PREFIX}{dead.pid}-leftover.arrow")
    with open(orphan, "wb") as handle:
        handle.write(b"plaintext that must not stay")
    scan, path = _as_scan(DATA)
    try:
        assert not os.path.exists(orphan)
    finally:
        if path:
            os.unlink(path)
