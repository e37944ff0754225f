"""Compact pool membership, and the server-rendered chart (escaped, noisy values only)."""

from __future__ import annotations

import doctest

import numpy as np

from cleanroom.queries import membership
from cleanroom.queries.charts import budget_chart, error_bar_chart


def test_membership_doctests() -> None:
    assert doctest.testmod(membership).failed == 0


def test_a_hundred_thousand_contiguous_members_are_a_few_bytes() -> None:
    members = np.arange(1, 100_001, dtype=np.int64)
    members = np.delete(members, [10, 500, 99_000])  # three withdrew
    blob = membership.ranges_encode(members)
    assert len(blob) < 100
    assert np.array_equal(membership.ranges_members(blob), members)
    assert not membership.ranges_contain(blob, 11) and membership.ranges_contain(blob, 12)


def test_chart_draws_one_bar_and_error_bar_per_row_and_escapes_labels() -> None:
    result = {
        "columns": ["region", "n"],
        "rows": [["<script>alert(1)</script>", 10], ["south", 20]],
        "accuracy": [[None, [5.0, 15.0]], [None, [14.0, 26.0]]],
        "column_accuracy": [{"column": "n"}],
    }
    svg = str(error_bar_chart(result))
    assert svg.count('class="bar"') == 2
    assert svg.count('class="error-bar"') == 2
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert error_bar_chart(None) == ""
    assert "polyline" in str(budget_chart([{"cumulative": 0.5}, {"cumulative": 1.0}], 2.0))


def test_small_multiples_draw_every_aggregate_with_the_same_axis_labels() -> None:
    from cleanroom.queries.charts import small_multiples

    result = {
        "columns": ["region", "n", "mean_income", "median_age"],
        "rows": [["north", 10, 35000.5, 40], ["south", 20, 41000.0, 44]],
        "accuracy": [
            [None, [5.0, 15.0], [30000.0, 41000.0], None],
            [None, [14.0, 26.0], [36000.0, 46000.0], None],
        ],
        "column_accuracy": [{"column": "n"}, {"column": "mean_income"}, {"column": "median_age"}],
    }
    charts = [str(chart) for chart in small_multiples(result)]
    assert len(charts) == 3  # one per aggregate: count, mean and the quantile
    for chart, column in zip(charts, ["n", "mean_income", "median_age"], strict=True):
        assert f">{column} (95% interval)</text>" in chart  # the y axis names the value
        assert ">region</text>" in chart  # the x axis names the group key
        assert chart.count('class="bar"') == 2
    assert charts[2].count('class="error-bar"') == 0  # quantiles carry no interval
    assert small_multiples(None) == []
