"""Customer 360 and the tenant's portfolio: where each customer stands, in one picture.

Lifecycle stage, first rule that applies (the reason says which and why):

1. cancelled: no live subscription (trial, active or paused) now: every one is cancelled or has
   ended. A customer who never subscribed is "new" during the 30 days after being created, and
   "cancelled" (never converted) after that. A subscription whose end is merely *scheduled* is still
   live: that customer is renewal_due (churning) until the end passes, then cancelled.
2. renewal_due: a live subscription ends within 30 days (a scheduled cancellation), or a quarterly or
   yearly subscription's current period turns within 30 days (a renewal to win).
3. new: the first subscription started less than 30 days ago, or a live subscription is in trial.
4. growing / declining / steady, from usage: for every meter the live plans price, the quantity so far
   this period is compared with the same stretch of the previous period (from its start, as long as
   this period has run), so day 10 compares with the previous period's first 10 days, not its whole.
   A meter is up when it rose by more than 10 % (or from nothing), down when it fell by more than
   10 %. growing: some meter up and none down; declining: some down and none up; steady otherwise
   (including no usage at all, and mixed signals, which the reason names).

The current period is that of the customer's first trial or active subscription (the first paused
one when all are paused). Usage comes from rollups through `period_columns` for a whole group of
customers sharing the same windows, so the portfolio costs a handful of queries per distinct window,
not a 360 per customer; the 360 is the same code with a group of one, so both always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func, select

from invoicing.catalog import (
    BillingCycle,
    Customer,
    Interval,
    Period,
    PlanVersion,
    floor_quarter_hour,
    get_customer,
    get_plan_version_by_id,
    stored_utc,
    utc,
)
from invoicing.documents import OPEN, Invoice, number_label, preview_invoice
from invoicing.ledger.balance import customer_totals
from invoicing.ledger.unit import resolve_unit
from invoicing.subscriptions import State, Subscription, as_of, select_subscriptions, subscription_from_row
from invoicing.tables import customers, invoices, subscriptions
from metering.deadline import checkpoint
from metering.errors import InvalidArgument
from metering.meter import Aggregation, Meter, list_meters
from metering.usage import period_columns, usage
from rating.unit import currency as currency_unit

STAGES = ("new", "growing", "steady", "declining", "renewal_due", "cancelled")
HORIZON = timedelta(days=30)
TREND = Decimal("0.10")
LIVE = (State.TRIAL, State.ACTIVE, State.PAUSED)
PAST_INVOICES = 10
SAMPLE = 10
QUARTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class MeterUse:
    meter: str
    unit: str
    quantity: Decimal
    previous: Decimal  # the same stretch of the previous period


@dataclass(frozen=True, slots=True)
class Amount:
    unit: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Holding:
    unit: str
    balance: Decimal
    available: Decimal
    pending_in: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceRef:
    id: int
    label: str
    status: str
    kind: str
    total: Decimal
    currency: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class SlaState:
    charge: str
    meter: str
    measured: Decimal | None  # None: no measurement yet this period
    credit: Decimal  # negative: what the invoice would credit
    status: str  # met | breached | no_data


@dataclass(frozen=True, slots=True)
class Customer360:
    customer: Customer
    stage: Stage
    subscriptions: list[Subscription]
    period: Period | None
    usage: list[MeterUse]
    spend: Amount
    balances: list[Holding]
    open_invoices: list[InvoiceRef]
    past_invoices: list[InvoiceRef]
    sla: list[SlaState]


@dataclass(frozen=True, slots=True)
class PortfolioStage:
    stage: str
    customers: int
    revenue: list[Amount]
    sample: list[str]


@dataclass(frozen=True, slots=True)
class Portfolio:
    stages: list[PortfolioStage]
    customers: int
    moves: StageMoves | None = None  # when asked for with `since`


# --- the pieces both views share -----------------------------------------------------------------------------
class _Plans:
    def __init__(self, engine: Engine, tenant_id: int) -> None:
        self.engine, self.tenant_id = engine, tenant_id
        self._known: dict[int, PlanVersion] = {}

    def __call__(self, version_id: int) -> PlanVersion:
        found = self._known.get(version_id)
        if found is None:
            found = self._known[version_id] = get_plan_version_by_id(self.engine, self.tenant_id, version_id)
        return found


def _ceil_quarter(at: datetime) -> datetime:
    floor = floor_quarter_hour(at)
    return floor if floor == utc(at) else floor + QUARTER


@dataclass(frozen=True, slots=True)
class _Picture:
    """What the stage rules and the usage windows need of one customer."""

    external_id: str
    created_at: datetime | None
    subs: list[Subscription]  # as of `at`
    period: Period | None  # of the first trial/active subscription (else the first paused one)
    previous_start: datetime | None  # start of the period before it
    meters: tuple[str, ...]  # priced by the live plans, in plan order

    def windows(self, at: datetime) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]] | None:
        """(this period so far, the same stretch of the previous period), on the 15-minute grid."""
        if self.period is None or self.previous_start is None:
            return None
        end = min(_ceil_quarter(at), self.period.end)
        if end <= self.period.start:
            return None
        start = self.previous_start
        return (self.period.start, end), (start, min(start + (end - self.period.start), self.period.start))


def _picture(
    external_id: str, created_at: datetime | None, recorded: list[Subscription], plans: _Plans, at: datetime
) -> _Picture:
    checkpoint()  # once per customer: a portfolio builds one picture for each
    subs = [as_of(s, at) for s in recorded]
    live = [s for s in subs if s.state in LIVE and s.started_at <= at]
    running = [s for s in live if s.state is not State.PAUSED] or live
    current = running[0] if running else None
    period = previous_start = None
    if current is not None:
        plan = plans(current.plan_version_id)
        cycle = BillingCycle.from_instant(current.billing_anchor, plan.interval, current.timezone)
        period = cycle.period_at(at)
        previous_start = cycle.period(period.index - 1).start
    meters: list[str] = []
    for s in live:
        for charge in plans(s.plan_version_id).charges:
            if charge.kind == "usage" and charge.meter and charge.meter not in meters:
                meters.append(charge.meter)
    return _Picture(external_id, created_at, subs, period, previous_start, tuple(meters))


def _combine(meter: Meter | None, values: list[Decimal]) -> Decimal:
    agg = meter.aggregation if meter is not None else Aggregation.SUM
    if agg is Aggregation.MAX:
        return max(values)
    if agg is Aggregation.MIN:
        return min(values)
    return sum(values, Decimal(0))


def _window_usage(
    engine: Engine, tenant_id: int, meters: dict[str, Meter], window: tuple[datetime, datetime], ids: Sequence[str]
) -> dict[tuple[str, str], Decimal]:
    """(customer, meter) → quantity over the window, for a group of customers, dimensions combined."""
    cols = period_columns(engine, tenant_id, window[0], window[1], customers=list(ids))
    parts: dict[tuple[str, str], list[Decimal]] = {}
    for cust, meter, units, scale in zip(
        cols.customers.tolist(), cols.meters.tolist(), cols.units.tolist(), cols.scales.tolist(), strict=True
    ):
        parts.setdefault((cust, meter), []).append(Decimal(units).scaleb(-scale))
    out: dict[tuple[str, str], Decimal] = {}
    for (cust, code), values in parts.items():
        checkpoint()
        meter = meters.get(code)
        if (
            len(values) > 1
            and meter is not None
            and meter.aggregation in (Aggregation.LATEST, Aggregation.UNIQUE_COUNT)
        ):
            # Dimensions of these do not combine from per-dimension figures: ask the exact query.
            rows = usage(engine, tenant_id, cust, code, window[0], window[1])
            out[(cust, code)] = rows[0].quantity if rows else Decimal(0)
        else:
            out[(cust, code)] = _combine(meter, values)
    return out


def _usages(
    engine: Engine, tenant_id: int, pictures: Iterable[_Picture], meters: dict[str, Meter], at: datetime
) -> dict[str, list[MeterUse]]:
    """Usage so far and the previous stretch per priced meter, customers grouped by identical windows."""
    groups: dict[tuple[tuple[datetime, datetime], tuple[datetime, datetime]], list[_Picture]] = {}
    out: dict[str, list[MeterUse]] = {}
    for p in pictures:
        w = p.windows(at)
        if w is None:
            out[p.external_id] = [MeterUse(m, _unit(meters, m), Decimal(0), Decimal(0)) for m in p.meters]
        elif p.meters:
            groups.setdefault(w, []).append(p)
        else:
            out[p.external_id] = []
    for (now_w, prev_w), members in groups.items():
        checkpoint()
        ids = sorted(p.external_id for p in members)
        current = _window_usage(engine, tenant_id, meters, now_w, ids)
        previous = _window_usage(engine, tenant_id, meters, prev_w, ids) if prev_w[0] < prev_w[1] else {}
        for p in members:
            out[p.external_id] = [
                MeterUse(
                    m,
                    _unit(meters, m),
                    current.get((p.external_id, m), Decimal(0)),
                    previous.get((p.external_id, m), Decimal(0)),
                )
                for m in p.meters
            ]
    return out


def _unit(meters: dict[str, Meter], code: str) -> str:
    m = meters.get(code)
    return m.unit if m is not None else ""


def _day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def _pct(current: Decimal, previous: Decimal) -> str:
    if previous == 0:
        return "from 0"
    change = (current - previous) / previous * 100
    return f"{change:+.0f} %"


def stage_of(p: _Picture, use: list[MeterUse], plans: _Plans, at: datetime) -> Stage:
    """The lifecycle stage by the rules in the module docstring (first that applies)."""
    live = [s for s in p.subs if s.state in LIVE and s.started_at <= at]
    if not live:
        if not p.subs:
            if p.created_at is not None and at - p.created_at < HORIZON:
                return Stage("new", f"created {(at - p.created_at).days} days ago; no subscription yet")
            return Stage("cancelled", "never subscribed")
        ended = [s.ends_at for s in p.subs if s.ends_at is not None]
        last = f" (the last ended {_day(max(ended))})" if ended else ""
        return Stage("cancelled", f"no live subscription: every subscription is cancelled{last}")
    soon = at + HORIZON
    for s in live:
        if s.ends_at is not None and at < s.ends_at <= soon:
            return Stage("renewal_due", f"subscription {s.id} ends on {_day(s.ends_at)} (cancellation scheduled)")
    for s in live:
        plan = plans(s.plan_version_id)
        if plan.interval in (Interval.QUARTERLY, Interval.YEARLY):
            period = BillingCycle.from_instant(s.billing_anchor, plan.interval, s.timezone).period_at(at)
            if period.end <= soon:
                return Stage("renewal_due", f"{plan.label} ({plan.interval.value}) renews on {_day(period.end)}")
    first = min(s.started_at for s in p.subs)
    if at - first < HORIZON:
        return Stage("new", f"first subscription started {(at - first).days} days ago")
    for s in live:
        if s.state is State.TRIAL:
            until = f" until {_day(s.trial_ends_at)}" if s.trial_ends_at is not None else ""
            return Stage("new", f"subscription {s.id} is in trial{until}")
    ups = [u for u in use if (u.previous == 0 and u.quantity > 0) or u.quantity > u.previous * (1 + TREND)]
    downs = [u for u in use if u.quantity < u.previous * (1 - TREND)]
    moves = ", ".join(f"{u.meter} {_pct(u.quantity, u.previous)}" for u in [*ups, *downs])
    basis = "vs the same part of the previous period"
    if ups and not downs:
        return Stage("growing", f"usage up {basis}: {moves}")
    if downs and not ups:
        return Stage("declining", f"usage down {basis}: {moves}")
    if ups:
        return Stage("steady", f"mixed usage {basis}: {moves}")
    return Stage("steady", f"usage within ±10 % {basis}" if use else "no priced usage to compare")


# --- customer 360 --------------------------------------------------------------------------------------------
#: Documents a customer 360 lists as open: drafts (not yet sent) and whatever still has money due. Every
#: other status (paid, void, uncollectible, closed) is past.
OPEN_360 = ("draft", *OPEN)


def _refs(rows: Iterable[Any]) -> list[InvoiceRef]:
    out = []
    for r in rows:
        scale = currency_unit(r.currency).scale
        label = number_label(r.number, r.number_series) if r.number is not None else f"draft {r.id}"
        out.append(
            InvoiceRef(
                int(r.id),
                label,
                r.status,
                r.kind,
                Decimal(int(r.total)).scaleb(-scale),
                r.currency,
                stored_utc(r.due_at),
            )
        )
    return out


def _sla(plan_versions: Iterable[PlanVersion], previews: list[Invoice]) -> list[SlaState]:
    """SLA-priced charges as the upcoming invoice rates them: measured so far and the credit earned."""
    out: list[SlaState] = []
    seen: set[str] = set()
    for plan in plan_versions:
        for charge in plan.charges:
            if charge.price_definition.get("model") != "sla_credit" or charge.code in seen:
                continue
            seen.add(charge.code)
            lines = [
                (inv, ln)
                for inv in previews
                for ln in inv.lines
                if ln.kind == "sla_credit" and ln.charge_code == charge.code
            ]
            if not lines:
                out.append(SlaState(charge.code, charge.meter or "", None, Decimal(0), "no_data"))
                continue
            inv, line = lines[-1]
            credit = inv.money(line.amount)
            out.append(
                SlaState(charge.code, charge.meter or "", line.quantity, credit, "breached" if credit else "met")
            )
    return out


def customer_360(engine: Engine, tenant_id: int, external_id: str, at: datetime) -> Customer360:
    """Everything about one customer as of `at` (NotFound for an unknown customer)."""
    customer = get_customer(engine, tenant_id, external_id)
    plans = _Plans(engine, tenant_id)
    with engine.connect() as conn:
        recorded = [
            subscription_from_row(r)
            for r in conn.execute(
                select_subscriptions(tenant_id)
                .where(customers.c.external_id == external_id)
                .order_by(subscriptions.c.id)
            )
        ]
        i = invoices.c
        mine = (i.tenant_id == tenant_id, i.customer_id == customer.id)
        open_rows = conn.execute(select(invoices).where(*mine, i.status.in_(OPEN_360)).order_by(i.id)).all()
        past_rows = conn.execute(
            select(invoices).where(*mine, i.status.notin_(OPEN_360)).order_by(i.id.desc()).limit(PAST_INVOICES)
        ).all()
        holdings = []
        for t in customer_totals(conn, tenant_id, external_id):
            scale = resolve_unit(conn, tenant_id, t.unit).scale
            holdings.append(
                Holding(t.unit, *(Decimal(v).scaleb(-scale) for v in (t.balance, t.available, t.pending_in)))
            )
    p = _picture(external_id, customer.created_at, recorded, plans, at)
    meters = {m.code: m for m in list_meters(engine, tenant_id)}
    use = _usages(engine, tenant_id, [p], meters, at)[external_id]
    previews = preview_invoice(engine, tenant_id, external_id, at)
    spend = sum((inv.money(inv.total) for inv in previews), Decimal(0))
    live_plans = [plans(s.plan_version_id) for s in p.subs if s.state in LIVE]
    return Customer360(
        customer=customer,
        stage=stage_of(p, use, plans, at),
        subscriptions=recorded,
        period=p.period,
        usage=use,
        spend=Amount(customer.currency, spend),
        balances=holdings,
        open_invoices=_refs(open_rows),
        past_invoices=_refs(past_rows),
        sla=_sla(live_plans, previews),
    )


# --- portfolio -----------------------------------------------------------------------------------------------
def _stages(
    engine: Engine,
    tenant_id: int,
    people: Sequence[Any],
    subs: dict[str, list[Subscription]],
    plans: _Plans,
    meters: dict[str, Meter],
    at: datetime,
) -> dict[str, str]:
    """Each customer's stage name at `at` (people: rows with external_id and created_at)."""
    pictures = [
        _picture(r.external_id, None if r.created_at is None else stored_utc(r.created_at), subs.get(r.external_id, []),
                 plans, at)
        for r in people
    ]  # fmt: skip
    uses = _usages(engine, tenant_id, pictures, meters, at)
    out: dict[str, str] = {}
    for p in pictures:
        checkpoint()
        out[p.external_id] = stage_of(p, uses.get(p.external_id, []), plans, at).name
    return out


