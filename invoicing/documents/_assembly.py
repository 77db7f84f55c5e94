"""Invoice assembly: one pure function decides a document's lines and money.

    doc = assemble(key, parts, sources)

`parts` are the rated drafts of the due items that share a document (one customer, currency and
billing date: see `group_key`); `sources` are the balances the customer may draw (grants and wallets, in
draw order, with what is available of each). The result holds every line (rated lines first, each with
its own service period and lineage, then discounts, tax, points and credits), the subtotal, discount,
tax, credits and total, and the ledger draws (holds) the writer must make. The writer persists exactly
this; nothing about an invoice's money is decided anywhere else, so it can be tested without a database
and a batched run equals assembling one document after another (`assemble_all`).

Order of operations (docs/invoicing.md has the reasons):
1. rated lines, as the rater rounded them (once per line);
2. discounts, before tax, on the positive rated lines (`discounts` callback: the coupon rules);
3. tax once per document on the subtotal (inclusive: the part of it that was tax);
4. points-priced charges draw their points (grants of that unit, then the points wallet);
5. money credits (grants by priority and expiry, then promotional, then cash wallet) pay the lines
   left, never more than what is due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from invoicing.documents._rater import DraftInvoice, DraftLine, TaxRate, copy_line, points_money, tax_amount
from rating.unit import currency as currency_unit

#: Line kinds that are not part of the subtotal: they settle it.
SETTLEMENT_KINDS = frozenset({"tax", "credit", "points"})


@dataclass(frozen=True, slots=True)
class Source:
    """A balance a document may draw, as the ledger holds it: `available` already less pending holds."""

    account_id: int
    unit: str
    available: int
    grant_id: str | None = None  # None: a plain wallet
    applies_to: frozenset[str] | None = None  # charge codes it may pay; None: any
    effective_us: int | None = None  # a grant pays nothing before it is effective ...
    expires_us: int | None = None  # ... or once it has expired

    def pays(self, charge: str, at_us: int) -> bool:
        if self.effective_us is not None and self.effective_us > at_us:
            return False
        if self.expires_us is not None and self.expires_us <= at_us:
            return False
        return self.applies_to is None or charge in self.applies_to


@dataclass(frozen=True, slots=True)
class Hold:
    """A draw the writer books as a pending ledger transfer (posted at finalizing, voided with the draft)."""

    account_id: int
    unit: str
    amount: int
    grant_id: str | None
    charge: str
    line: int  # index in `Document.lines` of the credit or points line it funds


@dataclass(slots=True)
class Document:
    key: str
    customer_id: int
    customer_external_id: str
    subscription_id: int | None  # None when it groups several subscriptions
    plan_version_id: int | None  # None when it groups several plan versions
    currency: str
    timing: str | None  # None when it mixes in-advance fees and in-arrears usage
    period_start: datetime
    period_end: datetime
    span_start: datetime
    span_end: datetime
    due_at: datetime
    tax_region: str
    tax_rate: Decimal
    tax_inclusive: bool
    lines: list[DraftLine]
    subtotal: int
    discount: int  # ≤ 0: the discount lines' sum (already inside the subtotal)
    tax: int
    credits: int  # points and credits applied, ≥ 0
    total: int
    holds: list[Hold] = field(default_factory=list)
    parts: tuple[DraftInvoice, ...] = ()
    redemptions: list[Any] = field(default_factory=list)  # what `discounts` returned besides its lines

    @property
    def money_credits(self) -> int:
        """Credits drawn in the document's currency (points are drawn in their own unit)."""
        return -sum(ln.amount for ln in self.lines if ln.kind == "credit")

    @property
    def points_credits(self) -> int:
        return -sum(ln.amount for ln in self.lines if ln.kind == "points")

    def as_draft(self) -> DraftInvoice:
        """The document in the shape corrections diff against (lines as billed)."""
        return DraftInvoice(
            self.key, self.subscription_id, self.customer_id, self.customer_external_id, self.plan_version_id,
            self.currency, self.timing, self.period_start, self.period_end, self.span_start, self.span_end,
            self.due_at, self.tax_region, self.tax_rate, self.tax_inclusive, list(self.lines),
        )  # fmt: skip


#: Discount rules: (rated lines, currency) → (discount lines, redemptions to record).
Discounts = Callable[[Sequence[DraftLine], str], tuple[list[DraftLine], list[Any]]]


def _exact(minor: int, scale: int) -> str:
    return format(Decimal(minor).scaleb(-scale), "f")


