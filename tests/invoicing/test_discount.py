"""Discount lines (pure): eligibility, order, caps, exact rounding, lineage, periods; properties with hypothesis."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.catalog import ActiveDiscount, Redemption
from invoicing.documents._discount import after_redemptions, discount_lines
from invoicing.documents._rater import DraftLine

P0 = datetime(2026, 1, 1, tzinfo=UTC)
P1 = datetime(2026, 2, 1, tzinfo=UTC)
P2 = datetime(2026, 3, 1, tzinfo=UTC)


def line(amount: int, *, kind: str = "charge", code: str = "base", sub: int = 7, start: datetime = P1,
         end: datetime | None = None, group: str = "") -> DraftLine:  # fmt: skip
    return DraftLine(
        kind=kind, charge_code=code, meter=None, group_key=group, plan_version_id=3, period_start=start,
        period_end=end or start + timedelta(days=28), quantity_units=1, quantity_scale=0, unit_price=None,
        amount=amount, amount_exact=str(Decimal(amount).scaleb(-2)), detail={},
        lineage={"item": f"{sub}:3:in_advance:{start.isoformat()}"},
    )  # fmt: skip


def percent(p: str, id: int = 1, **kw: Any) -> ActiveDiscount:
    values: dict[str, Any] = dict(
        id=id, coupon=f"c{id}", kind="percent", percent=Decimal(p), amount=None, currency=None, duration="forever",
        customer_id=1, subscription_id=None, applies_to=None, applied_at=P0, periods_remaining=None,
    )  # fmt: skip
    values.update(kw)
    return ActiveDiscount(**values)


def amount(minor: int, id: int = 2, currency: str = "USD", **kw: Any) -> ActiveDiscount:
    values: dict[str, Any] = dict(
        id=id, coupon=f"c{id}", kind="amount", percent=None, amount=minor, currency=currency, duration="forever",
        customer_id=1, subscription_id=None, applies_to=None, applied_at=P0, periods_remaining=None,
    )  # fmt: skip
    values.update(kw)
    return ActiveDiscount(**values)


def test_percent_is_one_line_rounded_once_half_even_with_the_exact_amount_kept() -> None:
    # 12.5% of (10.01 + 3.33) = 1.6675 → 1.67
    lines = [line(1001), line(333, code="calls")]
    extra, used = discount_lines(lines, [percent("12.5")], "USD")
    assert len(extra) == 1
    d = extra[0]
    assert (d.kind, d.charge_code, d.amount, d.amount_exact) == ("discount", "c1", -167, "-1.6675")
    assert d.detail["percent"] == "12.5" and d.detail["base"] == 1334 and d.detail["rounding"] == "half_even"
    assert d.lineage == {"discount": 1, "coupon": "c1", "item": lines[0].lineage["item"]}
    assert sum(a["amount"] for a in d.detail["allocation"]) == 167
    assert used == [Redemption(1, P1, 167, "USD")]
    # half even: 50% of 0.05 = 0.025 → 0.02
    # rounded once per discount, not per line: 50% of 1.01 + 1.01 = 1.01 (per line: 0.50 + 0.50)
    assert discount_lines([line(101), line(101, code="calls")], [percent("50")], "USD")[0][0].amount == -101
    assert discount_lines([line(5)], [percent("50")], "USD")[0][0].amount == -2


def test_only_positive_priced_lines_are_eligible() -> None:
    lines = [
        line(1000), line(500, kind="minimum_true_up", code="invoice_minimum"),
        line(200, kind="proration_adjustment"), line(-300, kind="proration_adjustment"),
        line(400, kind="tax", code="tax"), line(-100, kind="credit"), line(-50, kind="sla_credit", code="sla"),
        line(700, kind="points", code="pts"),
    ]  # fmt: skip
    extra, _ = discount_lines(lines, [percent("10")], "USD")
    assert extra[0].detail["base"] == 1700 and extra[0].amount == -170


def test_amount_coupon_is_capped_at_the_eligible_lines_and_at_the_subtotal() -> None:
    extra, used = discount_lines([line(300)], [amount(500)], "USD")
    assert extra[0].amount == -300 and extra[0].detail["capped"] is True and extra[0].amount_exact == "-3.00"
    assert used[0].amount == 300
    # an SLA credit already lowered the document: the discount never takes it below zero
    extra, _ = discount_lines([line(300), line(-250, kind="sla_credit", code="sla")], [amount(500)], "USD")
    assert extra[0].amount == -50
    # 100% off a document with a cap adjustment: the subtotal binds
    extra, _ = discount_lines(
        [line(300), line(-100, kind="cap_adjustment", code="invoice_cap")], [percent("100")], "USD"
    )
    assert extra[0].amount == -200 and extra[0].detail["capped"] is True


def test_several_discounts_apply_in_order_each_on_what_is_left() -> None:
    lines = [line(1000)]
    extra, _ = discount_lines(lines, [amount(300), percent("50")], "USD")
    assert [d.amount for d in extra] == [-300, -350]
    assert extra[1].detail["base"] == 700
    extra, _ = discount_lines(lines, [percent("50"), amount(300)], "USD")
    assert [d.amount for d in extra] == [-500, -300]
    extra, _ = discount_lines(lines, [percent("100"), amount(300)], "USD")
    assert [d.amount for d in extra] == [-1000]  # nothing left for the second one: no line, no period used


def test_subscription_discount_and_applies_to_select_their_lines() -> None:
    lines = [line(1000, sub=7), line(400, sub=8), line(200, sub=7, code="calls")]
    extra, _ = discount_lines(lines, [percent("10", subscription_id=8)], "USD")
    assert extra[0].detail["base"] == 400 and extra[0].lineage["item"].startswith("8:")
    extra, _ = discount_lines(lines, [percent("10", applies_to=frozenset({"calls"}))], "USD")
    assert extra[0].detail["base"] == 200
    # "7:" must not match subscription 70
    assert discount_lines([line(1000, sub=70)], [percent("10", subscription_id=7)], "USD") == ([], [])
    extra, _ = discount_lines(lines, [percent("10")], "USD")
    assert sorted(extra[0].lineage["items"]) == extra[0].lineage["items"] and len(extra[0].lineage["items"]) == 2


def test_amount_coupon_in_another_currency_or_nothing_eligible_gives_nothing() -> None:
    assert discount_lines([line(1000)], [amount(100, currency="EUR")], "USD") == ([], [])
    assert discount_lines([line(-1000, kind="proration_adjustment")], [percent("10")], "USD") == ([], [])
    assert discount_lines([line(1)], [percent("10")], "USD") == ([], [])  # rounds to 0: no line, no period


def test_amount_in_a_zero_decimal_currency() -> None:
    extra, _ = discount_lines([line(1234)], [amount(500, currency="JPY"), percent("33.3")], "JPY")
    assert [d.amount for d in extra] == [-500, -244]  # 33.3% of 734 = 244.422
    assert extra[0].amount_exact == "-500" and extra[1].amount_exact == "-244.422"


def test_periods_once_repeating_and_reruns() -> None:
    once = percent("10", duration="once", periods_remaining=1)
    # in advance for P1 and in arrears for P0 on one document: the document's period is the latest, P1
    lines = [line(1000, start=P1), line(500, start=P0, code="calls")]
    extra, used = discount_lines(lines, [once], "USD")
    assert used == [Redemption(1, P1, 150, "USD")] and extra[0].detail["periods_remaining"] == 0
    spent = after_redemptions([once], used)[0]
    assert spent.periods_remaining == 0 and spent.redeemed == frozenset({P1})
    # the same period again (a re-run): discounted again, counted once
    again, used_again = discount_lines(lines, [spent], "USD")
    assert [d.amount for d in again] == [-150] and used_again == used
    assert after_redemptions([spent], used_again) == [spent]
    # the next period: nothing left
    assert discount_lines([line(1000, start=P2)], [spent], "USD") == ([], [])
    forever = percent("10")
    assert after_redemptions([forever], [Redemption(1, P2, 1, "USD")])[0].periods_remaining is None


def test_deterministic_and_inputs_untouched() -> None:
    lines = [line(1001), line(333, code="calls"), line(77, sub=8)]
    before = [replace(ln) for ln in lines]
    ds = [percent("33.333", id=1), amount(100, id=2), percent("7", id=3, subscription_id=8)]
    assert discount_lines(lines, ds, "USD") == discount_lines(lines, ds, "USD")
    assert lines == before


# --- properties ------------------------------------------------------------------------------------------------
KINDS = ["charge", "charge", "minimum_true_up", "proration_adjustment", "sla_credit", "tax", "credit", "cap_adjustment"]

line_st = st.builds(
    lambda amount, kind, code, sub, period: line(amount, kind=kind, code=code, sub=sub, start=[P0, P1, P2][period]),
    st.integers(-10_000, 1_000_000), st.sampled_from(KINDS), st.sampled_from(["base", "calls", "seats"]),
    st.sampled_from([7, 8]), st.integers(0, 2),
)  # fmt: skip
percent_st = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100), places=3).map(lambda d: d.normalize())


@st.composite
def discount_st(draw: st.DrawFn, id: int) -> ActiveDiscount:
    duration = draw(st.sampled_from(["once", "repeating", "forever"]))
    remaining = None if duration == "forever" else draw(st.integers(0, 3))
    common: dict[str, Any] = dict(
        duration=duration, periods_remaining=remaining,
        subscription_id=draw(st.sampled_from([None, 7, 8])),
        applies_to=draw(st.sampled_from([None, frozenset({"base"}), frozenset({"calls", "seats"})])),
        redeemed=frozenset(draw(st.sets(st.sampled_from([P0, P1, P2]), max_size=2))),
    )  # fmt: skip
    if draw(st.booleans()):
        return percent(str(draw(percent_st)), id=id, **common)
    return amount(draw(st.integers(1, 2_000_000)), id=id, **common)


@st.composite
def discounts_st(draw: st.DrawFn) -> list[ActiveDiscount]:
    return [draw(discount_st(i)) for i in range(1, draw(st.integers(0, 4)) + 1)]


def reference(lines: list[DraftLine], ds: list[ActiveDiscount]) -> list[tuple[int, Decimal]]:
    """The rules again, written plainly with Decimal: (rounded minor units, exact minor units) per line."""
    left = {i: ln.amount for i, ln in enumerate(lines)}
    room = max(0, sum(ln.amount for ln in lines if ln.kind not in ("tax", "credit", "points")))
    out = []
    for d in ds:
        elig = [
            i for i, ln in enumerate(lines)
            if ln.kind in ("charge", "minimum_true_up", "proration_adjustment") and ln.amount > 0
            and (d.applies_to is None or ln.charge_code in d.applies_to)
            and (d.subscription_id is None or ln.lineage["item"].split(":")[0] == str(d.subscription_id))
        ]  # fmt: skip
        base = sum(left[i] for i in elig)
        if base <= 0:
            continue
        period = max(lines[i].period_start for i in elig)
        if d.periods_remaining is not None and d.periods_remaining <= 0 and period not in d.redeemed:
            continue
        if d.kind == "percent":
            assert d.percent is not None
            with localcontext() as ctx:
                ctx.prec = 60
                exact = Decimal(base) * d.percent / 100
                rounded = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        else:
            assert d.amount is not None
            exact = Decimal(min(d.amount, base))
            rounded = int(exact)
        take = min(rounded, room)
        if take < rounded:
            exact = Decimal(take)
        if take <= 0:
            continue
        # spread in proportion to what each line has left, largest remainder first (ties: earlier line)
        quotas = {i: Fraction(take * left[i], base) for i in elig}
        shares = {i: math.floor(q) for i, q in quotas.items()}
        for i in sorted(elig, key=lambda i: (-(quotas[i] - shares[i]), i))[: take - sum(shares.values())]:
            shares[i] += 1
        for i in elig:
            left[i] -= shares[i]
        room -= take
        out.append((take, exact))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(line_st, max_size=8), discounts_st())
def test_property_exact_capped_deterministic(lines: list[DraftLine], ds: list[ActiveDiscount]) -> None:
    extra, used = discount_lines(lines, ds, "USD")
    assert (extra, used) == discount_lines(lines, ds, "USD")  # deterministic
    assert len(extra) == len(used)
    subtotal = sum(ln.amount for ln in lines if ln.kind not in ("tax", "credit", "points"))
    total = -sum(d.amount for d in extra)
    assert all(d.amount < 0 for d in extra)
    assert total <= max(0, subtotal)  # never below zero
    for d, u in zip(extra, used, strict=True):
        # never more than the eligible base it was computed on, and spread without exceeding any line
        assert -d.amount <= d.detail["base"] and u.amount == -d.amount
        assert sum(a["amount"] for a in d.detail["allocation"]) == -d.amount
        # rounded once, half even, from the exact amount it keeps
        exact = Decimal(d.amount_exact).scaleb(2)
        assert int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) == d.amount
    # the eligible lines' net never goes negative
    net: dict[tuple[str, str, str], int] = {}
    for ln in lines:
        if ln.kind in ("charge", "minimum_true_up", "proration_adjustment") and ln.amount > 0:
            key = (ln.lineage["item"], ln.charge_code, ln.group_key)
            net[key] = net.get(key, 0) + ln.amount
    for d in extra:
        for a in d.detail["allocation"]:
            net[(a["item"], a["charge"], a["group"])] -= a["amount"]
    assert all(v >= 0 for v in net.values())
    # same amounts as the plain Decimal reference (the base of a later discount depends only on totals taken)
    assert [(-d.amount, -Decimal(d.amount_exact).scaleb(2)) for d in extra] == reference(lines, ds)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 100_000), st.integers(0, 5)), min_size=1, max_size=12),
    st.sampled_from(["once", "repeating", "forever"]),
    st.integers(1, 4),
)
def test_property_periods_used_respect_the_duration(docs: list[tuple[int, int]], duration: str, n: int) -> None:
    """Documents of a customer in any order (re-runs included): a once/repeating discount discounts at most
    1/N distinct periods, each period's document every time it is assembled."""
    limit = {"once": 1, "repeating": n, "forever": None}[duration]
    d = percent("10", duration=duration, periods_remaining=limit)
    periods: set[datetime] = set()
    for minor, k in docs:
        start = P0 + timedelta(days=31 * k)
        extra, used = discount_lines([line(minor * 10, start=start)], [d], "USD")
        if extra:
            periods.add(used[0].period_start)
        elif limit is not None:
            assert len(d.redeemed) == limit and start not in d.redeemed  # only refused when spent
        d = after_redemptions([d], used)[0]
        if start in d.redeemed:  # a period once discounted is discounted on every re-run
            assert discount_lines([line(minor * 10, start=start)], [d], "USD")[0]
    assert limit is None or len(periods) <= limit
