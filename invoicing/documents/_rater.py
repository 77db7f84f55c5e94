"""Rating due items into draft invoices: usage in bulk, kernels where they exist, exact references otherwise.

`Rater` holds the caches one invoice run needs (plan versions, meters, compiled price tables, customers,
tax rates, usage per window) and turns `DueItem`s into `DraftInvoice`s. Nothing here writes.

* Usage comes from `metering.usage.period_columns`, one bulk extract per distinct span window, shared by
  every item billed over that window. An item with several spans (a pause inside the period) combines
  its spans' quantities by the meter's aggregation: sum for sum / count / gauge / unique_count (so
  unique_count may count a value twice across a pause), max for max, min for min, the last span's value
  for latest.
* Usage charges whose price is per_unit, package, graduated or volume (or dimensional of those) are
  rated by the int64 kernels in one `rate_columns` call per plan version and batch (grouped by charge
  for the specialised kernels), and rounded by `to_minor` (half even). Every other model (outcome,
  sla_credit, percentage, minimum_commitment, points, ...) is rated by `rating.quote`, the exact Decimal
  reference.
* Each line's exact amount is rounded once, half even (flat fees: the price's own `rounding`), to the
  currency's minor unit. Per-charge minimum_commitment: the charge total is rounded once and the
  true-up / cap lines are the differences, so the lines always add up to the rounded total.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from invoicing.catalog import Charge, PlanVersion, get_plan_version_by_id, utc
from invoicing.subscriptions import DueItem, Span
from invoicing.tables import customers, tax_rates
from metering.meter import Aggregation, Meter, list_meters
from metering.usage import Transaction, period_columns, transactions
from rating.commitment import InvoiceLimits, MinimumCommitmentPrice, apply_invoice_limits
from rating.dimensional import DimensionalPrice
from rating.errors import RatingError
from rating.fixedpoint import Int64Array
from rating.flat import FlatPrice
from rating.percentage import PercentagePrice
from rating.points_price import PointsPrice
from rating.price import Price
from rating.quoting import quote
from rating.registry import KERNEL_CLASSES, KernelPrice
from rating.rounding import EXACT, RoundingMode, round_decimal, round_scaled
from rating.sla import SlaCreditPrice
from rating.table import PriceTable
from rating.tiers import GraduatedPrice, VolumePrice, graduated_lines, volume_lines
from rating.unit import currency as currency_unit

#: The price classes the int64 kernels price (the registry's); every other model goes to its reference.
KERNEL_LEAVES = KERNEL_CLASSES
#: Prices that say nothing without a measurement: no usage row, no line.
NEEDS_MEASUREMENT = ("sla_credit",)
HUNDRED = Decimal(100)
#: Customers per filtered usage extract (an IN list: well under every database's bound-parameter limit).
USAGE_CHUNK = 900


@dataclass(slots=True)
class DraftLine:
    kind: str  # charge | minimum_true_up | cap_adjustment | credit | sla_credit | tax | proration_adjustment
    charge_code: str
    meter: str | None
    group_key: str
    plan_version_id: int | None
    period_start: datetime
    period_end: datetime
    quantity_units: int
    quantity_scale: int
    unit_price: str | None
    amount: int  # minor units
    amount_exact: str  # the exact, unrounded amount (a fraction for some prorations)
    detail: dict[str, Any]
    lineage: dict[str, Any]
    # The canonical JSON of detail / lineage when the rater already built it (None: serialise the dicts).
    detail_json: str | None = None
    lineage_json: str | None = None


def copy_line(ln: DraftLine) -> DraftLine:
    """A shallow copy (what `dataclasses.replace(ln)` gives, at a tenth of its cost: it runs per line)."""
    return DraftLine(
        ln.kind,
        ln.charge_code,
        ln.meter,
        ln.group_key,
        ln.plan_version_id,
        ln.period_start,
        ln.period_end,
        ln.quantity_units,
        ln.quantity_scale,
        ln.unit_price,
        ln.amount,
        ln.amount_exact,
        ln.detail,
        ln.lineage,
        ln.detail_json,
        ln.lineage_json,
    )


@dataclass(slots=True)
class DraftInvoice:
    key: str
    subscription_id: int | None
    customer_id: int
    customer_external_id: str
    plan_version_id: int | None
    currency: str
    timing: str | None
    period_start: datetime
    period_end: datetime
    span_start: datetime
    span_end: datetime
    due_at: datetime
    tax_region: str
    tax_rate: Decimal
    tax_inclusive: bool
    lines: list[DraftLine] = field(default_factory=list)

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines if line.kind not in ("tax", "credit"))


@dataclass(frozen=True, slots=True)
class TaxRate:
    region: str
    rate: Decimal  # percent
    inclusive: bool


def tax_amount(subtotal: int, rate: TaxRate) -> int:
    """Tax on a subtotal in minor units, rounded once half even: exclusive adds rate%, inclusive is the
    part of the subtotal that was tax (subtotal × rate / (100 + rate))."""
    if not rate.rate:
        return 0
    r = Fraction(rate.rate)
    share = Fraction(subtotal) * r / (100 + r if rate.inclusive else 100)
    return round_scaled(share.numerator, share.denominator, RoundingMode.HALF_EVEN)


@lru_cache(maxsize=1 << 12)
def _dimension_value(group_key: str, dimension: str) -> str | None:
    """A dimension's value in a rollup group key (parsed once per distinct key, not once per event)."""
    return json.loads(group_key).get(dimension) if group_key else None


