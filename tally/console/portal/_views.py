"""What each portal page shows, read for one (tenant, customer) only: every function takes the session's tenant
id and customer and nothing else that could name another customer's data. An invoice, subscription or dispute
id typed into a URL is looked up within the tenant and then checked against the customer (`own_invoice`,
`own_subscription`): another customer's is NotFound, as if it did not exist.

Synchronous domain calls, run on the API's pool by the pages (`Page.run`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from invoicing.catalog import (
    BillingCycle,
    Customer,
    Period,
    floor_quarter_hour,
    get_customer,
    get_plan_version_by_id,
    list_plans,
)
from invoicing.documents import (
    DISPUTABLE_KINDS,
    FLAGGABLE,
    Dispute,
    Invoice,
    InvoiceFilter,
    get_invoice,
    invoice_page,
    latest_disputes,
    list_disputes,
    preview_invoice,
)
from invoicing.ledger import Account, HistoryLine, Ledger, RateNotFound
from invoicing.ledger.unit import from_us
from invoicing.subscriptions import State, Subscription, list_subscriptions
from metering.errors import NotFound
from metering.meter import list_meters
from metering.usage import Window, usage

#: Documents a customer sees: issued ones (a draft is not sent yet; a closed one was never issued).
SHOWN_STATUSES = ("finalized", "partially_paid", "paid", "void", "uncollectible")
#: Movements shown per balance on the balances page (the newest).
HISTORY_LINES = 20
INVOICES_PAGE = 25
#: What each ledger transfer code means to a customer.
MOVEMENTS = {
    "top_up": "Top-up",
    "convert": "Conversion",
    "invoice_hold": "Reserved for an invoice",
    "invoice_post": "Paid an invoice",
    "invoice_release": "Reservation released",
    "invoice_void": "Invoice voided: given back",
    "overpayment": "Overpayment kept as credit",
    "credit_balance": "Credit note",
    "grant": "Credit granted",
    "grant_expire": "Credit expired",
    "earn": "Points earned",
    "spend": "Spent",
    "invoice_revenue": "Invoice issued",
    "invoice_tax": "Tax on an invoice",
    "payment": "Payment received",
    "uncollectible": "Written off",
}


def customer_of(engine: Engine, tenant_id: int, external_id: str) -> Customer:
    return get_customer(engine, tenant_id, external_id)


def _not_found(what: str, ident: int) -> NotFound:
    return NotFound(f"no {what} {ident} in your account")


def own_invoice(engine: Engine, tenant_id: int, customer_id: int, invoice_id: int) -> Invoice:
    """The invoice if it is this customer's and issued; else NotFound (the same answer for every reason)."""
    if not 1 <= invoice_id < 2**31:
        raise _not_found("invoice", invoice_id)
    try:
        inv = get_invoice(engine, tenant_id, invoice_id)
    except NotFound:
        raise _not_found("invoice", invoice_id) from None
    if inv.customer_id != customer_id or inv.status not in SHOWN_STATUSES:
        raise _not_found("invoice", invoice_id)
    return inv


def own_subscription(engine: Engine, tenant_id: int, customer: str, subscription_id: int) -> Subscription:
    for sub in list_subscriptions(engine, tenant_id, customer):
        if sub.id == subscription_id:
            return sub
    raise _not_found("subscription", subscription_id)


# --- overview -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeterUse:
    meter: str
    name: str
    unit: str
    days: list[tuple[str, Decimal]]  # (local day, quantity), every day of the period so far
    total: Decimal


@dataclass(frozen=True)
class Overview:
    customer: Customer
    period: Period | None
    subscriptions: list[Subscription]
    plan_labels: dict[int, str]
    usage: list[MeterUse]
    upcoming: list[Invoice]
    spend: dict[str, Decimal]
    open_disputes: int


def _current_period(
    engine: Engine, tenant_id: int, subs: list[Subscription], now: datetime
) -> tuple[Period | None, list[Any]]:
    """The period of the first live subscription (else None) and the plan versions of the live ones."""
    live = [s for s in subs if s.state in (State.ACTIVE, State.TRIAL)]
    plans = [get_plan_version_by_id(engine, tenant_id, s.plan_version_id) for s in live]
    if not live:
        return None, plans
    first = live[0]
    return BillingCycle.from_instant(first.billing_anchor, plans[0].interval, first.timezone).period_at(now), plans


