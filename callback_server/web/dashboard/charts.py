"""Charts drawn on the server as SVG: no script, no CDN, nothing a CSP has to allow.

Input is what :func:`callback_server.stats.minutes` returns; output is markup made only of
numbers, fixed series names and times, each escaped, with presentation attributes (which a
CSP without ``unsafe-inline`` still allows, unlike ``style=``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

from callback_server import stats

WIDTH, HEIGHT = 720, 170
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 8, 22

COLORS = {
    "queued": "#2f7ed8",
    "duplicate": "#8bbc21",
    "quarantined": "#f28f43",
    "unavailable": "#c42525",
    "done": "#2f7ed8",
    "failed": "#c42525",
    "p50": "#2f7ed8",
    "p99": "#c42525",
}


@dataclass(frozen=True)
class Bar:
    """Counts of a span of minutes starting at ``start`` (a Unix minute)."""

    start: int
    counts: dict[str, float]


def bars(minutes: Sequence[tuple[int, dict[str, float]]], size: int) -> list[Bar]:
    """Minutes summed into bars of ``size`` minutes (the last day in 15-minute bars, say)."""
    out: list[Bar] = []
    for index in range(0, len(minutes), size):
        chunk = minutes[index : index + size]
        summed: dict[str, float] = {}
        for _, counts in chunk:
            for name, value in counts.items():
                summed[name] = summed.get(name, 0.0) + value
        out.append(Bar(chunk[0][0], summed))
    return out


def _clock(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")


def _nice_max(value: float) -> float:
    """A round upper bound for an axis."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 < value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if value <= step * factor:
            return step * factor
    return step * 10


def _frame(
    title: str, top: float, unit: str, series: Sequence[str], first: int, last: int, kind: str, total: float
) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'data-kind="{escape(kind)}" data-total="{total:g}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" font-size="10">{top:g}{escape(unit)}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="10">{_clock(first)}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end" font-size="10">{_clock(last)} UTC</text>',
    ]
    x = LEFT + 90
    for name in series:
        parts.append(f'<rect x="{x}" y="{HEIGHT - 15}" width="9" height="9" fill="{COLORS.get(name, "#666")}"/>')
        parts.append(f'<text x="{x + 12}" y="{HEIGHT - 6}" font-size="10">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return parts


def stacked_bars(title: str, data: Sequence[Bar], prefix: str, series: Sequence[str], minutes_each: int) -> Markup:
    """Bars of ``prefix|<series>`` counts per bar, stacked in ``series`` order."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(b.counts.get(stats.field(prefix, s), 0.0) for s in series) for b in data]
    top = _nice_max(max(totals, default=0.0))
    slot = plot_w / max(len(data), 1)
    parts = _frame(
        title,
        top,
        "",
        series,
        data[0].start if data else 0,
        (data[-1].start + minutes_each - 1) if data else 0,
        "bars",
        sum(totals),
    )
    for index, bar in enumerate(data):
        base = float(TOP + plot_h)
        for name in series:
            value = bar.counts.get(stats.field(prefix, name), 0.0)
            if value <= 0:
                continue
            height = value / top * plot_h
            base -= height
            parts.append(
                f'<rect class="bar" x="{LEFT + index * slot + 0.5:.1f}" y="{base:.1f}" '
                f'width="{max(slot - 1, 0.8):.1f}" height="{height:.1f}" fill="{COLORS.get(name, "#666")}">'
                f"<title>{_clock(bar.start)} {escape(name)}: {value:g}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def latency_lines(title: str, data: Sequence[Bar]) -> Markup:
    """Ack latency p50 and p99 per bar (the upper bound of the histogram bucket), in ms."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    quantiles = {
        name: [stats.quantile(b.counts, "ack", stats.ACK_BUCKETS_MS, q) for b in data]
        for name, q in (("p50", 0.5), ("p99", 0.99))
    }
    finite = [v for values in quantiles.values() for v in values if v is not None and v != float("inf")]
    top = _nice_max(max(finite, default=0.0))
    slot = plot_w / max(len(data), 1)
    seen = sum(1 for v in quantiles["p50"] if v is not None)
    parts = _frame(
        title, top, " ms", list(quantiles), data[0].start if data else 0, data[-1].start if data else 0, "lines", seen
    )
    for name, values in quantiles.items():
        segment: list[str] = []
        segments: list[list[str]] = []
        for index, value in enumerate(values):
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            shown = min(value, top)
            x = LEFT + index * slot + slot / 2
            y = TOP + plot_h - shown / top * plot_h
            segment.append(f"{x:.1f},{y:.1f}")
        if segment:
            segments.append(segment)
        for points in segments:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle class="point" cx="{cx}" cy="{cy}" r="2" fill="{COLORS[name]}"/>')
            else:
                parts.append(
                    f'<polyline class="line" points="{" ".join(points)}" fill="none" '
                    f'stroke="{COLORS[name]}" stroke-width="1.5"/>'
                )
    parts.append("</svg>")
    return Markup("".join(parts))
