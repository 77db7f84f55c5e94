"""Charts as inline SVG, drawn on the server from the exact figures the domain returns.

No JavaScript and nothing fetched: a chart is an `<svg role="img">` with a `<title>` and a `<desc>`
(screen readers announce them), a `<title>` on every bar or point (the value on hover), and the same
figures as an HTML table beside it (`Chart.table`, in a `<details>` the template shows), so every value
can be read exactly, copied, and reached without seeing the picture.

Geometry is computed in Decimal too and rounded to a tenth of a pixel only when written: the labels and
the table print the figures exactly as given (through `fmt`, the console's one money format), never a
float's approximation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

from markupsafe import Markup

#: Series colours, in order: each has a contrast of at least 4.5:1 on white (text-grade, so also the
#: 3:1 WCAG asks of graphics) and they differ in lightness as well as hue.
PALETTE = ("#1f5fa8", "#b3471d", "#2e7d32", "#6a3d9a", "#8a5a00", "#00727a", "#a2185b", "#4d4d4d")
WIDTH = Decimal(720)
HEIGHT = Decimal(300)
LEFT, RIGHT, TOP, BOTTOM = Decimal(92), Decimal(16), Decimal(40), Decimal(44)
BAR_MAX = Decimal(72)  # px: one bar is never wider, however few categories there are
_ids = itertools.count(1)

Fmt = Callable[[Decimal], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Decimal]


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    desc: str
    svg: Markup
    table: Markup

    def __html__(self) -> str:
        """In a template, `{{ chart }}` renders the figure with its picture and its table."""
        return (
            f'<figure class="chart" aria-labelledby="{self.id}-cap">'
            f'<figcaption id="{self.id}-cap">{escape(self.title)}</figcaption>{self.svg}'
            f"<details><summary>Show the figures as a table</summary>{self.table}</details></figure>"
        )


def _px(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.1")), "f")


def nice_step(span: Decimal, ticks: int = 4) -> Decimal:
    """A round tick step (1, 2 or 5 times a power of ten) giving about `ticks` intervals over `span`."""
    if span <= 0:
        return Decimal(1)
    raw = span / ticks
    power = Decimal(1).scaleb(raw.adjusted())
    for m in (1, 2, 5, 10):
        step = power * m
        if step >= raw:
            return step
    return power * 10


def _range(values: Sequence[Decimal]) -> tuple[Decimal, Decimal, Decimal]:
    """(low, high, step): the axis covers zero and every value, on round ticks."""
    low = min([Decimal(0), *values])
    high = max([Decimal(0), *values])
    if low == high:
        high = Decimal(1)
    step = nice_step(high - low)
    low = (low / step).to_integral_value(rounding="ROUND_FLOOR") * step
    high = (high / step).to_integral_value(rounding="ROUND_CEILING") * step
    return low, high, step


class _Plot:
    """The frame: value → y, category → x, axes, grid and legend."""

    def __init__(self, categories: Sequence[str], low: Decimal, high: Decimal, step: Decimal, fmt: Fmt) -> None:
        self.categories = categories
        self.low, self.high, self.step, self.fmt = low, high, step, fmt
        self.ticks = []
        tick = low
        while tick <= high:
            self.ticks.append(tick)
            tick += step
        # The left margin fits the longest value label (about 7 px a character at 12 px).
        self.left = max(LEFT, Decimal(max(len(fmt(t)) for t in self.ticks) * 7 + 14))
        self.inner_w = WIDTH - self.left - RIGHT
        self.band = self.inner_w / max(len(categories), 1)
        # Labels wider than their band are slanted (a few categories) or thinned out (many, e.g. months).
        widest = max((len(_short(c)) for c in categories), default=1) * 7 + 8
        self.slant = widest > self.band and len(categories) <= 16
        self.every = 1 if self.slant else max(1, -(-widest // max(int(self.band), 1)))
        self.bottom = BOTTOM + (Decimal(48) if self.slant else 0)
        self.inner_h = HEIGHT - TOP - self.bottom

    def y(self, value: Decimal) -> Decimal:
        return TOP + self.inner_h - (value - self.low) / (self.high - self.low) * self.inner_h

    def x(self, index: int) -> Decimal:
        """The centre of category `index`'s band."""
        return self.left + self.band * index + self.band / 2

    def axes(self) -> list[str]:
        out = []
        for tick in self.ticks:
            y = _px(self.y(tick))
            cls = "axis zero" if tick == 0 else "grid"
            out.append(f'<line class="{cls}" x1="{_px(self.left)}" x2="{_px(WIDTH - RIGHT)}" y1="{y}" y2="{y}"/>')
            out.append(
                f'<text class="tick" x="{_px(self.left - 6)}" y="{y}" text-anchor="end" dominant-baseline="middle">'
                f"{escape(self.fmt(tick))}</text>"
            )
        for n, label in enumerate(self.categories):
            if n % self.every:
                continue
            x, y = _px(self.x(n)), _px(HEIGHT - self.bottom + 18)
            if self.slant:
                place = f'x="{x}" y="{y}" text-anchor="end" transform="rotate(-35 {x} {y})"'
            else:
                place = f'x="{x}" y="{y}" text-anchor="middle"'
            out.append(f'<text class="tick" {place}>{escape(_short(label))}</text>')
        return out


def _short(label: str, chars: int = 18) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _legend(series: Sequence[Series], left: Decimal = LEFT) -> list[str]:
    if len(series) < 2:
        return []
    out, x = [], left
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        out.append(f'<rect x="{_px(x)}" y="12" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text class="legend" x="{_px(x + 16)}" y="22">{escape(_short(s.name, 24))}</text>')
        x += Decimal(28 + 7 * min(len(s.name), 24))
    return out


