"""Threshold alerts: a customer's usage, spend or balance crossing a line becomes an outbox event.

Semantics (docs/events.md has the long form):
- usage: the meter's quantity in the customer's current billing period reaches the threshold
  (quantity >= threshold) → `usage.threshold_crossed`, once per period. The period is the one of
  the customer's first active (or trialing) subscription; with none, the calendar month in the
  customer's time zone.
- spend: the upcoming invoices' total this period (`preview_invoice`, in the customer's currency)
  reaches the threshold → `spend.threshold_crossed`, once per period.
- balance: the available balance in a unit falls below the threshold → `wallet.balance_low`,
  once; it re-arms when the balance is back at or above the threshold, and fires again on the
  next fall.
- leakage (tenant-wide, no customer): this calendar month's (UTC) unbilled events so far
  (`leakage_report`, every category) reach the threshold → `usage.unbilled`, once per month. The
  report reads a month of rollups, so an evaluator process computes it at most once per
  LEAKAGE_EVERY per alert.

Exactly once, even with two evaluators: the crossing row (alert, period_start) is inserted with
ON CONFLICT DO NOTHING and the event is emitted in the same transaction only when the insert
won. A balance alert uses a fixed period_start (`LOW`) while it is low and deletes the row when it
recovers, which is what re-arms it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from invoicing.catalog import (
    BillingCycle,
    Customer,
    Interval,
    Period,
    floor_quarter_hour,
    get_customer,
    get_plan_version_by_id,
    stored_utc,
    zone,
)
from invoicing.documents import preview_invoice
from invoicing.events import NewEvent, emit
from invoicing.insight._leakage import leakage_report
from invoicing.ledger.balance import customer_totals
from invoicing.ledger.unit import resolve_unit
from invoicing.platform_tables import alert_crossings, alerts
from invoicing.subscriptions import State, list_subscriptions
from invoicing.tables import customers
from metering.errors import InvalidArgument, NotFound
from metering.meter import get_meter
from metering.transactions import begin_write
from metering.usage import usage
from rating.errors import RatingError
from rating.fixedpoint import parse_decimal

log = logging.getLogger(__name__)

USAGE, SPEND, BALANCE, LEAKAGE = "usage", "spend", "balance", "leakage"
KINDS = (USAGE, SPEND, BALANCE, LEAKAGE)
EVENT_TYPE = {
    USAGE: "usage.threshold_crossed",
    SPEND: "spend.threshold_crossed",
    BALANCE: "wallet.balance_low",
    LEAKAGE: "usage.unbilled",
}
#: A leakage alert's report is computed at most this often per alert in one process (it reads a month of rollups).
LEAKAGE_EVERY = timedelta(minutes=5)
#: When each leakage alert was last computed, by (database, alert id, creation instant): a recreated id is new.
_leakage_checked: dict[tuple[str, int, datetime], datetime] = {}
#: The period_start of a balance alert's crossing while the balance is low (one row at most).
LOW = datetime(1970, 1, 1, tzinfo=UTC)
THRESHOLD_CHARS_MAX = 40


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    tenant_id: int
    customer: str  # external id; "" for a tenant-wide (leakage) alert
    kind: str
    meter: str  # usage only, else ""
    unit: str  # balance only, else ""
    threshold: Decimal
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Crossing:
    """An alert that fired in an evaluator pass, and the outbox event it emitted."""

    alert: Alert
    value: Decimal
    period: Period | None  # None for balance alerts; the calendar month (UTC) for leakage alerts
    sequence: int


def parse_threshold(text: str, field: str = "alert.threshold") -> Decimal:
    if not text:
        raise InvalidArgument(f'{field} is required (an exact decimal such as "1000" or "49.50")')
    try:
        value = parse_decimal(text, field, THRESHOLD_CHARS_MAX)
    except RatingError as exc:
        raise InvalidArgument(str(exc)) from None
    if value <= 0:
        raise InvalidArgument(f"{field} must be positive, got {text}")
    return value


def _alert(r: Any) -> Alert:
    return Alert(
        r.id, r.tenant_id, r.external_id or "", r.kind, r.meter or "", r.unit or "", Decimal(r.threshold),
        stored_utc(r.created_at),
    )  # fmt: skip


def _select(tenant_id: int) -> Any:
    return (
        select(alerts, customers.c.external_id)
        .outerjoin(customers, customers.c.id == alerts.c.customer_id)
        .where(alerts.c.tenant_id == tenant_id)
    )


def create_alert(
    engine: Engine, tenant_id: int, customer: str, kind: str, threshold: str, now: datetime, *,
    meter: str = "", unit: str = "",
) -> Alert:  # fmt: skip
    """Validate and store an alert; the first evaluator pass after it may fire it at once."""
    if kind not in KINDS:
        raise InvalidArgument(f"alert.kind: {kind!r} is not one of {', '.join(KINDS)}")
    if kind == LEAKAGE:
        if customer:
            raise InvalidArgument("alert.customer: a leakage alert is tenant-wide; leave customer empty")
        customer_id = None
    elif not customer:
        raise InvalidArgument("alert.customer is required (the customer's external id)")
    else:
        customer_id = get_customer(engine, tenant_id, customer).id
    value = parse_threshold(threshold)
    if kind == USAGE:
        if not meter:
            raise InvalidArgument("alert.meter is required for a usage alert (a meter code)")
        try:
            get_meter(engine, tenant_id, meter)
        except NotFound:
            raise NotFound(f"alert.meter: no meter {meter!r}; list them with `tally meter list TENANT`") from None
    elif meter:
        raise InvalidArgument(f"alert.meter is only for usage alerts; leave it empty for a {kind} alert")
    if kind == BALANCE:
        if not unit:
            raise InvalidArgument("alert.unit is required for a balance alert (a currency or points unit)")
        with engine.connect() as conn:
            try:
                resolve_unit(conn, tenant_id, unit)
            except NotFound as exc:
                raise InvalidArgument(f"alert.unit: {exc}") from None
    elif unit:
        raise InvalidArgument(f"alert.unit is only for balance alerts; leave it empty for a {kind} alert")
    values = {
        "tenant_id": tenant_id, "customer_id": customer_id, "kind": kind, "meter": meter or None,
        "unit": unit or None, "threshold": format(value, "f"), "created_at": now.astimezone(UTC),
    }  # fmt: skip
    with begin_write(engine) as conn:
        alert_id = conn.execute(insert(alerts).values(**values).returning(alerts.c.id)).scalar_one()
    return get_alert(engine, tenant_id, alert_id)


def get_alert(engine: Engine, tenant_id: int, alert_id: int) -> Alert:
    with engine.connect() as conn:
        row = conn.execute(_select(tenant_id).where(alerts.c.id == alert_id)).one_or_none()
    if row is None:
        raise NotFound(f"no alert {alert_id}; list them with `tally alert list TENANT`")
    return _alert(row)


def list_alerts(engine: Engine, tenant_id: int, customer: str = "") -> list[Alert]:
    query = _select(tenant_id)
    if customer:
        get_customer(engine, tenant_id, customer)  # an unknown customer is NOT_FOUND, not an empty list
        query = query.where(customers.c.external_id == customer)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(alerts.c.id)).all()
    return [_alert(r) for r in rows]


def delete_alert(engine: Engine, tenant_id: int, alert_id: int) -> None:
    with begin_write(engine) as conn:
        found = conn.execute(
            select(alerts.c.id).where(alerts.c.tenant_id == tenant_id, alerts.c.id == alert_id)
        ).first()
        if found is None:
            raise NotFound(f"no alert {alert_id}; list them with `tally alert list TENANT`")
        conn.execute(delete(alert_crossings).where(alert_crossings.c.alert_id == alert_id))
        conn.execute(delete(alerts).where(alerts.c.id == alert_id))


# --- evaluation ------------------------------------------------------------------------------------------------
def current_period(engine: Engine, tenant_id: int, cust: Customer, now: datetime) -> Period:
    """The customer's billing period at `now`: its first active subscription's, else the calendar month."""
    for sub in list_subscriptions(engine, tenant_id, cust.external_id, at=now):
        if sub.state in (State.ACTIVE, State.TRIAL) and sub.started_at <= now:
            plan = get_plan_version_by_id(engine, tenant_id, sub.plan_version_id)
            return BillingCycle.from_instant(sub.billing_anchor, plan.interval, sub.timezone).period_at(now)
    return BillingCycle(date(2000, 1, 1), Interval.MONTHLY, zone(cust.timezone)).period_at(now)


def _usage(engine: Engine, alert: Alert, period: Period) -> Decimal:
    rows = usage(engine, alert.tenant_id, alert.customer, alert.meter, period.start, period.end)
    return sum((r.quantity for r in rows), Decimal(0))


def _spend(engine: Engine, alert: Alert, cust: Customer, now: datetime) -> Decimal:
    total = Decimal(0)
    for inv in preview_invoice(engine, alert.tenant_id, alert.customer, now):
        if inv.currency == cust.currency:
            total += inv.money(inv.total)
    return total


def _balance(engine: Engine, alert: Alert) -> Decimal:
    with engine.connect() as conn:
        unit = resolve_unit(conn, alert.tenant_id, alert.unit)
        for t in customer_totals(conn, alert.tenant_id, alert.customer):
            if t.unit == alert.unit:
                return Decimal(t.available).scaleb(-unit.scale)
    return Decimal(0)


def _crossed(conn: Connection, alert_id: int, period_start: datetime) -> bool:
    c = alert_crossings.c
    return (
        conn.execute(select(c.alert_id).where(c.alert_id == alert_id, c.period_start == period_start)).first()
        is not None
    )


def _fire(
    engine: Engine,
    alert: Alert,
    value: Decimal,
    period: Period | None,
    now: datetime,
    categories: dict[str, int] | None = None,
) -> int | None:
    """Record the crossing and emit its event in one transaction; None when it was already recorded."""
    start = period.start if period is not None else LOW
    data: dict[str, Any] = {
        "alert_id": alert.id,
        "threshold": format(alert.threshold, "f"),
        "value": format(value, "f"),
        "period_start": None if period is None else period.start.isoformat(),
        "period_end": None if period is None else period.end.isoformat(),
    }
    if alert.kind == USAGE:
        data["meter"] = alert.meter
    elif alert.kind == BALANCE:
        data["unit"] = alert.unit
    elif alert.kind == LEAKAGE:
        data["categories"] = dict(categories or {})
    else:
        data["currency"] = get_customer(engine, alert.tenant_id, alert.customer).currency
    with begin_write(engine) as conn:
        ins: Any = pg_insert(alert_crossings) if conn.dialect.name == "postgresql" else sqlite_insert(alert_crossings)
        won = conn.execute(
            ins.values(alert_id=alert.id, period_start=start, value=format(value, "f"), sequence=0, crossed_at=now)
            .on_conflict_do_nothing(index_elements=[alert_crossings.c.alert_id, alert_crossings.c.period_start])
            .returning(alert_crossings.c.alert_id)
        ).first()
        if won is None:
            return None  # another evaluator recorded this crossing first
        (sequence,) = emit(conn, alert.tenant_id, [NewEvent(EVENT_TYPE[alert.kind], alert.customer, data)], at=now)
        # The one statement after emit: a keyed update of the row inserted above, so the crossing
        # names its event. It takes no other lock, so the head row is held no longer than a moment.
        c = alert_crossings.c
        conn.execute(
            update(alert_crossings).where(c.alert_id == alert.id, c.period_start == start).values(sequence=sequence)
        )
    return sequence


def _rearm(engine: Engine, alert: Alert) -> None:
    with begin_write(engine) as conn:
        c = alert_crossings.c
        conn.execute(delete(alert_crossings).where(c.alert_id == alert.id, c.period_start == LOW))


def _all_alerts(engine: Engine, tenant_id: int | None) -> list[Alert]:
    query = select(alerts, customers.c.external_id).outerjoin(customers, customers.c.id == alerts.c.customer_id)
    if tenant_id is not None:
        query = query.where(alerts.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(alerts.c.tenant_id, alerts.c.customer_id, alerts.c.id)).all()
    return [_alert(r) for r in rows]


def evaluate_alerts(engine: Engine, now: datetime, tenant_id: int | None = None) -> list[Crossing]:
    """One evaluator pass over every alert (of one tenant, if given); returns what fired.

    A period's usage or spend is only computed for alerts not yet crossed in it, and the spend
    preview once per customer per pass.
    """
    now = now.astimezone(UTC)
    fired: list[Crossing] = []
    custs: dict[tuple[int, str], Customer] = {}
    periods: dict[tuple[int, str], Period] = {}
    spends: dict[tuple[int, str], Decimal] = {}
    for alert in _all_alerts(engine, tenant_id):
        key = (alert.tenant_id, alert.customer)
        try:
            if alert.kind == LEAKAGE:
                crossing = _leakage(engine, alert, now)
                if crossing is not None:
                    fired.append(crossing)
                continue
            if alert.kind == BALANCE:
                value = _balance(engine, alert)
                with engine.connect() as conn:
                    low = _crossed(conn, alert.id, LOW)
                if value >= alert.threshold:
                    if low:
                        _rearm(engine, alert)
                    continue
                if low:
                    continue
                period = None
            else:
                if key not in custs:
                    custs[key] = get_customer(engine, alert.tenant_id, alert.customer)
                    periods[key] = current_period(engine, alert.tenant_id, custs[key], now)
                period = periods[key]
                with engine.connect() as conn:
                    if _crossed(conn, alert.id, period.start):
                        continue
                if alert.kind == USAGE:
                    value = _usage(engine, alert, period)
                else:
                    if key not in spends:
                        spends[key] = _spend(engine, alert, custs[key], now)
                    value = spends[key]
                if value < alert.threshold:
                    continue
            sequence = _fire(engine, alert, value, period, now)
        except Exception:  # one alert that cannot be evaluated (a plan that fails to rate, ...) must not stop the rest
            log.exception("alert %s of tenant %s could not be evaluated; skipped this pass", alert.id, alert.tenant_id)
            continue
        if sequence is not None:
            fired.append(Crossing(alert, value, period, sequence))
    return fired


def leakage_period(now: datetime) -> Period:
    """The calendar month (UTC) a leakage alert counts in."""
    return BillingCycle(date(2000, 1, 1), Interval.MONTHLY, zone("UTC")).period_at(now)


def _leakage(engine: Engine, alert: Alert, now: datetime) -> Crossing | None:
    """Fire once per month when the month's unbilled events so far reach the threshold."""
    period = leakage_period(now)
    with engine.connect() as conn:
        if _crossed(conn, alert.id, period.start):
            return None
    key = (str(engine.url), alert.id, alert.created_at)
    last = _leakage_checked.get(key)
    if last is not None and last <= now < last + LEAKAGE_EVERY:
        return None
    end = floor_quarter_hour(now)
    if end <= period.start:
        return None
    _leakage_checked[key] = now
    report = leakage_report(engine, alert.tenant_id, period.start, end)
    value = Decimal(report.events)
    if value < alert.threshold:
        return None
    categories = {c.category: c.events for c in report.categories}
    sequence = _fire(engine, alert, value, period, now, categories)
    return None if sequence is None else Crossing(alert, value, period, sequence)


__all__ = [
    "BALANCE",
    "KINDS",
    "LEAKAGE",
    "LEAKAGE_EVERY",
    "LOW",
    "SPEND",
    "USAGE",
    "Alert",
    "Crossing",
    "create_alert",
    "current_period",
    "delete_alert",
    "evaluate_alerts",
    "get_alert",
    "leakage_period",
    "list_alerts",
    "parse_threshold",
]
