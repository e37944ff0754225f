"""Inline SVG charts rendered on the server (no CDN, no script): bars with 95% error bars.

Only released (noisy) values and their intervals are drawn; every label is escaped.
"""

from __future__ import annotations

import math
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 260
MARGIN_LEFT = 70
MARGIN_BOTTOM = 50
MARGIN_TOP = 16


def _fmt(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def error_bar_chart(result: dict[str, Any] | None, column: str | None = None) -> SafeString:
    """A bar per row of the first (or named) aggregate column, with its 95% interval."""
    if not result or not result.get("rows"):
        return mark_safe("")  # noqa: S308 - constant
    columns: list[str] = result["columns"]
    aggregates = [entry["column"] for entry in result.get("column_accuracy", [])]
    candidates = [c for c in aggregates if c in columns]
    if not candidates:
        return mark_safe("")  # noqa: S308 - constant
    chosen = column if column is not None and column in candidates else candidates[0]
    index = columns.index(chosen)
    key_index = next((i for i, name in enumerate(columns) if name not in aggregates), None)
    x_label = columns[key_index] if key_index is not None else "all rows"
    points = []
    for row_number, (row, intervals) in enumerate(
        zip(result["rows"], result["accuracy"], strict=False)
    ):
        value = row[index]
        if value is None or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        interval = intervals[index] if intervals else None
        label = str(row[key_index]) if key_index is not None else f"#{row_number + 1}"
        points.append((label, float(value), interval))
    if not points:
        return mark_safe("")  # noqa: S308 - constant
    highs = [p[2][1] if p[2] else p[1] for p in points] + [p[1] for p in points]
    lows = [p[2][0] if p[2] else p[1] for p in points] + [p[1] for p in points]
    top = max(max(highs), 0.0)
    bottom = min(min(lows), 0.0)
    span = (top - bottom) or 1.0
    plot_height = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    plot_width = WIDTH - MARGIN_LEFT - 10

    def y(value: float) -> float:
        return MARGIN_TOP + plot_height * (top - value) / span

    slot = plot_width / len(points)
    bar = max(4.0, slot * 0.6)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(chosen)} with 95% intervals">',
        f"<title>{escape(chosen)} with 95% intervals</title>",
        # The same axis labels on every chart: the value (y, rotated) and the group (x).
        f'<text class="axis-label" x="14" y="{MARGIN_TOP + (HEIGHT - MARGIN_BOTTOM - MARGIN_TOP) / 2:.1f}" '
        f'text-anchor="middle" font-size="12" fill="#1d2330" '
        f'transform="rotate(-90 14 {MARGIN_TOP + (HEIGHT - MARGIN_BOTTOM - MARGIN_TOP) / 2:.1f})">'
        f"{escape(chosen)} (95% interval)</text>",
        f'<text class="axis-label" x="{MARGIN_LEFT + (WIDTH - MARGIN_LEFT - 10) / 2:.1f}" '
        f'y="{HEIGHT - 8}" text-anchor="middle" font-size="12" fill="#1d2330">'
        f"{escape(x_label)}</text>",
        f'<line x1="{MARGIN_LEFT}" y1="{y(0):.1f}" x2="{WIDTH - 10}" y2="{y(0):.1f}" '
        'stroke="#5b6474" stroke-width="1"/>',
    ]
    for tick in range(5):
        value = bottom + span * tick / 4
        parts.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#5b6474">{escape(_fmt(value))}</text>'
        )
    for number, (label, value, interval) in enumerate(points):
        center = MARGIN_LEFT + slot * (number + 0.5)
        top_y, zero_y = y(max(value, 0.0)), y(min(value, 0.0))
        parts.append(
            f'<rect class="bar" x="{center - bar / 2:.1f}" y="{top_y:.1f}" width="{bar:.1f}" '
            f'height="{max(zero_y - top_y, 0.5):.1f}" fill="#2457c5" opacity="0.75">'
            f"<title>{escape(label)}: {escape(_fmt(value))}</title></rect>"
        )
        if interval:
            low, high = y(interval[0]), y(interval[1])
            parts.append(
                f'<g class="error-bar" stroke="#1d2330" stroke-width="1.5">'
                f'<line x1="{center:.1f}" y1="{high:.1f}" x2="{center:.1f}" y2="{low:.1f}"/>'
                f'<line x1="{center - 6:.1f}" y1="{high:.1f}" x2="{center + 6:.1f}" y2="{high:.1f}"/>'
                f'<line x1="{center - 6:.1f}" y1="{low:.1f}" x2="{center + 6:.1f}" y2="{low:.1f}"/>'
                "</g>"
            )
        parts.append(
            f'<text x="{center:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle" '
            f'font-size="11" fill="#1d2330">{escape(label[:18])}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped


def small_multiples(result: dict[str, Any] | None) -> list[SafeString]:
    """One error-bar chart per released aggregate column, in the result's column order."""
    if not result:
        return []
    aggregates = [entry["column"] for entry in result.get("column_accuracy", [])]
    charts = [
        error_bar_chart(result, column)
        for column in result.get("columns", [])
        if column in aggregates
    ]
    return [chart for chart in charts if chart]


def budget_chart(history: list[dict[str, Any]], total: float) -> SafeString:
    """Cumulative epsilon spent over time against the dataset's total."""
    if not history:
        return mark_safe("")  # noqa: S308 - constant
    plot_height = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    plot_width = WIDTH - MARGIN_LEFT - 10
    top = max(total, history[-1]["cumulative"]) or 1.0
    count = len(history)

    def xy(index: int, value: float) -> str:
        x = MARGIN_LEFT + plot_width * (index + 1) / count
        y = MARGIN_TOP + plot_height * (1 - value / top)
        return f"{x:.1f},{y:.1f}"

    path = " ".join([xy(-1, 0.0)] + [xy(i, point["cumulative"]) for i, point in enumerate(history)])
    total_y = MARGIN_TOP + plot_height * (1 - total / top)
    return mark_safe(  # noqa: S308 - numbers only
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="Privacy budget spent over time">'
        f'<line x1="{MARGIN_LEFT}" y1="{total_y:.1f}" x2="{WIDTH - 10}" y2="{total_y:.1f}" '
        'stroke="#b3261e" stroke-dasharray="4 3"/>'
        f'<text x="{MARGIN_LEFT - 6}" y="{total_y + 4:.1f}" text-anchor="end" font-size="11">'
        f"{total:g}</text>"
        f'<polyline points="{path}" fill="none" stroke="#2457c5" stroke-width="2"/>'
        "</svg>"
    )