def _at_us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def _one(values: Iterable[Any]) -> Any:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def assemble(
    key: str,
    parts: Sequence[DraftInvoice],
    sources: Mapping[str, Sequence[Source]] | None = None,
    discounts: Discounts | None = None,
) -> Document:
    """The document for `parts` (one customer, currency, billing date and tax rule), drawing from
    `sources` (unit → balances in draw order; see the module docstring). Pure: the same arguments
    always give the same document, and nothing is mutated."""
    if not parts:
        raise ValueError("a document needs at least one rated part")
    # One reading order whoever calls: per subscription, the closing period's usage (in arrears) before
    # the fees of the period ahead, then by period.
    parts = sorted(parts, key=lambda p: (p.subscription_id or 0, p.timing != "in_arrears", p.period_start, p.key))
    first = parts[0]
    for p in parts[1:]:
        if (p.customer_id, p.currency, p.tax_region, p.tax_rate, p.tax_inclusive) != (
            first.customer_id, first.currency, first.tax_region, first.tax_rate, first.tax_inclusive,
        ):  # fmt: skip
            raise ValueError(f"parts of document {key} differ in customer, currency or tax rule")
    scale = currency_unit(first.currency).scale
    period = (min(p.period_start for p in parts), max(p.period_end for p in parts))
    lines = [copy_line(ln) for p in parts for ln in p.lines if ln.kind not in SETTLEMENT_KINDS]
    redemptions: list[Any] = []
    discount = 0
    if discounts is not None:
        extra, redemptions = discounts(tuple(lines), first.currency)
        discount = sum(ln.amount for ln in extra)
        lines += extra
    subtotal = sum(ln.amount for ln in lines)
    rate = TaxRate(first.tax_region, first.tax_rate, first.tax_inclusive)
    tax = tax_amount(subtotal, rate)
    if rate.rate:
        lines.append(
            DraftLine(
                kind="tax", charge_code="tax", meter=None, group_key="", plan_version_id=None,
                period_start=period[0], period_end=period[1], quantity_units=subtotal, quantity_scale=scale,
                unit_price=str(rate.rate), amount=0 if rate.inclusive else tax, amount_exact=_exact(tax, scale),
                detail={"region": rate.region, "rate_percent": str(rate.rate), "inclusive": rate.inclusive,
                        "tax": tax, "base": subtotal},
                lineage={"item": key, "rule": "tax_rates"},
            )
        )  # fmt: skip
    due = subtotal + (0 if rate.inclusive else tax)
    at_us = _at_us(first.due_at)
    left = {u: [s.available for s in ss] for u, ss in (sources or {}).items()}
    holds: list[Hold] = []
    credits = 0
    paid_in_points: dict[tuple[str, str], int] = {}
    if due > 0:
        for ln in [ln for ln in lines if ln.kind == "charge" and "points_unit" in ln.detail]:
            d = ln.detail
            unit, want = str(d["points_unit"]), int(d["points_charged"])
            pscale, prate = int(d["points_scale"]), Decimal(d["conversion_rate"])
            want = _points_within(want, due - credits, pscale, prate, scale)  # never more than is due
            if want <= 0:
                continue
            draws = _draw(sources, left, unit, ln.charge_code, at_us, want)
            got = sum(a for _, a in draws)
            if not got:
                continue
            money = points_money(got, pscale, prate, scale)
            paid_in_points[(ln.charge_code, ln.group_key)] = (
                paid_in_points.get((ln.charge_code, ln.group_key), 0) + money
            )
            credits += money
            index = len(lines)
            holds += [Hold(s.account_id, unit, a, s.grant_id, ln.charge_code, index) for s, a in draws]
            lines.append(
                DraftLine(
                    kind="points", charge_code=ln.charge_code, meter=ln.meter, group_key=ln.group_key,
                    plan_version_id=ln.plan_version_id, period_start=ln.period_start, period_end=ln.period_end,
                    quantity_units=got, quantity_scale=int(d["points_scale"]), unit_price=d["conversion_rate"],
                    amount=-money, amount_exact=_exact(-money, scale),
                    detail={"points_unit": unit, "points_paid": got, "draws": _draws_json(draws)},
                    lineage={"item": ln.lineage.get("item", key), "rule": "ledger_points_spend"},
                )
            )  # fmt: skip
        payable = [
            (ln, ln.amount - paid_in_points.pop((ln.charge_code, ln.group_key), 0))
            for ln in list(lines)
            if ln.amount > 0 and ln.kind not in ("credit", "points")  # exclusive tax is payable by credits too
        ]
        for ln, amount in payable:
            want = min(amount, due - credits)
            if want <= 0:
                if due - credits <= 0:
                    break
                continue
            draws = _draw(sources, left, first.currency, ln.charge_code, at_us, want)
            got = sum(a for _, a in draws)
            if not got:
                continue
            credits += got
            index = len(lines)
            holds += [Hold(s.account_id, first.currency, a, s.grant_id, ln.charge_code, index) for s, a in draws]
            lines.append(
                DraftLine(
                    kind="credit", charge_code=ln.charge_code, meter=None, group_key="", plan_version_id=None,
                    period_start=ln.period_start, period_end=ln.period_end, quantity_units=1, quantity_scale=0,
                    unit_price=None, amount=-got, amount_exact=_exact(-got, scale),
                    detail={"draws": _draws_json(draws)},
                    lineage={"item": ln.lineage.get("item", key), "rule": "ledger_spend"},
                )
            )  # fmt: skip
    return Document(
        key=key, customer_id=first.customer_id, customer_external_id=first.customer_external_id,
        subscription_id=_one(p.subscription_id for p in parts), plan_version_id=_one(p.plan_version_id for p in parts),
        currency=first.currency, timing=_one(p.timing for p in parts), period_start=period[0], period_end=period[1],
        span_start=min(p.span_start for p in parts), span_end=max(p.span_end for p in parts), due_at=first.due_at,
        tax_region=first.tax_region, tax_rate=first.tax_rate, tax_inclusive=first.tax_inclusive, lines=lines,
        subtotal=subtotal, discount=discount, tax=tax, credits=credits, total=due - credits, holds=holds,
        parts=tuple(parts), redemptions=redemptions,
    )  # fmt: skip


