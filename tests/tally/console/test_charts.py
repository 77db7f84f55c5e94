"""Server-side SVG charts: round ticks covering every value, exact figures in the labels and the table,
the accessible structure (role, title, description), escaping, and negatives below the axis."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.console._app import money
from tally.console._charts import Series, bar_chart, line_chart, nice_step, stacked_bar_chart


def usd(v: Decimal) -> str:
    return money(v, "USD")


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e12"), places=2))
def test_a_tick_step_is_round_and_gives_at_most_about_five_ticks(span: Decimal) -> None:
    step = nice_step(span)
    mantissa = step.scaleb(-step.adjusted()).normalize()
    assert mantissa in (1, 2, 5, 10) and span / step <= 4 and span / step > Decimal("0.8")


def test_a_bar_chart_is_an_accessible_picture_with_its_exact_figures() -> None:
    chart = bar_chart("Revenue by plan, USD", ["pro", "<lite>"], [Series("USD", [Decimal("1234.50"), Decimal("0.01")])],
                      usd, head="Plan")  # fmt: skip
    svg = str(chart.svg)
    assert 'role="img"' in svg and f'aria-labelledby="{chart.id}-t {chart.id}-d"' in svg
    assert "<title id=" in svg and "<desc id=" in svg and "highest 1,234.50 USD (pro)" in chart.desc
    assert "<title>pro: 1,234.50 USD</title>" in svg and "&lt;lite&gt;" in svg and "<lite>" not in svg
    table = str(chart.table)
    assert "<caption>Revenue by plan, USD</caption>" in table and '<th scope="row">pro</th>' in table
    assert "1,234.50 USD" in table and "0.01 USD" in table
    html = chart.__html__()
    assert html.startswith("<figure") and "<details><summary>" in html
    assert len(re.findall(r'<rect class="bar"', svg)) == 2


def test_negative_values_go_below_the_axis_and_stacks_add_up() -> None:
    chart = bar_chart("Net", ["a", "b"], [Series("x", [Decimal(30), Decimal(-10)])], usd)
    zero = re.search(r'<line class="axis zero"[^>]*y1="([\d.]+)"', str(chart.svg))
    assert zero is not None
    bars = re.findall(r'<rect class="bar" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', str(chart.svg))
    (y_up, h_up), (y_down, _) = [(Decimal(y), Decimal(h)) for y, h in bars]
    axis = Decimal(zero.group(1))
    assert y_up + h_up == axis and y_down == axis  # one ends on the axis, the other starts there
    stacked = stacked_bar_chart("Per month by plan", ["2026-01"],
                                [Series("pro", [Decimal(20)]), Series("lite", [Decimal(10)])], usd)  # fmt: skip
    bar = r'<rect class="bar" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"'
    heights = [Decimal(h) for _, h in re.findall(bar, str(stacked.svg))]
    assert heights[0] == 2 * heights[1]  # 20 and 10 on one axis
    assert "pro" in str(stacked.svg) and "lite" in str(stacked.svg)  # the legend names both


def test_a_line_chart_marks_each_point_and_fills_its_area() -> None:
    months = ["2026-01", "2026-02", "2026-03"]
    chart = line_chart("Per month", months, [Series("USD", [Decimal(1), Decimal(3), Decimal(2)])], usd, area=True)
    svg = str(chart.svg)
    assert svg.count('<circle class="point"') == 3 and '<polygon class="area"' in svg and "<polyline" in svg
    assert "<title>2026-02: 3.00 USD</title>" in svg


def test_a_series_must_have_one_value_per_category() -> None:
    with pytest.raises(ValueError, match="2 values for 3 categories"):
        bar_chart("x", ["a", "b", "c"], [Series("s", [Decimal(1), Decimal(2)])])