def overview(engine: Engine, tenant_id: int, external_id: str, now: datetime) -> Overview:
    customer = get_customer(engine, tenant_id, external_id)
    subs = list_subscriptions(engine, tenant_id, external_id, at=now)
    period, plans = _current_period(engine, tenant_id, subs, now)
    versions = {v: get_plan_version_by_id(engine, tenant_id, v) for v in {s.plan_version_id for s in subs}}
    labels = {v: p.name or p.code for v, p in versions.items()}
    use: list[MeterUse] = []
    if period is not None:
        meters = {m.code: m for m in list_meters(engine, tenant_id)}
        codes = list(dict.fromkeys(c.meter for p in plans for c in p.charges if c.meter))
        end = min(floor_quarter_hour(now), period.end)  # usage is kept per quarter hour
        zone = ZoneInfo(customer.timezone)
        days: list[str] = []
        cursor = period.start
        while cursor < end:
            label = cursor.astimezone(zone).strftime("%Y-%m-%d")
            if label not in days:
                days.append(label)
            cursor += timedelta(hours=6)  # every local day of the range, whatever its length (DST)
        for code in codes:
            meter = meters.get(code)
            if meter is None or end <= period.start:
                continue
            rows = usage(
                engine, tenant_id, external_id, code, period.start, end, window=Window.DAY, tz=customer.timezone
            )
            by_day = {r.window_start.strftime("%Y-%m-%d"): r.quantity for r in rows if r.window_start is not None}
            whole = usage(engine, tenant_id, external_id, code, period.start, end, tz=customer.timezone)
            total = whole[0].quantity if whole else Decimal(0)
            points = [(d, by_day.get(d, Decimal(0))) for d in days]
            use.append(MeterUse(code, meter.name or code, meter.unit or "", points, total))
    upcoming = preview_invoice(engine, tenant_id, external_id, now) if subs else []
    spend: dict[str, Decimal] = {}
    for inv in upcoming:
        spend[inv.currency] = spend.get(inv.currency, Decimal(0)) + inv.money(inv.total)
    opened = len(list_disputes(engine, tenant_id, status="open", customer=external_id, limit=1000))
    return Overview(customer, period, subs, labels, use, upcoming, spend, opened)


# --- balances -------------------------------------------------------------------------------------------------------
@dataclass
class Holding:
    """One group of balances: cash, credits (grants and promotional credit) or one points unit."""

    kind: str  # cash | credits | points | owed
    title: str
    unit: str
    scale: int
    balance: int = 0
    available: int = 0
    accounts: list[Account] = field(default_factory=list)
    #: (line, movement label, when), newest first
    history: list[tuple[HistoryLine, str, datetime]] = field(default_factory=list)

    def money(self, steps: int) -> Decimal:
        return Decimal(steps).scaleb(-self.scale)


@dataclass(frozen=True)
class Target:
    """A points unit the customer's currency converts to now, at `rate` points per currency unit."""

    unit: str
    rate: Decimal


@dataclass(frozen=True)
class Balances:
    customer: Customer
    holdings: list[Holding]
    targets: list[Target]


def _group(a: Account, currency: str) -> tuple[str, str]:
    if a.kind == "receivable":
        return "owed", "Owed on open invoices"
    if a.unit == currency or a.unit.isupper():
        return ("cash", "Cash balance") if a.kind == "cash" else ("credits", "Credits")
    return "points", "Points"


def balances(engine: Engine, tenant_id: int, external_id: str, now: datetime) -> Balances:
    customer = get_customer(engine, tenant_id, external_id)
    ledger = Ledger(engine, tenant_id)
    groups: dict[tuple[str, str], Holding] = {}
    for a in ledger.accounts(external_id):
        kind, title = _group(a, customer.currency)
        key = (kind, a.unit)
        if key not in groups:
            groups[key] = Holding(kind, title, a.unit, ledger.unit(a.unit).scale)
        h = groups[key]
        h.accounts.append(a)
        if kind == "owed":  # debit-normal: what the customer owes
            h.balance += -a.balance
            h.available += -a.balance
        else:
            h.balance += a.balance
            h.available += a.available
        for line in ledger.history(a.id, HISTORY_LINES):
            label = MOVEMENTS.get(line.transfer.code, line.transfer.code.replace("_", " "))
            h.history.append((line, label, from_us(line.transfer.ts_us)))
    for h in groups.values():
        h.history.sort(key=lambda x: -x[0].transfer.seq)
        del h.history[HISTORY_LINES:]
    # Cash, then credits, then points, then what is owed; the customer's currency first.
    order = {"cash": 0, "credits": 1, "points": 2, "owed": 3}
    held = sorted(groups.values(), key=lambda h: (order[h.kind], h.unit != customer.currency, h.unit))
    if not any(h.kind == "cash" and h.unit == customer.currency for h in held):
        held.insert(0, Holding("cash", "Cash balance", customer.currency, ledger.unit(customer.currency).scale))
    return Balances(customer, held, targets(ledger, customer.currency, now))


def targets(ledger: Ledger, currency: str, now: datetime) -> list[Target]:
    """The points units `currency` converts to now (those with a rate in force)."""
    out: list[Target] = []
    for unit in ledger.points_units(limit=200):
        try:
            rate = ledger.rate_at(currency, unit.code, now)
        except RateNotFound:
            continue
        out.append(Target(unit.code, Decimal(rate.rate)))
    return out


@dataclass(frozen=True)
class Quote:
    amount: int  # steps of `source` asked
    source: str
    target: str
    debited: int
    credited: int
    rate: Decimal
    source_scale: int
    target_scale: int
    available: int  # what the customer's cash wallet holds now (steps of `source`)

    def source_money(self, steps: int) -> Decimal:
        return Decimal(steps).scaleb(-self.source_scale)

    def target_money(self, steps: int) -> Decimal:
        return Decimal(steps).scaleb(-self.target_scale)