def _points_within(want: int, room: int, points_scale: int, rate: Decimal, scale: int) -> int:
    """The most points, up to `want`, whose money value fits in `room` (what is still due)."""
    if room <= 0:
        return 0
    if points_money(want, points_scale, rate, scale) <= room:
        return want
    lo, hi = 0, want  # money(lo) <= room < money(hi); points_money is monotone in the points
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if points_money(mid, points_scale, rate, scale) <= room:
            lo = mid
        else:
            hi = mid
    return lo


def _draw(
    sources: Mapping[str, Sequence[Source]] | None,
    left: dict[str, list[int]],
    unit: str,
    charge: str,
    at_us: int,
    want: int,
) -> list[tuple[Source, int]]:
    """Take up to `want` of `unit` for `charge` from the sources in order; updates `left`."""
    out: list[tuple[Source, int]] = []
    if sources is None or unit not in sources:
        return out
    remaining = left[unit]
    for k, s in enumerate(sources[unit]):
        if want <= 0:
            break
        if remaining[k] <= 0 or not s.pays(charge, at_us):
            continue
        take = min(want, remaining[k])
        remaining[k] -= take
        want -= take
        out.append((s, take))
    return out


def _draws_json(draws: Sequence[tuple[Source, int]]) -> list[dict[str, Any]]:
    return [{"grant": s.grant_id, "account": s.account_id, "amount": a} for s, a in draws]


def drawn(sources: Mapping[str, Sequence[Source]], holds: Iterable[Hold]) -> dict[str, list[Source]]:
    """`sources` less what `holds` took: what the customer's next document may draw."""
    taken: dict[int, int] = {}
    for h in holds:
        taken[h.account_id] = taken.get(h.account_id, 0) + h.amount
    return {
        u: [replace(s, available=s.available - taken.get(s.account_id, 0)) for s in ss] for u, ss in sources.items()
    }


def assemble_all(
    groups: Sequence[tuple[str, Sequence[DraftInvoice]]],
    sources: Mapping[int, Mapping[str, Sequence[Source]]],
    discounts: Mapping[int, Discounts] | None = None,
) -> list[Document]:
    """Assemble documents in order, each drawing what the earlier ones of its customer left; the same
    as calling `assemble` one document at a time with the balances that remain."""
    left: dict[int, Mapping[str, Sequence[Source]]] = dict(sources)
    out: list[Document] = []
    for key, parts in groups:
        customer = parts[0].customer_id
        doc = assemble(key, parts, left.get(customer), (discounts or {}).get(customer))
        if customer in left and doc.holds:
            left[customer] = drawn(left[customer], doc.holds)
        out.append(doc)
    return out


def group_key(customer_id: int, currency: str, due_at: datetime, subscription_id: int | None = None) -> str:
    """The document a due item goes on: one per customer, currency and billing date (the instant the
    item falls due), or per subscription as well when the customer is invoiced per subscription.
    Next period's fees in advance and the closing period's usage in arrears share a billing date, so
    they share a document."""
    base = f"doc:{customer_id}:{currency}:{due_at.isoformat()}"
    return base if subscription_id is None else f"{base}:sub:{subscription_id}"


__all__ = ["Discounts", "Document", "Hold", "Source", "assemble", "assemble_all", "drawn", "group_key"]
