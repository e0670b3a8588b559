"""The overview's events-per-hour chart, drawn on the server as inline SVG (no JavaScript)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

_WIDTH, _HEIGHT = 720, 160
_LEFT, _BOTTOM, _TOP = 40, 20, 10


def hourly_bars(points: Sequence[tuple[datetime, int]]) -> Markup:
    """Bars of events per hour, the hour labelled every 6 bars, the peak on the y axis."""
    peak = max((n for _, n in points), default=0)
    plot_w = _WIDTH - _LEFT
    plot_h = _HEIGHT - _BOTTOM - _TOP
    slot = plot_w / max(len(points), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="Events per hour, last {len(points)} hours, peak {peak}">',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_WIDTH}" '
        f'y2="{_TOP + plot_h}"/>',
        f'<text class="label" x="{_LEFT - 4}" y="{_TOP + 8}" text-anchor="end">{peak}</text>',
        f'<text class="label" x="{_LEFT - 4}" y="{_TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (start, count) in enumerate(points):
        height = plot_h * count / peak if peak else 0
        x = _LEFT + i * slot + 1
        y = _TOP + plot_h - height
        title = escape(f"{start:%Y-%m-%d %H}:00 UTC: {count} events")
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot - 2:.1f}" '
            f'height="{height:.1f}"><title>{title}</title></rect>'
        )
        if i % 6 == 0:
            parts.append(f'<text class="label" x="{x:.1f}" y="{_HEIGHT - 4}">{start:%H}:00</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only