def _people_and_subscriptions(engine: Engine, tenant_id: int) -> tuple[list[Any], dict[str, list[Subscription]]]:
    with engine.connect() as conn:
        people = conn.execute(
            select(customers.c.id, customers.c.external_id, customers.c.created_at)
            .where(customers.c.tenant_id == tenant_id)
            .order_by(customers.c.external_id)
        ).all()
        subs: dict[str, list[Subscription]] = {}
        for r in conn.execute(select_subscriptions(tenant_id).order_by(subscriptions.c.id)):
            s = subscription_from_row(r)
            subs.setdefault(s.customer_external_id, []).append(s)
    return list(people), subs


#: The stage of a customer who did not exist yet at the earlier instant of `stage_moves`.
NOT_YET = "not_yet"


@dataclass(frozen=True, slots=True)
class StageMove:
    before: str  # a stage, or NOT_YET
    after: str
    customers: int
    sample: list[str]


@dataclass(frozen=True, slots=True)
class StageMoves:
    since: datetime
    at: datetime
    moves: list[StageMove]  # every (before, after) pair with customers, changed pairs first
    moved: int  # customers whose stage changed (new customers included)
    customers: int


def stage_moves(engine: Engine, tenant_id: int, at: datetime, since: datetime) -> StageMoves:
    """How customers moved between lifecycle stages from `since` to `at`: each customer's stage at both
    instants by the same rules as the portfolio (history and usage as they stood then)."""
    _check_since(at, since)
    plans = _Plans(engine, tenant_id)
    people, subs = _people_and_subscriptions(engine, tenant_id)
    meters = {m.code: m for m in list_meters(engine, tenant_id)}
    now = _stages(engine, tenant_id, people, subs, plans, meters, at)
    return _moves(engine, tenant_id, people, subs, plans, meters, now, at, since)


