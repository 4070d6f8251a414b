"""Charts as inline SVG drawn on the server: no JavaScript, no frontend build, no CDN.

Colours come from CSS classes (`static/style.css`), so light and dark mode restyle them;
every mark has a `<title>` (a tooltip, and what a screen reader says), and each page also
shows the same numbers in a table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

PALETTE_SIZE = 6  # classes series-0 .. series-5 in style.css


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def funnel_bar(n_in: int | None, n_out: int | None, widest: int, width: int = 220,
               height: int = 14) -> Markup:
    """One stage's bar: the input as a pale bar scaled to the widest input of the run, the
    output as a solid bar over it (a stage with no input count: its output alone)."""
    if n_out is None and n_in is None:
        return Markup("")
    scale = width / max(widest, 1)
    outer = (n_in if n_in is not None else n_out) or 0
    inner = n_out or 0
    title = (f"{n_in} in, {n_out} out" if n_in is not None else f"{n_out} out")
    return Markup(
        f'<svg class="bar" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" viewBox="0 0 {width} {height}">'
        f"<title>{escape(title)}</title>"
        f'<rect class="bar-in" x="0" y="0" width="{_num(outer * scale)}" height="{height}"/>'
        f'<rect class="bar-out" x="0" y="2" width="{_num(inner * scale)}" '
        f'height="{height - 4}"/></svg>'
    )


def histogram(low: float, high: float, counts: Sequence[int], width: int = 480,
              height: int = 140) -> Markup:
    """Equal-width bins from `low` to `high`, a bar each, with the axis ends labelled."""
    top, bottom = 8, 22
    plot = height - top - bottom
    peak = max(counts) if counts else 0
    step = width / max(len(counts), 1)
    span = (high - low) / max(len(counts), 1)
    marks = []
    for i, n in enumerate(counts):
        h = plot * n / peak if peak else 0
        lo, hi = low + i * span, low + (i + 1) * span
        marks.append(
            f'<rect class="hist" x="{_num(i * step + 1)}" y="{_num(top + plot - h)}" '
            f'width="{_num(max(step - 2, 1))}" height="{_num(h)}">'
            f"<title>{lo:.4g} to {hi:.4g}: {n}</title></rect>")
    label = f"scores from {low:.4g} to {high:.4g}, {sum(counts)} candidates"
    return Markup(
        f'<svg class="chart" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {width} {height}">'
        f'<line class="axis" x1="0" y1="{top + plot}" x2="{width}" y2="{top + plot}"/>'
        + "".join(marks)
        + f'<text class="tick" x="0" y="{height - 6}">{low:.4g}</text>'
        f'<text class="tick" x="{width}" y="{height - 6}" text-anchor="end">{high:.4g}</text>'
        f'<text class="tick" x="{width / 2}" y="{height - 6}" text-anchor="middle">'
        f"max {peak} in a bin</text></svg>"
    )


def lines(days: Sequence[str], series: Mapping[str, Sequence[float | None]], *,
          unit: str = "", width: int = 640, height: int = 200,
          percent: bool = False) -> Markup:
    """One line per series over the days (a point per day that has a value), with a legend.

    `percent`: values are ratios, drawn on a 0-100% axis."""
    left, right, top, bottom = 70, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None]
    high = 1.0 if percent else (max(values) if values else 1.0) or 1.0
    step = plot_w / max(len(days) - 1, 1)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / high

    def fmt(v: float) -> str:
        return f"{v:.0%}" if percent else f"{v:.3g}{unit}"

    parts = [f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
             f'y2="{top + plot_h}"/>',
             f'<text class="tick" x="{left - 4}" y="{top + 8}" text-anchor="end">'
             f"{escape(fmt(high))}</text>",
             f'<text class="tick" x="{left - 4}" y="{top + plot_h}" text-anchor="end">'
             f"{escape(fmt(0))}</text>"]
    if days:
        parts.append(f'<text class="tick" x="{left}" y="{height - 6}">{escape(days[0])}</text>')
        if len(days) > 1:
            parts.append(f'<text class="tick" x="{width - right}" y="{height - 6}" '
                         f'text-anchor="end">{escape(days[-1])}</text>')
    for k, (name, vs) in enumerate(series.items()):
        cls = f"series-{k % PALETTE_SIZE}"
        points = [(left + i * step, y(v), v, days[i]) for i, v in enumerate(vs)
                  if v is not None]
        if len(points) > 1:
            path = " ".join(f"{_num(px)},{_num(py)}" for px, py, _v, _d in points)
            parts.append(f'<polyline class="line {cls}" points="{path}"/>')
        for px, py, v, day in points:
            parts.append(f'<circle class="dot {cls}" cx="{_num(px)}" cy="{_num(py)}" r="3">'
                         f"<title>{escape(name)} {escape(day)}: {escape(fmt(v))}</title>"
                         "</circle>")
    legend = "".join(f'<li><span class="swatch series-{k % PALETTE_SIZE}"></span>'
                     f"{escape(name)}</li>" for k, name in enumerate(series))
    return Markup(
        f'<figure class="linechart"><svg class="chart" width="{width}" height="{height}" '
        f'role="img" aria-label="one line per stage, by day" viewBox="0 0 {width} {height}">'
        + "".join(parts) + f'</svg><ul class="legend">{legend}</ul></figure>'
    )


def hbars(rows: Sequence[tuple[str, float | None]], *, unit: str = " ms",
          width: int = 360) -> Markup:
    """Horizontal bars, one per named value (e.g. p90 duration per stage)."""
    high = max((v for _n, v in rows if v is not None), default=0.0) or 1.0
    row_h, label_w = 20, 150
    height = row_h * len(rows) + 4
    parts = []
    for i, (name, v) in enumerate(rows):
        y = i * row_h + 2
        w = (width - label_w - 70) * (v or 0) / high
        text = "-" if v is None else f"{v:.4g}{unit}"
        parts.append(
            f'<text class="tick" x="{label_w - 6}" y="{y + 13}" text-anchor="end">'
            f"{escape(name[:24])}</text>"
            f'<rect class="hist" x="{label_w}" y="{y + 2}" width="{_num(w)}" height="{row_h - 6}">'
            f"<title>{escape(name)}: {escape(text)}</title></rect>"
            f'<text class="tick" x="{_num(label_w + w + 4)}" y="{y + 13}">{escape(text)}</text>')
    return Markup(
        f'<svg class="chart" width="{width}" height="{height}" role="img" '
        f'aria-label="one bar per stage" viewBox="0 0 {width} {height}">'
        + "".join(parts) + "</svg>"
    )
