"""Inline SVG drawn on the server (no script, no CDN): privacy budget spent over time.

Every label is escaped; coordinates are numbers we compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 240
LEFT = 56
RIGHT = 16
TOP = 16
BOTTOM = 40


def budget_line_chart(
    points: Sequence[tuple[datetime, float]], total: float, *, title: str
) -> SafeString:
    """A step line of spent epsilon against time, with the dataset's total as a dashed line."""
    if not points:
        return mark_safe("")  # noqa: S308 - constant
    times = [p[0].timestamp() for p in points]
    start, end = min(times), max(times)
    span = (end - start) or 1.0
    top_value = max(total, max(p[1] for p in points)) or 1.0
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - start) / span * plot_w if end > start else LEFT + plot_w / 2

    def y(v: float) -> float:
        return TOP + plot_h - v / top_value * plot_h

    path: list[str] = []
    previous_y = y(0.0)
    path.append(f"{LEFT:.1f},{previous_y:.1f}")
    for t, value in zip(times, (p[1] for p in points), strict=True):
        path.append(f"{x(t):.1f},{previous_y:.1f}")  # budget stays flat until the next charge
        previous_y = y(value)
        path.append(f"{x(t):.1f},{previous_y:.1f}")
    path.append(f"{LEFT + plot_w:.1f},{previous_y:.1f}")
    ticks = []
    for fraction in (0.0, 0.5, 1.0):
        value = top_value * fraction
        ticks.append(
            f'<line x1="{LEFT - 4}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="#dde2ea"/><text x="{LEFT - 8}" y="{y(value) + 4:.1f}" font-size="11" '
            f'text-anchor="end">{value:.2f}</text>'
        )
    first_label = escape(points[0][0].strftime("%Y-%m-%d %H:%M"))
    last_label = escape(points[-1][0].strftime("%Y-%m-%d %H:%M"))
    dots = "".join(
        f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="#2457c5"/>'
        for t, v in zip(times, (p[1] for p in points), strict=True)
    )
    svg = (
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        + "".join(ticks)
        + f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(total):.1f}" y2="{y(total):.1f}" '
        f'stroke="#b3261e" stroke-dasharray="5 4"/>'
        f'<text x="{LEFT + plot_w}" y="{y(total) - 4:.1f}" font-size="11" text-anchor="end" '
        f'fill="#b3261e">total ε {total:.2f}</text>'
        f'<polyline fill="none" stroke="#2457c5" stroke-width="2" points="{" ".join(path)}"/>'
        + dots
        + f'<text x="{LEFT}" y="{HEIGHT - 12}" font-size="11">{first_label}</text>'
        f'<text x="{LEFT + plot_w}" y="{HEIGHT - 12}" font-size="11" text-anchor="end">'
        f"{last_label}</text></svg>"
    )
    return mark_safe(svg)  # noqa: S308 - numbers we computed and escaped labels