def _check_since(at: datetime, since: datetime) -> None:
    if since >= at:
        raise InvalidArgument(f"since {since.isoformat()} is not before {at.isoformat()}")


def _moves(
    engine: Engine,
    tenant_id: int,
    people: Sequence[Any],
    subs: dict[str, list[Subscription]],
    plans: _Plans,
    meters: dict[str, Meter],
    now: dict[str, str],
    at: datetime,
    since: datetime,
) -> StageMoves:
    earlier = [r for r in people if r.created_at is None or stored_utc(r.created_at) <= since]
    then = _stages(engine, tenant_id, earlier, subs, plans, meters, since)
    pairs: dict[tuple[str, str], list[str]] = {}
    for r in people:
        pairs.setdefault((then.get(r.external_id, NOT_YET), now[r.external_id]), []).append(r.external_id)
    order = {s: n for n, s in enumerate((NOT_YET, *STAGES))}
    moves = [
        StageMove(before, after, len(ids), ids[:SAMPLE])
        for (before, after), ids in sorted(pairs.items(), key=lambda kv: (kv[0][0] == kv[0][1], order[kv[0][0]],
                                                                         order[kv[0][1]]))
    ]  # fmt: skip
    moved = sum(m.customers for m in moves if m.before != m.after)
    return StageMoves(utc(since), utc(at), moves, moved, len(people))