def _minor(amount: Decimal, scale: int, mode: RoundingMode = RoundingMode.HALF_EVEN) -> int:
    return int(round_decimal(amount, scale, mode).scaleb(scale))


@lru_cache(maxsize=1 << 16)
def _iso(t: datetime) -> str:
    return utc(t).isoformat()


@dataclass(slots=True)
class _Usage:
    units: int
    scale: int
    events: int


@dataclass(slots=True)
class _KernelJob:
    line: DraftLine
    version_id: int
    charge_index: int
    value: str | None
    units: int
    scale: int
    leaf: KernelPrice


class Rater:
    """Caches for one run (or one preview); `draft(items)` rates a batch of due items."""

    def __init__(
        self, engine: Engine, tenant_id: int, *, explain: bool = True, plans: Iterable[PlanVersion] = ()
    ) -> None:
        self.engine = engine
        self.tenant_id = tenant_id
        self.explain = explain
        # `plans`: versions known without a lookup, such as an unsaved what-if candidate (insight's simulation).
        self._plans: dict[int, PlanVersion] = {p.id: p for p in plans}
        self._prices: dict[tuple[int, int], Price] = {}
        self._tables: dict[int, tuple[PriceTable, dict[int, int]] | None] = {}
        self._meters: dict[str, Meter] = {m.code: m for m in list_meters(engine, tenant_id)}
        # window → customer → [(meter, group key, units, scale, events)]
        self._usage: dict[tuple[datetime, datetime], dict[str, list[tuple[str, str, int, int, int]]]] = {}
        # (window, meter) → customer → its counted events in time order, for per-transaction prices
        self._transactions: dict[tuple[tuple[datetime, datetime], str], dict[str, list[Transaction]]] = {}
        self._flat_cache: dict[tuple[Any, ...], tuple[int, str, dict[str, Any], str]] = {}
        self._span_json: dict[tuple[Span, ...], str] = {}
        self._window_json: dict[tuple[tuple[datetime, datetime], ...], str] = {}
        self._unit_prices: dict[int, tuple[Price, str | None]] = {}
        self._rows: dict[tuple[int, int, str | None], int] = {}
        self._specs: dict[int, tuple[Any, ...]] = {}
        self._by_timing: dict[tuple[int, str], list[tuple[int, Charge]]] = {}
        self._customers: dict[int, tuple[str, str]] = {}
        # Streaming (`begin_batch`): usage is extracted for these customers only (None: the whole tenant).
        self._scope: set[str] | None = None
        with engine.connect() as conn:
            self._tax = {
                r.region: TaxRate(r.region, Decimal(r.rate), bool(r.inclusive))
                for r in conn.execute(select(tax_rates).where(tax_rates.c.tenant_id == tenant_id))
            }

    # -- caches -------------------------------------------------------------------------------------------
    def plan(self, version_id: int) -> PlanVersion:
        found = self._plans.get(version_id)
        if found is None:
            found = self._plans[version_id] = get_plan_version_by_id(self.engine, self.tenant_id, version_id)
        return found

    def price(self, version_id: int, index: int) -> Price:
        key = (version_id, index)
        found = self._prices.get(key)
        if found is None:
            found = self._prices[key] = self.plan(version_id).charges[index].price
        return found

    def tax_rate(self, customer_id: int) -> TaxRate:
        region = self._customer(customer_id)[1]
        return self._tax.get(region, TaxRate(region, Decimal(0), False))

    def _customer(self, customer_id: int) -> tuple[str, str]:
        found = self._customers.get(customer_id)
        if found is None:
            self.load_customers([customer_id])
            found = self._customers[customer_id]
        return found

    def load_customers(self, ids: Iterable[int]) -> None:
        missing = sorted({i for i in ids if i not in self._customers})
        if not missing:
            return
        c = customers.c
        with self.engine.connect() as conn:
            for chunk in range(0, len(missing), 900):
                part = missing[chunk : chunk + 900]
                for r in conn.execute(select(c.id, c.currency, c.tax_region).where(c.id.in_(part))):
                    self._customers[int(r.id)] = (r.currency, r.tax_region)

    def _table(self, version_id: int) -> tuple[PriceTable, dict[int, int]] | None:
        """The kernel table of a version's columnar usage charges (charge index → table input index)."""
        if version_id in self._tables:
            return self._tables[version_id]
        plan = self.plan(version_id)
        chosen: list[int] = []
        scales = [0]
        for i, charge in enumerate(plan.charges):
            if charge.kind != "usage" or not _columnar(self.price(version_id, i)):
                continue
            chosen.append(i)
            meter = self._meters.get(charge.meter or "")
            scales.append(meter.quantity_scale if meter else 0)
        result: tuple[PriceTable, dict[int, int]] | None = None
        if chosen:
            defs = [plan.charges[i].price_definition for i in chosen]
            try:
                probe = PriceTable.compile(defs)
                table = PriceTable.compile(defs, quantity_scale=max(probe.quantity_scale, *scales))
                result = (table, {c: k for k, c in enumerate(chosen)})
            except RatingError:
                result = None  # scales too large for int64: the reference path prices these charges
        self._tables[version_id] = result
        return result

    # -- usage ------------------------------------------------------------------------------------------
    def begin_batch(self, items: Sequence[DueItem], clip: datetime | None = None) -> None:
        """Streaming: forget every per-item cache (usage, customers, flat amounts, JSON fragments) and
        load the usage of these items' customers only, so memory follows the batch, not the tenant.
        Drafts are the same as with a whole-tenant prefetch: a customer's rows are the same rows."""
        self._usage.clear()
        self._transactions.clear()  # per-event amounts are loaded for the batch's customers only
        self._customers.clear()
        self._flat_cache.clear()
        self._span_json.clear()
        self._window_json.clear()
        self._scope = {i.customer_external_id for i in items}
        self.load_customers(i.customer_id for i in items)
        self.prefetch(items, clip)

    def prefetch(self, items: Sequence[DueItem], clip: datetime | None = None) -> None:
        """Load the bulk usage of every span window the items need (one extract per window)."""
        for item in items:
            for window in self._windows(item, clip):
                self._window(window)

    @staticmethod
    def _windows(item: DueItem, clip: datetime | None) -> list[tuple[datetime, datetime]]:
        out = []
        for s in item.spans:
            end = s.end if clip is None else min(s.end, clip)
            if s.start < end:
                out.append((s.start, end))
        return out

    def _chunks(self) -> list[list[str] | None]:
        """The customers of a bulk read: all of them (None), or the batch's in IN lists of USAGE_CHUNK."""
        if self._scope is None:
            return [None]
        scope = sorted(self._scope)
        return [scope[k : k + USAGE_CHUNK] for k in range(0, len(scope), USAGE_CHUNK)]

    def _window(self, window: tuple[datetime, datetime]) -> dict[str, list[tuple[str, str, int, int, int]]]:
        found = self._usage.get(window)
        if found is None:
            found = {}
            names: dict[str, str] = {}  # one string object per meter / group key
            for chunk in self._chunks():  # chunks partition the customers: each customer's rows keep their order
                cols = period_columns(self.engine, self.tenant_id, window[0], window[1], customers=chunk)
                units, scales, events = cols.units.tolist(), cols.scales.tolist(), cols.events.tolist()
                for i, (cust, meter, gk) in enumerate(zip(cols.customers, cols.meters, cols.group_keys, strict=True)):
                    row = (names.setdefault(meter, meter), names.setdefault(gk, gk), units[i], scales[i], events[i])
                    rows = found.get(cust)
                    if rows is None:
                        found[cust] = [row]
                    else:
                        rows.append(row)
                del cols
            self._usage[window] = found
        return found

    def _item_usage_all(self, item: DueItem, windows: list[tuple[datetime, datetime]]) -> dict[str, dict[str, _Usage]]:
        """Usage of every meter over the item's spans, per group key, spans combined by aggregation
        (rows of one window keep their (meter, group key) order)."""
        out: dict[str, dict[str, _Usage]] = {}
        for window in windows:
            for meter, gk, units, scale, events in self._window(window).get(item.customer_external_id, ()):
                combined = out.get(meter)
                if combined is None:
                    combined = out[meter] = {}
                prev = combined.get(gk)
                u = _Usage(units, scale, events)
                if prev is None:
                    combined[gk] = u
                else:
                    m = self._meters.get(meter)
                    combined[gk] = _combine(m.aggregation if m else Aggregation.SUM, prev, u)
        return out

    def _item_usage(
        self, item: DueItem, meter: str, clip: datetime | None
    ) -> tuple[dict[str, _Usage], list[tuple[datetime, datetime]]]:
        """Usage of one meter over the item's spans, per group key, spans combined by aggregation."""
        windows = self._windows(item, clip)
        return self._item_usage_all(item, windows).get(meter, {}), windows

    # -- rating -------------------------------------------------------------------------------------------
    def draft(self, items: Sequence[DueItem], clip: datetime | None = None) -> list[DraftInvoice]:
        """One draft per item, lines rated and rounded (no tax or credit lines yet)."""
        if self._scope is not None and (missing := {i.customer_external_id for i in items} - self._scope):
            self._scope |= missing  # outside the batch: widen it, extracting the usage again
            self._usage.clear()
        self.load_customers(i.customer_id for i in items)
        self.prefetch(items, clip)
        drafts: list[DraftInvoice] = []
        jobs: list[_KernelJob] = []
        for item in items:
            plan = self.plan(item.plan_version_id)
            tax = self.tax_rate(item.customer_id)
            charges = self._by_timing.get((plan.id, item.timing))
            if charges is None:
                charges = self._by_timing[(plan.id, item.timing)] = [
                    (i, c) for i, c in enumerate(plan.charges) if c.billing == item.timing
                ]
            draft = DraftInvoice(
                key=item.key, subscription_id=item.subscription_id, customer_id=item.customer_id,
                customer_external_id=item.customer_external_id, plan_version_id=plan.id, currency=plan.currency,
                timing=item.timing, period_start=item.period.start, period_end=item.period.end,
                span_start=item.spans[0].start, span_end=item.spans[-1].end, due_at=item.due_at,
                tax_region=tax.region, tax_rate=tax.rate, tax_inclusive=tax.inclusive,
            )  # fmt: skip
            usage: tuple[dict[str, dict[str, _Usage]], list[tuple[datetime, datetime]], str] | None = None
            for i, charge in charges:
                if charge.kind == "flat":
                    draft.lines.append(self._flat_line(item, plan, i, charge))
                else:
                    if usage is None:
                        windows = self._windows(item, clip)
                        usage = (self._item_usage_all(item, windows), windows, self._lineage_json(item, windows))
                    self._usage_lines(item, plan, i, charge, clip, draft.lines, jobs, usage)
            drafts.append(draft)
        self._run_kernels(jobs)
        for item, draft in zip(items, drafts, strict=True):
            self._invoice_limits(item, draft)
        return drafts

    def _flat_line(self, item: DueItem, plan: PlanVersion, index: int, charge: Charge) -> DraftLine:
        # The amount depends only on the price, the period, the spans and the zone: computed once
        # per distinct (version, charge, period, spans, zone), e.g. once for every whole-period item.
        key = (plan.id, index, item.period, item.spans, item.timezone)
        found = self._flat_cache.get(key)
        if found is None:
            price = self.price(plan.id, index)
            assert isinstance(price, FlatPrice)
            fraction = item.fraction(price.proration)
            scale = currency_unit(plan.currency).scale
            exact = Fraction(price.amount_per_period) * fraction
            share = exact * 10**scale
            amount = round_scaled(share.numerator, share.denominator, price.rounding)
            detail = {"model": "flat", "proration": price.proration, "fraction": str(fraction),
                      "rounding": price.rounding.value, "billing": price.billing}  # fmt: skip
            found = self._flat_cache[key] = (amount, fraction_text(exact), detail, str(price.amount_per_period))
        amount, exact_text, detail, unit_price = found
        spans = self._span_json.get(item.spans)
        if spans is None:
            spans = self._span_json[item.spans] = _dumps([[_iso(s.start), _iso(s.end)] for s in item.spans])
        spans_list = [[_iso(s.start), _iso(s.end)] for s in item.spans]
        # The service period is what the fee pays for: the spans it bills (a prorated fee covers less
        # than its period), from the first span's start to the last one's end.
        return DraftLine(
            kind="charge", charge_code=charge.code, meter=None, group_key="", plan_version_id=plan.id,
            period_start=item.spans[0].start if item.spans else item.period.start,
            period_end=item.spans[-1].end if item.spans else item.period.end, quantity_units=1, quantity_scale=0,
            unit_price=unit_price, amount=amount, amount_exact=exact_text, detail=dict(detail),
            lineage={"item": item.key, "spans": spans_list},
            lineage_json=f'{{"item":{_encode_str(item.key)},"spans":{spans}}}',
        )  # fmt: skip

    def _lineage_json(self, item: DueItem, windows: list[tuple[datetime, datetime]]) -> str:
        """Canonical JSON of a usage line's lineage without its "events" key (which sorts first)."""
        key = tuple(windows)
        found = self._window_json.get(key)
        if found is None:
            found = self._window_json[key] = _dumps([[_iso(a), _iso(b)] for a, b in windows])
        return f'"item":{_encode_str(item.key)},"source":"rollups","windows":{found}}}'

    def _unit_price(self, leaf: Price) -> str | None:
        found = self._unit_prices.get(id(leaf))
        if found is None or found[0] is not leaf:
            found = self._unit_prices[id(leaf)] = (leaf, _unit_price(leaf))
        return found[1]

    def _usage_lines(
        self,
        item: DueItem,
        plan: PlanVersion,
        index: int,
        charge: Charge,
        clip: datetime | None,
        out: list[DraftLine],
        jobs: list[_KernelJob],
        usage: tuple[dict[str, dict[str, _Usage]], list[tuple[datetime, datetime]], str] | None = None,
    ) -> None:
        price = self.price(plan.id, index)
        meter = charge.meter or ""
        if usage is None:
            windows = self._windows(item, clip)
            usage = (self._item_usage_all(item, windows), windows, self._lineage_json(item, windows))
        by_meter, windows, lineage_tail = usage
        rows = by_meter.get(meter, {})
        windows_list = [[_iso(a), _iso(b)] for a, b in windows]
        m = self._meters.get(meter)
        agg = m.aggregation if m else Aggregation.SUM
        scale = m.quantity_scale if m else 0
        groups: dict[str | None, _Usage] = {}
        if isinstance(price, DimensionalPrice):
            dim = charge.group_by or price.dimension
            for gk, u in rows.items():
                value = _dimension_value(gk, dim)
                prev = groups.get(value)
                groups[value] = u if prev is None else _combine(agg, prev, u)
        elif rows:
            for u in rows.values():
                prev = groups.get(None)
                groups[None] = u if prev is None else _combine(agg, prev, u)
        elif price.model not in NEEDS_MEASUREMENT:
            groups[None] = _Usage(0, scale, 0)
        table = self._table(plan.id) if _columnar(price) else None
        for value, u in sorted(groups.items(), key=lambda kv: (kv[0] is not None, kv[0] or "")) if len(groups) > 1 \
                else groups.items():  # fmt: skip
            group_key = "" if value is None else json.dumps({charge.group_by or "": value}, separators=(",", ":"))
            leaf = price.price_for(value) if isinstance(price, DimensionalPrice) else price
            line = DraftLine(
                kind="sla_credit" if isinstance(price, SlaCreditPrice) else "charge",
                charge_code=charge.code, meter=meter, group_key=group_key, plan_version_id=plan.id,
                period_start=item.period.start, period_end=item.period.end, quantity_units=u.units,
                quantity_scale=u.scale, unit_price=self._unit_price(leaf), amount=0, amount_exact="0",
                detail={"model": leaf.model},
                lineage={"item": item.key, "source": "rollups", "windows": windows_list, "events": u.events},
                lineage_json=f'{{"events":{int(u.events)},{lineage_tail}',
            )  # fmt: skip
            out.append(line)
            if table is not None and isinstance(leaf, KERNEL_LEAVES):
                jobs.append(_KernelJob(line, plan.id, index, value, u.units, u.scale, leaf))
                continue
            q = Decimal(u.units).scaleb(-u.scale)
            ccy = currency_unit(plan.currency).scale
            if isinstance(leaf, MinimumCommitmentPrice):
                out.extend(_commitment_lines(line, leaf, q, ccy))
                continue
            per_event = self._per_transaction(item, windows, leaf, m, charge, price, value)
            if isinstance(price, DimensionalPrice):
                result = quote(price, q, per_event, dimension=value)
            else:
                result = quote(leaf, q, per_event)
            if per_event is not None:
                line.detail["transactions"] = len(per_event)
            if isinstance(leaf, PointsPrice):
                _points_line(line, leaf, result.amount, ccy)
            else:
                line.amount_exact = str(result.amount)
                line.amount = _minor(result.amount, ccy)
            line.detail["rated_by"] = "reference"
            if self.explain:
                line.detail["lines"] = [x.to_json() for x in result.lines]

    def _per_transaction(
        self,
        item: DueItem,
        windows: list[tuple[datetime, datetime]],
        leaf: Price,
        meter: Meter | None,
        charge: Charge,
        price: Price,
        value: str | None,
    ) -> list[Decimal] | None:
        """The amounts of each transaction a percentage charge rates, in time order; None for prices
        that rate the period's total. A fixed fee per transaction, a per-transaction minimum or maximum
        and "the first N transactions free" only mean something per event, so these come from the
        stored events (the rollups keep sums), with the meter's filter and the line's dimension."""
        if not isinstance(leaf, PercentagePrice) or meter is None:
            return None
        if meter.aggregation not in (Aggregation.SUM, Aggregation.COUNT):
            return None
        dim = (charge.group_by or price.dimension) if isinstance(price, DimensionalPrice) else None
        out: list[Decimal] = []
        for window in sorted(windows):
            key = (window, meter.code)
            found = self._transactions.get(key)
            if found is None:
                found = {}
                for chunk in self._chunks():
                    found.update(transactions(self.engine, self.tenant_id, meter, window[0], window[1], chunk))
                self._transactions[key] = found
            for t in found.get(item.customer_external_id, ()):
                if dim is None or _dimension_value(t.group_key, dim) == value:
                    out.append(t.value)
        return out

    def _run_kernels(self, jobs: list[_KernelJob]) -> None:
        by_version: dict[int, list[_KernelJob]] = {}
        for job in jobs:
            by_version.setdefault(job.version_id, []).append(job)
        for version_id, group in by_version.items():
            compiled = self._table(version_id)
            assert compiled is not None
            table, index = compiled
            qs = table.quantity_scale
            rows = self._rows
            charge_rows = []
            for j in group:
                key = (version_id, j.charge_index, j.value)
                r = rows.get(key)
                if r is None:
                    r = rows[key] = table.row(index[j.charge_index], j.value)
                charge_rows.append(r)
            charge = np.array(charge_rows, np.int64)
            quantity = np.array([j.units * 10 ** (qs - j.scale) for j in group], np.int64)
            amounts, minor = rate_columns(table, charge, quantity)
            a_scale = table.amount_scale
            for j, exact, rounded in zip(group, amounts.tolist(), minor.tolist(), strict=True):
                j.line.amount = int(rounded)
                j.line.amount_exact = str(Decimal(int(exact)).scaleb(-a_scale))
                j.line.detail["rated_by"] = "kernel"
                if self.explain:
                    q = Decimal(j.units).scaleb(-j.scale)
                    j.line.detail["lines"] = [x.to_json() for x in self._breakdown(j.leaf, q)]

    def _breakdown(self, leaf: KernelPrice, q: Decimal) -> tuple[Any, ...]:
        """`leaf.breakdown(q)`, with the tier specs of graduated / volume prices built once per price."""
        kind = type(leaf)
        if kind is GraduatedPrice or kind is VolumePrice:
            found = self._specs.get(id(leaf))
            if found is None or found[0] is not leaf:
                found = self._specs[id(leaf)] = (leaf, leaf.specs())  # type: ignore[union-attr]
            specs = found[1]
            return graduated_lines(specs, q) if kind is GraduatedPrice else volume_lines(specs, q)
        return leaf.breakdown(q)

    def _invoice_limits(self, item: DueItem, draft: DraftInvoice) -> None:
        """The version's per-invoice minimum and cap, over the period's charges (see docs/invoicing.md)."""
        plan = self.plan(item.plan_version_id)
        limits: InvoiceLimits = plan.invoice_limits
        if limits.minimum_commitment is None and limits.cap_amount is None:
            return
        if item.timing == "in_advance" and plan.has_timing("in_arrears"):
            return  # the in-arrears invoice of the period applies them, counting these fees
        scale = currency_unit(plan.currency).scale
        amounts = [line.amount for line in draft.lines]
        if item.timing == "in_arrears":
            amounts += self._advance_amounts(item, plan)
        totals = apply_invoice_limits([Decimal(a).scaleb(-scale) for a in amounts], limits)
        for kind, code, exact in (
            ("minimum_true_up", "invoice_minimum", totals.true_up),
            ("cap_adjustment", "invoice_cap", totals.cap_adjustment),
        ):
            if exact:
                draft.lines.append(
                    DraftLine(
                        kind=kind, charge_code=code, meter=None, group_key="", plan_version_id=plan.id,
                        period_start=item.period.start, period_end=item.period.end, quantity_units=1,
                        quantity_scale=0, unit_price=None, amount=_minor(exact, scale), amount_exact=str(exact),
                        detail={"minimum_commitment": _s(limits.minimum_commitment),
                                "cap_amount": _s(limits.cap_amount), "period_subtotal": str(totals.subtotal)},
                        lineage={"item": item.key, "rule": "invoice_limits"},
                    )
                )  # fmt: skip

    def _advance_amounts(self, item: DueItem, plan: PlanVersion) -> list[int]:
        """The in-advance fees of the same version and period, recomputed exactly as their invoices
        rounded them (one in-advance item per span)."""
        out = []
        for span in item.spans:
            one = DueItem(
                item.subscription_id, item.customer_id, item.customer_external_id, item.timezone,
                item.plan_version_id, "in_advance", item.period, (Span(span.start, span.end),), span.start,
            )  # fmt: skip
            for i, charge in enumerate(plan.charges):
                if charge.billing == "in_advance" and charge.kind == "flat":
                    out.append(self._flat_line(one, plan, i, charge).amount)
        return out


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_encode_str = json.encoder.encode_basestring_ascii  # how the encoder above writes a string


