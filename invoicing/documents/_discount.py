"""Discount lines: what the customer's discounts take off a document's rated lines, before tax. Pure.

    extra, used = discount_lines(lines, active, currency)

The rules, and why:
* **Eligible lines** are the positive `charge`, `minimum_true_up` and `proration_adjustment` lines (the
  price of what was sold). Tax, credits, points and SLA credits are not prices, and a negative line is
  already money given back. A subscription's discount sees only the lines of its subscription's due items
  (`lineage["item"]` starts with `"<subscription id>:"`, see `DueItem.key`); `applies_to` narrows the
  lines to those charge codes.
* **One line per discount and document**, kind `discount`, negative, placed before tax: the caller taxes
  the subtotal including it. Its `detail` gives the terms and the `base` (eligible minor units it was
  computed on, after earlier discounts), and how it was spread over the lines (`allocation`), so each
  line's net can be explained; its `lineage` names the discount, the coupon and the item(s).
* **Exact, rounded once.** A percent discount is base × p / 100, exact as `amount_exact`, rounded once
  to the currency's minor unit half even (`RoundingMode.HALF_EVEN`). An amount discount is exact already.
  The base is the lines' rounded amounts: the customer is discounted on the prices they see.
* **Never below zero.** Discounts apply in order (`active_discounts` gives (applied_at, id)), each on
  what the ones before left of its lines, and never take more than that, nor more than what is left of
  the document's subtotal (a cap adjustment or an SLA credit already lowered it): an amount coupon worth
  more than the lines is capped at them, and the rest is not carried over.
* **Periods.** A document's period, for a discount, is the latest service period start among its
  eligible lines (the period the document bills for; an in-arrears usage line of the previous period
  rides along). A `once` or `repeating` discount applies when that period was already counted
  (`ActiveDiscount.redeemed`: a re-run) or when it still has periods left; every discount line comes with
  a `Redemption` for that period, which `record_redemptions` records once however often it is returned.
  A discount whose rounded amount is 0 produces no line and uses no period.

`after_redemptions` folds redemptions into the discounts, for a caller that assembles several documents
of one customer before recording them (a catch-up run over several billing dates).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from invoicing.catalog import ActiveDiscount, Redemption
from invoicing.documents._rater import DraftLine
from rating.rounding import EXACT, RoundingMode, round_scaled
from rating.unit import currency as currency_unit

#: Line kinds a discount may take from (their positive lines only).
ELIGIBLE_KINDS = frozenset({"charge", "minimum_true_up", "proration_adjustment"})
#: Line kinds that settle a subtotal rather than make it up; never part of the discounted base.
SETTLEMENT_KINDS = frozenset({"tax", "credit", "points"})
ROUNDING = RoundingMode.HALF_EVEN
_HUNDRED = Decimal(100)


def _eligible(line: DraftLine, d: ActiveDiscount) -> bool:
    if line.kind not in ELIGIBLE_KINDS or line.amount <= 0:
        return False
    if d.applies_to is not None and line.charge_code not in d.applies_to:
        return False
    if d.subscription_id is not None:
        return str(line.lineage.get("item", "")).startswith(f"{d.subscription_id}:")
    return True


def _applies(d: ActiveDiscount, period: datetime) -> bool:
    return d.periods_remaining is None or period in d.redeemed or d.periods_remaining > 0


def _allocate(total: int, left: Sequence[int]) -> list[int]:
    """`total` (≤ Σ left) spread over `left` in proportion, largest remainder first (ties: earlier line),
    so no share exceeds what is left of its line and the shares add up to `total` exactly."""
    base = sum(left)
    if total == base:
        return list(left)
    shares = [total * x // base for x in left]
    rest = total - sum(shares)
    order = sorted(range(len(left)), key=lambda i: (-(total * left[i] % base), i))
    for i in order[:rest]:
        shares[i] += 1
    return shares


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def discount_lines(
    lines: Sequence[DraftLine], discounts: Sequence[ActiveDiscount], currency: str
) -> tuple[list[DraftLine], list[Redemption]]:
    """The discount lines for `lines` (one document's rated lines) under `discounts` (in the order they
    apply), and the redemption each line uses; see the module docstring for the rules. Nothing is mutated."""
    scale = currency_unit(currency).scale
    left = [ln.amount for ln in lines]
    # What is left of the whole subtotal: no discount may take the document below zero.
    room = max(0, sum(ln.amount for ln in lines if ln.kind not in SETTLEMENT_KINDS and ln.kind != "discount"))
    out: list[DraftLine] = []
    used: list[Redemption] = []
    for d in discounts:
        if d.kind == "amount" and d.currency != currency:
            continue  # an amount in another currency cannot come off this document
        eligible = [i for i, ln in enumerate(lines) if _eligible(ln, d)]
        picked = [i for i in eligible if left[i] > 0]
        if not picked:
            continue
        period = max(lines[i].period_start for i in eligible)
        if not _applies(d, period):
            continue
        base = sum(left[i] for i in picked)
        cap = min(base, room)
        if d.kind == "percent":
            assert d.percent is not None
            exact_minor = EXACT.divide(EXACT.multiply(Decimal(base), d.percent), _HUNDRED)
            share = exact_minor.as_integer_ratio()
            amount = round_scaled(share[0], share[1], ROUNDING)
            exact = exact_minor.scaleb(-scale)
            terms: dict[str, Any] = {"percent": _decimal_text(d.percent), "rounding": ROUNDING.value}
            if amount > cap:  # only the subtotal can bind: p <= 100 never takes more than the base
                amount, exact = cap, Decimal(cap).scaleb(-scale)
                terms["capped"] = True
        else:
            assert d.amount is not None
            amount = min(d.amount, cap)
            exact = Decimal(amount).scaleb(-scale)
            terms = {"amount": _decimal_text(Decimal(d.amount).scaleb(-scale))}
            if amount < d.amount:
                terms["capped"] = True
        if amount <= 0:
            continue
        shares = _allocate(amount, [left[i] for i in picked])
        for i, s in zip(picked, shares, strict=True):
            left[i] -= s
        room -= amount
        first_time = period not in d.redeemed
        remaining = None if d.periods_remaining is None else d.periods_remaining - (1 if first_time else 0)
        items = sorted({str(lines[i].lineage["item"]) for i in picked if "item" in lines[i].lineage})
        lineage: dict[str, Any] = {"discount": d.id, "coupon": d.coupon}
        if len(items) == 1:
            lineage["item"] = items[0]
        elif items:
            lineage["items"] = items
        versions = {lines[i].plan_version_id for i in picked}
        out.append(
            DraftLine(
                kind="discount", charge_code=d.coupon, meter=None, group_key="",
                plan_version_id=versions.pop() if len(versions) == 1 else None,
                period_start=min(lines[i].period_start for i in picked),
                period_end=max(lines[i].period_end for i in picked), quantity_units=1, quantity_scale=0,
                unit_price=None, amount=-amount, amount_exact=_decimal_text(-exact),
                detail={
                    **terms, "base": base, "duration": d.duration, "periods_remaining": remaining,
                    "period_start": period.isoformat(),
                    "allocation": [
                        {"item": lines[i].lineage.get("item"), "charge": lines[i].charge_code,
                         "group": lines[i].group_key, "amount": s}
                        for i, s in zip(picked, shares, strict=True) if s
                    ],
                },
                lineage=lineage,
            )
        )  # fmt: skip
        used.append(Redemption(d.id, period, amount, currency))
    return out, used


def after_redemptions(discounts: Sequence[ActiveDiscount], used: Iterable[Redemption]) -> list[ActiveDiscount]:
    """`discounts` as they stand once `used` is recorded: each newly counted period is added to `redeemed`
    and taken from `periods_remaining`. For assembling a customer's next document before recording."""
    new: dict[int, set[datetime]] = {}
    for u in used:
        new.setdefault(u.discount_id, set()).add(u.period_start)
    out = []
    for d in discounts:
        fresh = new.get(d.id, set()) - d.redeemed
        if not fresh:
            out.append(d)
            continue
        remaining = None if d.periods_remaining is None else max(0, d.periods_remaining - len(fresh))
        out.append(replace(d, redeemed=d.redeemed | frozenset(fresh), periods_remaining=remaining))
    return out


__all__ = ["ELIGIBLE_KINDS", "ROUNDING", "after_redemptions", "discount_lines"]