def portfolio(engine: Engine, tenant_id: int, at: datetime, since: datetime | None = None) -> Portfolio:
    """Customers per stage, with revenue (finalized or paid invoices of the last 30 days) per currency;
    with `since`, also how customers moved between stages from then (`stage_moves`, sharing the work of
    today's stages).

    Batched: customers, subscriptions and revenue in one query each, usage in a few queries per
    distinct pair of windows; nothing per customer except the rare multi-dimension latest or
    unique_count meter.
    """
    if since is not None:
        _check_since(at, since)
    plans = _Plans(engine, tenant_id)
    people, subs = _people_and_subscriptions(engine, tenant_id)
    with engine.connect() as conn:
        i = invoices.c
        revenue_rows = conn.execute(
            select(i.customer_id, i.currency, func.sum(i.total).label("total"))
            .where(i.tenant_id == tenant_id, i.status.in_(("finalized", "paid")), i.finalized_at >= at - HORIZON)
            .where(i.finalized_at <= at)
            .group_by(i.customer_id, i.currency)
        ).all()
    meters = {m.code: m for m in list_meters(engine, tenant_id)}
    stage_of_customer = _stages(engine, tenant_id, people, subs, plans, meters, at)
    stage_by_id: dict[int, str] = {}
    members: dict[str, list[str]] = {s: [] for s in STAGES}
    for r in people:
        stage = stage_of_customer[r.external_id]
        stage_by_id[int(r.id)] = stage
        members[stage].append(r.external_id)
    revenue: dict[str, dict[str, int]] = {s: {} for s in STAGES}
    for row in revenue_rows:
        per = revenue[stage_by_id[int(row.customer_id)]]
        per[row.currency] = per.get(row.currency, 0) + int(row.total)
    stages = [
        PortfolioStage(
            s,
            len(members[s]),
            [Amount(c, Decimal(v).scaleb(-currency_unit(c).scale)) for c, v in sorted(revenue[s].items())],
            members[s][:SAMPLE],
        )
        for s in STAGES
    ]
    moves = None
    if since is not None:
        moves = _moves(engine, tenant_id, people, subs, plans, meters, stage_of_customer, at, since)
    return Portfolio(stages, len(people), moves)


__all__ = [
    "STAGES",
    "Customer360",
    "MeterUse",
    "Portfolio",
    "PortfolioStage",
    "SlaState",
    "Stage",
    "StageMove",
    "StageMoves",
    "customer_360",
    "portfolio",
    "stage_moves",
    "stage_of",
]