def _dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces), exactly `json.dumps(value, sort_keys=True,
    separators=(",", ":"))` without building an encoder per call."""
    return _ENCODER.encode(value)


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def fraction_text(value: Fraction) -> str:
    """An exact amount as text: a decimal when it terminates, else "numerator/denominator"."""
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den == 1:
        return str(EXACT.divide(Decimal(value.numerator), Decimal(value.denominator)))
    return f"{value.numerator}/{value.denominator}"


def rate_columns(table: PriceTable, rows: Int64Array, quantities: Int64Array) -> tuple[Int64Array, Int64Array]:
    """Exact amounts (at `table.amount_scale`) and minor units (rounded once, half even) of the pairs
    (kernel row of `table`, quantity at `table.quantity_scale`), in the order given.

    The whole kernel step of a run, and nothing else: arrays and a compiled table in (all picklable), arrays
    out, no `Rater` state, no database and no Python object per line, so a run may call it in worker
    processes. The pairs are handed to the kernels grouped by row (a stable sort), the layout their
    specialised loops are fastest on; errors are those of `PriceTable.rate_pairs` (an overflow raises,
    never wraps)."""
    order = np.argsort(rows, kind="stable")
    amounts = np.empty_like(quantities)
    amounts[order] = table.rate_pairs(rows[order], quantities[order])
    return amounts, table.to_minor(amounts)


def _columnar(price: Price) -> bool:
    if isinstance(price, DimensionalPrice):
        inner = [*price.prices.values(), *([price.default] if price.default is not None else [])]
        return all(isinstance(p, KERNEL_LEAVES) for p in inner)
    return isinstance(price, KERNEL_LEAVES)


def _unit_price(price: Price) -> str | None:
    for name in ("unit_amount", "package_amount", "amount_per_period"):
        value = getattr(price, name, None)
        if isinstance(value, Decimal):
            return str(value)
    return None


def points_money(points_scaled: int, points_scale: int, conversion_rate: Decimal, scale: int) -> int:
    """Minor units of money worth `points_scaled` points (scaled by `points_scale`), half-even.

    The same function prices the charge and the points that pay it, so a charge paid in full in points
    nets to exactly zero."""
    return _minor(EXACT.multiply(Decimal(points_scaled).scaleb(-points_scale), conversion_rate), scale)


def _points_line(line: DraftLine, price: PointsPrice, cost: Decimal, scale: int) -> None:
    """A points-priced charge: the cost in points, rounded once by the price's rule to its points scale,
    is what the wallet is asked for; the line bills its money value, and the invoice's settlement draws
    the points from the customer's points wallet and credits their money value back."""
    charged = round_decimal(cost, price.points_scale, price.rounding)
    points_scaled = int(charged.scaleb(price.points_scale))
    line.amount = points_money(points_scaled, price.points_scale, price.conversion_rate, scale)
    line.amount_exact = str(EXACT.multiply(charged, price.conversion_rate))
    line.detail.update(
        {
            "points_unit": price.points_unit,
            "points_scale": price.points_scale,
            "points_cost": str(cost),
            "points_charged": points_scaled,
            "conversion_rate": str(price.conversion_rate),
            "points_rounding": price.rounding.value,
        }
    )
    line.detail_json = None


