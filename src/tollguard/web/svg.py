"""Small server-rendered SVG charts (no JavaScript): bars for now, a line for normal."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

from markupsafe import Markup

Number = int | float | Decimal


def _fmt(value: Number) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def bar_line_chart(
    chart_id: str,
    bars: Sequence[Number | None],
    line: Sequence[Number | None],
    *,
    ticks: Sequence[tuple[int, str]] = (),
    bar_label: str = "now",
    line_label: str = "normal",
    unit: str = "",
    width: int = 840,
    height: int = 180,
    title: str = "",
    highlight: Sequence[bool] = (),
) -> Markup:
    """Bars (``None``: not yet, drawn as nothing) and a line (``None``: no history).

    Each bar is a ``rect.bar`` with ``data-slot`` and ``data-value``; the line is
    ``polyline.normal``; bars flagged in ``highlight`` get the class ``over``."""
    n = max(len(bars), len(line), 1)
    pad_l, pad_r, pad_t, pad_b = 48, 8, 18, 22
    plot_w = width - pad_l - pad_r
    plot_h = height - pad_t - pad_b
    values = [float(v) for v in (*bars, *line) if v is not None]
    top = max(values, default=0.0)
    top = top * 1.1 if top > 0 else 1.0
    step = plot_w / n

    def y(v: float) -> float:
        return pad_t + plot_h - (v / top) * plot_h

    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title or chart_id)}">',
        f"<title>{escape(title)}</title>" if title else "",
        f'<line class="axis" x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - pad_r}" '
        f'y2="{pad_t + plot_h}"/>',
    ]
    for frac in (0.5, 1.0):
        g = top / 1.1 * frac
        parts.append(
            f'<line class="grid" x1="{pad_l}" y1="{y(g):.1f}" x2="{width - pad_r}" '
            f'y2="{y(g):.1f}"/>'
            f'<text class="ylab" x="{pad_l - 4}" y="{y(g) + 3:.1f}" text-anchor="end">'
            f"{escape(_short(g))}{escape(unit)}</text>"
        )
    for i, v in enumerate(bars):
        if v is None:
            continue
        h = (float(v) / top) * plot_h
        cls = "bar over" if i < len(highlight) and highlight[i] else "bar"
        parts.append(
            f'<rect class="{cls}" data-slot="{i}" data-value="{escape(_fmt(v))}" '
            f'x="{pad_l + i * step + step * 0.1:.1f}" y="{pad_t + plot_h - h:.1f}" '
            f'width="{max(step * 0.8, 0.5):.1f}" height="{h:.1f}">'
            f"<title>{escape(_fmt(v))}{escape(unit)}</title></rect>"
        )
    points = [
        f"{pad_l + i * step + step / 2:.1f},{y(float(v)):.1f}"
        for i, v in enumerate(line)
        if v is not None
    ]
    if points:
        parts.append(f'<polyline class="normal" fill="none" points="{" ".join(points)}"/>')
    for slot, label in ticks:
        x = pad_l + slot * step
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{pad_t + plot_h}" x2="{x:.1f}" '
            f'y2="{pad_t + plot_h + 4}"/><text class="xlab" x="{x + 2:.1f}" '
            f'y="{height - 6}">{escape(label)}</text>'
        )
    parts.append(
        f'<g class="legend"><rect class="bar" x="{width - 190}" y="2" width="10" height="10"/>'
        f'<text x="{width - 176}" y="11">{escape(bar_label)}</text>'
        f'<line class="normal" x1="{width - 100}" y1="7" x2="{width - 86}" y2="7"/>'
        f'<text x="{width - 82}" y="11">{escape(line_label)}</text></g>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def meter(used: Number, limit: Number, *, width: int = 160) -> Markup:
    """A horizontal bar: used against limit (red when over)."""
    share = float(used) / float(limit) if float(limit) > 0 else (1.0 if float(used) else 0.0)
    filled = min(share, 1.0) * width
    cls = "over" if share > 1 else "near" if share >= 0.8 else "ok"
    return Markup(
        f'<svg class="meter {cls}" width="{width}" height="10" viewBox="0 0 {width} 10" '
        f'data-share="{share:.4f}"><rect class="track" width="{width}" height="10"/>'
        f'<rect class="fill" width="{filled:.1f}" height="10"/></svg>'
    )