def _svg(chart_id: str, title: str, desc: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{chart_id}-t '
        f'{chart_id}-d" xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(desc)}</desc>'
        + "".join(body)
        + "</svg>"
    )


def data_table(title: str, categories: Sequence[str], series: Sequence[Series], fmt: Fmt, head: str = "") -> Markup:
    """The chart's figures: a row per category, a column per series (and a total when stacked)."""
    cols = "".join(f'<th scope="col" class="num">{escape(s.name)}</th>' for s in series)
    rows = []
    for n, cat in enumerate(categories):
        cells = "".join(f'<td class="num">{escape(fmt(s.values[n]))}</td>' for s in series)
        rows.append(f'<tr><th scope="row">{escape(cat)}</th>{cells}</tr>')
    return Markup(
        f'<table class="data"><caption>{escape(title)}</caption><thead><tr><th scope="col">{escape(head)}</th>'
        f"{cols}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _describe(title: str, categories: Sequence[str], series: Sequence[Series], fmt: Fmt) -> str:
    if not categories:
        return f"{title}: no figures yet."
    parts = []
    for s in series:
        if not s.values:
            continue
        top = max(range(len(s.values)), key=lambda i: s.values[i])
        parts.append(f"{s.name}: highest {fmt(s.values[top])} ({categories[top]})")
    return f"{title}, {len(categories)} categories. " + "; ".join(parts) + "."


def _label(category: str, s: Series, value: Decimal, fmt: Fmt, count: int) -> str:
    """A bar's or point's tooltip: the category, the series when there are several, the exact value."""
    return f"{category}, {s.name}: {fmt(value)}" if count > 1 else f"{category}: {fmt(value)}"


def _chart(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Fmt,
    body: list[str],
    desc: str | None,
    head: str,
) -> Chart:
    text = desc or _describe(title, categories, series, fmt)
    return Chart(
        chart_id, title, text, _svg(chart_id, title, text, body), data_table(title, categories, series, fmt, head)
    )


def _check(categories: Sequence[str], series: Sequence[Series]) -> None:
    for s in series:
        if len(s.values) != len(categories):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(categories)} categories")


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Fmt = str,
    *,
    stacked: bool = False,
    desc: str | None = None,
    head: str = "",
) -> Chart:
    """Bars per category: side by side per series, or `stacked` (positives up, negatives down)."""
    _check(categories, series)
    chart_id = f"chart{next(_ids)}"
    if stacked:
        ups = [sum((max(s.values[n], Decimal(0)) for s in series), Decimal(0)) for n in range(len(categories))]
        downs = [sum((min(s.values[n], Decimal(0)) for s in series), Decimal(0)) for n in range(len(categories))]
        low, high, step = _range([*ups, *downs])
    else:
        low, high, step = _range([v for s in series for v in s.values])
    plot = _Plot(categories, low, high, step, fmt)
    body = plot.axes() + _legend(series, plot.left)
    width = min(plot.band * Decimal("0.8"), BAR_MAX * (1 if stacked else len(series)))
    for n, cat in enumerate(categories):
        left = plot.x(n) - width / 2
        up = down = Decimal(0)
        for k, s in enumerate(series):
            value = s.values[n]
            colour = PALETTE[k % len(PALETTE)]
            if stacked:
                if value >= 0:
                    bottom, top = up, up + value
                    up = top
                else:
                    top, bottom = down, down + value
                    down = bottom
                x, w = left, width
            else:
                bottom, top = (Decimal(0), value) if value >= 0 else (value, Decimal(0))
                w = width / len(series)
                x = left + w * k
            y0, y1 = plot.y(top), plot.y(bottom)
            label = _label(cat, s, value, fmt, len(series))
            body.append(
                f'<rect class="bar" x="{_px(x)}" y="{_px(y0)}" width="{_px(max(w - 1, Decimal(1)))}" '
                f'height="{_px(max(y1 - y0, Decimal(0)))}" fill="{colour}"><title>{escape(label)}</title></rect>'
            )
    return _chart(chart_id, title, categories, series, fmt, body, desc, head)


def line_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Fmt = str,
    *,
    area: bool = False,
    desc: str | None = None,
    head: str = "",
) -> Chart:
    """A line per series over ordered categories (periods), points marked; `area` fills under it."""
    _check(categories, series)
    chart_id = f"chart{next(_ids)}"
    low, high, step = _range([v for s in series for v in s.values])
    plot = _Plot(categories, low, high, step, fmt)
    body = plot.axes() + _legend(series, plot.left)
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        points = [(plot.x(n), plot.y(v)) for n, v in enumerate(s.values)]
        if not points:
            continue
        path = " ".join(f"{_px(x)},{_px(y)}" for x, y in points)
        if area:
            base = _px(plot.y(max(low, min(Decimal(0), high))))
            body.append(
                f'<polygon class="area" points="{_px(points[0][0])},{base} {path} {_px(points[-1][0])},{base}" '
                f'fill="{colour}" fill-opacity="0.18"/>'
            )
        body.append(f'<polyline class="line" points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        for (x, y), cat, value in zip(points, categories, s.values, strict=True):
            label = _label(cat, s, value, fmt, len(series))
            body.append(
                f'<circle class="point" cx="{_px(x)}" cy="{_px(y)}" r="4" fill="{colour}">'
                f"<title>{escape(label)}</title></circle>"
            )
    return _chart(chart_id, title, categories, series, fmt, body, desc, head)


def stacked_bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Fmt = str,
    *,
    desc: str | None = None,
    head: str = "",
) -> Chart:
    return bar_chart(title, categories, series, fmt, stacked=True, desc=desc, head=head)


__all__ = ["PALETTE", "Chart", "Series", "bar_chart", "data_table", "line_chart", "nice_step", "stacked_bar_chart"]