def _combine(agg: Aggregation, a: _Usage, b: _Usage) -> _Usage:
    events = a.events + b.events
    if agg is Aggregation.MAX:
        return _Usage(max(a.units, b.units), a.scale, events)
    if agg is Aggregation.MIN:
        return _Usage(min(a.units, b.units), a.scale, events)
    if agg is Aggregation.LATEST:
        return _Usage(b.units, a.scale, events)
    return _Usage(a.units + b.units, a.scale, events)


def _commitment_lines(line: DraftLine, price: MinimumCommitmentPrice, q: Decimal, scale: int) -> list[DraftLine]:
    """Per-charge minimum / cap: the charge line is the inner amount, the true-up and cap lines the rest,
    each derived from once-rounded totals so the three always add up to the rounded charge total."""
    inner = price.price.quote(q)
    base = _minor(inner.amount, scale)
    raised_exact = max(inner.amount, price.minimum_amount)
    raised = _minor(raised_exact, scale)
    final_exact = raised_exact if price.cap_amount is None else min(raised_exact, price.cap_amount)
    final = _minor(final_exact, scale)
    line.amount_exact, line.amount = str(inner.amount), base
    line.detail.update({"model": "minimum_commitment", "inner_model": price.price.model, "rated_by": "reference",
                        "lines": [x.to_json() for x in inner.lines]})  # fmt: skip
    extra = []
    for kind, amount, exact in (
        ("minimum_true_up", raised - base, EXACT.subtract(raised_exact, inner.amount)),
        ("cap_adjustment", final - raised, EXACT.subtract(final_exact, raised_exact)),
    ):
        if amount or exact:
            extra.append(
                DraftLine(
                    kind=kind, charge_code=line.charge_code, meter=line.meter, group_key=line.group_key,
                    plan_version_id=line.plan_version_id, period_start=line.period_start, period_end=line.period_end,
                    quantity_units=1, quantity_scale=0, unit_price=None, amount=amount, amount_exact=str(exact),
                    detail={"minimum_amount": str(price.minimum_amount), "cap_amount": _s(price.cap_amount)},
                    lineage=dict(line.lineage),
                )
            )  # fmt: skip
    return extra


__all__ = [
    "DraftInvoice",
    "DraftLine",
    "Rater",
    "TaxRate",
    "copy_line",
    "fraction_text",
    "points_money",
    "rate_columns",
    "tax_amount",
]