def quote(engine: Engine, tenant_id: int, external_id: str, amount_text: str, target: str, now: datetime) -> Quote:
    """What converting `amount_text` of the customer's currency to `target` points would move now, exactly."""
    customer = get_customer(engine, tenant_id, external_id)
    ledger = Ledger(engine, tenant_id)
    source = customer.currency
    if target not in {t.unit for t in targets(ledger, source, now)}:
        raise NotFound(f"no points unit {target!r} to convert to")
    amount = ledger.amount(amount_text, source)
    debited, credited, rate = ledger.quote(amount, source, target, now)
    available = sum(a.available for a in ledger.accounts(external_id) if a.kind == "cash" and a.unit == source)
    return Quote(amount, source, target, debited, credited, Decimal(rate.rate), ledger.unit(source).scale,
                 ledger.unit(target).scale, available)  # fmt: skip


# --- plans ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plans:
    subscriptions: list[Subscription]
    plan_labels: dict[int, str]
    choices: dict[int, list[PlanChoice]]  # per live subscription: the plans it may change to


def plans(engine: Engine, tenant_id: int, external_id: str, now: datetime) -> Plans:
    subs = list_subscriptions(engine, tenant_id, external_id, at=now)
    versions = {v: get_plan_version_by_id(engine, tenant_id, v) for v in {s.plan_version_id for s in subs}}
    live = [s for s in subs if s.state in (State.ACTIVE, State.TRIAL)]
    return Plans(subs, {v: p.name or p.code for v, p in versions.items()},
                 {s.id: plan_choices(engine, tenant_id, s) for s in live})  # fmt: skip


@dataclass(frozen=True)
class PlanChoice:
    code: str
    name: str
    version: int


def plan_choices(engine: Engine, tenant_id: int, sub: Subscription) -> list[PlanChoice]:
    """Published plans in the subscription's currency other than its own."""
    current = get_plan_version_by_id(engine, tenant_id, sub.plan_version_id)
    out = []
    from invoicing.catalog import get_plan_version

    for p in list_plans(engine, tenant_id):
        if p.published_version is None:
            continue
        v = get_plan_version(engine, tenant_id, p.code, p.published_version, published=True)
        if v.currency == current.currency and v.id != current.id:
            out.append(PlanChoice(p.code, p.name or p.code, v.version))
    return out


# --- invoices and disputes ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InvoiceList:
    invoices: list[Invoice]
    next_after: int | None


def invoices(engine: Engine, tenant_id: int, external_id: str, after: int) -> InvoiceList:
    """The customer's issued documents, a page at a time (drafts skipped: a page may come back short)."""
    found: list[Invoice] = []
    cursor = after
    while True:
        page = invoice_page(
            engine, tenant_id, InvoiceFilter(customer=external_id), after_id=cursor, limit=INVOICES_PAGE
        )
        found += [i for i in page.invoices if i.status in SHOWN_STATUSES]
        if page.next_after_id is None:
            return InvoiceList(found, None)
        cursor = page.next_after_id
        if len(found) >= INVOICES_PAGE:
            return InvoiceList(found, cursor)


@dataclass(frozen=True)
class InvoiceView:
    invoice: Invoice
    disputes: dict[int, Dispute]  # line position → latest dispute
    flaggable: set[int]  # positions the customer may flag now
    corrections: list[Invoice]  # credit notes and adjustments of this invoice shown to the customer


def invoice_view(engine: Engine, tenant_id: int, customer: Customer, invoice_id: int) -> InvoiceView:
    inv = own_invoice(engine, tenant_id, customer.id, invoice_id)
    latest = {pos: d for (iid, pos), d in latest_disputes(engine, tenant_id, [invoice_id]).items() if iid == invoice_id}
    flaggable: set[int] = set()
    if inv.status in FLAGGABLE and inv.kind != "credit_note":
        for ln in inv.lines:
            d = latest.get(ln.position)
            if ln.kind in DISPUTABLE_KINDS and ln.amount > 0 and (d is None or d.status != "open"):
                flaggable.add(ln.position)
    related = invoice_page(engine, tenant_id, InvoiceFilter(customer=customer.external_id), limit=1000).invoices
    corrections = [i for i in related if i.corrects_invoice_id == invoice_id and i.status in SHOWN_STATUSES]
    return InvoiceView(inv, latest, flaggable, corrections)


def disputes(engine: Engine, tenant_id: int, external_id: str) -> list[Dispute]:
    """The customer's disputes, newest first."""
    return list(reversed(list_disputes(engine, tenant_id, customer=external_id, limit=1000)))


__all__ = [
    "HISTORY_LINES",
    "SHOWN_STATUSES",
    "Balances",
    "Holding",
    "InvoiceList",
    "InvoiceView",
    "MeterUse",
    "Overview",
    "PlanChoice",
    "Plans",
    "Quote",
    "Target",
    "balances",
    "customer_of",
    "disputes",
    "invoice_view",
    "invoices",
    "overview",
    "own_invoice",
    "own_subscription",
    "plan_choices",
    "plans",
    "quote",
    "targets",
]
