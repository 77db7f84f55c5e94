"""The accrual run: what each earning rule owes, per subscription and billing period, credited exactly once.

Why it works this way (docs/ledger.md, "Points earned from usage"):

- **Owed, not counted.** A run never adds up events itself. For every (subscription, plan version, rule,
  billing period) it asks metering's query API (`metering.usage.usage`, answered from rollups) for the
  meter's usage over the subscription's active time in that period up to `as_of`, and computes what that
  earns: `floor(quantity × points_per_unit)` in steps of the points unit, capped at `cap_per_period`.
  Rollups deduplicate events by id and do not care about their order, so a resent event or a late one
  changes nothing or changes the owed amount exactly as it should.
- **Credit the difference.** `points_accruals` holds, per key, what has been credited so far. Inside one
  write transaction the run locks that row, credits `owed - earned` (if positive) with a ledger transfer
  `~earn:s<sub>:v<version>:<rule>:<period start>#<n>` (the ledger's reserved prefix: no client can write
  one) from the tenant's `points_issuance` account to the customer's points wallet, and moves `earned`.
  Both commit together or not at all, so any number of runs, in any order, concurrent or interrupted,
  credit each period exactly what its usage earns: the sum of a key's transfers is always `earned`.
- **Never take back.** Earned points may already be spent: a period whose usage falls afterwards (a
  negative correction) is not debited; what was credited stays, and the period earns again only once its
  usage owes more than that.
- Only active time earns, as only active time bills (trial and paused time earn nothing); a plan change in
  a period starts a new key with the new version's rules and cap, as invoicing starts a new item.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from invoicing.catalog import (
    BillingCycle,
    EarningRule,
    Period,
    PlanVersion,
    VersionStatus,
    floor_quarter_hour,
    get_plan_version_by_id,
    stored_utc,
    utc,
)
from invoicing.events import NewEvent, emit
from invoicing.ledger import raise_for
from invoicing.ledger.account import get_or_create
from invoicing.ledger.transfer import SYSTEM_PREFIX, Transfer, apply_batch, write_transaction
from invoicing.ledger.unit import resolve_unit, to_us
from invoicing.subscriptions import State, window_segments
from invoicing.tables import plan_versions, plans, points_accruals
from metering.deadline import checkpoint
from metering.errors import NotFound, TallyError
from metering.usage import usage
from rating.fixedpoint import INT64_MAX, from_scaled
from rating.unit import Unit

#: The ledger code of an earning transfer.
CODE = "earn"
#: Where a run looks for subscription history when no `since` narrows it (the API's earliest instant).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_REFERENCE_MAX = 256


@dataclass(frozen=True, slots=True)
class Earned:
    """One credit a run made: the key it was for, the usage behind it, and the amounts in steps of `unit`."""

    customer: str
    subscription_id: int
    plan: str  # the plan's code
    plan_version: int  # its version number
    plan_version_id: int
    rule: str
    meter: str
    unit: str
    period_start: datetime
    period_end: datetime
    through: datetime  # usage counted up to here (exclusive)
    quantity: Decimal
    points: int  # credited by this run
    earned: int  # credited for the period in all, after this run
    capped: bool
    transfer_id: str


@dataclass(frozen=True, slots=True)
class AccrualRun:
    """What one run did: `checked` keys (subscription, version, rule, period) looked at, the credits it made,
    and the rules it could not apply (an undefined points unit, a meter that is gone), each said once."""

    tenant_id: int
    as_of: datetime
    through: datetime
    checked: int
    credits: tuple[Earned, ...]
    problems: tuple[str, ...]

    def totals(self) -> dict[str, int]:
        """Steps credited per points unit."""
        out: dict[str, int] = {}
        for c in self.credits:
            out[c.unit] = out.get(c.unit, 0) + c.points
        return out


def points_owed(quantity: Decimal, rule: EarningRule, scale: int) -> tuple[int, bool]:
    """(steps of the points unit that `quantity` of the meter earns under `rule`, whether the cap applied).

    Exact: quantity × points_per_unit as a fraction, rounded down to the unit's step (a fraction of a step
    is credited once more usage completes it, never rounded up), then at most the cap (itself rounded down
    to the unit's step). No usage, or negative usage, earns nothing."""
    if quantity <= 0:
        return 0, False
    steps = math.floor(Fraction(quantity) * Fraction(rule.points_per_unit) * 10**scale)
    cap = INT64_MAX if rule.cap_per_period is None else math.floor(Fraction(rule.cap_per_period) * 10**scale)
    cap = min(cap, INT64_MAX)
    return (cap, True) if steps >= cap else (steps, False)


def _text(steps: int, unit: Unit) -> str:
    """Steps of a unit as a plain decimal ("12.5")."""
    return format(from_scaled(steps, unit.scale), "f")


def transfer_id(subscription_id: int, plan_version_id: int, rule: str, period_start: datetime, n: int) -> str:
    """The id of a key's n-th credit (1-based): readable lineage, and at most 128 bytes for any rule code."""
    return f"{SYSTEM_PREFIX}earn:s{subscription_id}:v{plan_version_id}:{rule}:{utc(period_start):%Y%m%dT%H%MZ}#{n}"


@dataclass(frozen=True, slots=True)
class _Key:
    subscription_id: int
    plan_version_id: int
    rule: str
    period_start: datetime


@dataclass(slots=True)
class _Window:
    """One subscription's active time in one billing period of one plan version, up to the run's `through`."""

    customer: str
    subscription_id: int
    plan: PlanVersion
    period: Period
    spans: list[tuple[datetime, datetime]]


def _windows(engine: Engine, tenant_id: int, through: datetime, since: datetime | None) -> list[_Window]:
    """Active time per (subscription, version with earning rules, period) up to `through`, for periods that
    end after `since` (all of them without it)."""
    lives = window_segments(engine, tenant_id, EARLIEST, through)
    versions: dict[int, PlanVersion] = {}
    out: dict[tuple[int, int, int], _Window] = {}
    for life in lives:
        sub = life.subscription
        for seg in life.segments:
            if seg.state is not State.ACTIVE:
                continue
            if seg.plan_version_id not in versions:
                versions[seg.plan_version_id] = get_plan_version_by_id(engine, tenant_id, seg.plan_version_id)
            plan = versions[seg.plan_version_id]
            if not plan.earning:
                continue
            end = through if seg.end is None else min(seg.end, through)
            cycle = BillingCycle.from_instant(sub.billing_anchor, plan.interval, sub.timezone)
            period = cycle.period_at(seg.start if since is None else max(seg.start, utc(since)))
            while period.start < end:
                checkpoint()
                lo, hi = max(seg.start, period.start), min(end, period.end)
                if lo < hi and (since is None or period.end > since):
                    key = (sub.id, plan.id, period.index)
                    window = out.get(key)
                    if window is None:
                        window = out[key] = _Window(sub.customer_external_id, sub.id, plan, period, [])
                    window.spans.append((lo, hi))
                period = cycle.next(period)
    return list(out.values())


def _quantity(
    engine: Engine, tenant_id: int, customer: str, meter: str, spans: Iterable[tuple[datetime, datetime]]
) -> Decimal:
    """The meter's usage over the spans, from metering's query API (rollups), summed span by span."""
    total = Decimal(0)
    for lo, hi in spans:
        for row in usage(engine, tenant_id, customer, meter, lo, hi):
            total += row.quantity
    return total


def _known(engine: Engine, tenant_id: int, since: datetime | None) -> dict[_Key, int]:
    """What is credited so far per key, read without locks: only a key that seems to owe more is locked."""
    a = points_accruals.c
    query = select(a.subscription_id, a.plan_version_id, a.rule, a.period_start, a.earned).where(
        a.tenant_id == tenant_id
    )
    if since is not None:
        query = query.where(a.period_end > utc(since))
    with engine.connect() as conn:
        return {
            _Key(int(r.subscription_id), int(r.plan_version_id), r.rule, stored_utc(r.period_start)): int(r.earned)
            for r in conn.execute(query)
        }


def _lock(conn: Connection, tenant_id: int, key: _Key, values: dict[str, Any]) -> Any:
    """The key's accrual row, created empty if missing, locked until the transaction ends."""
    a = points_accruals.c
    ident = {
        "tenant_id": tenant_id,
        "subscription_id": key.subscription_id,
        "plan_version_id": key.plan_version_id,
        "rule": key.rule,
        "period_start": key.period_start,
    }
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(points_accruals).values(**ident, **values, earned=0, transfers=0).on_conflict_do_nothing())
    where = [getattr(a, k) == v for k, v in ident.items()]
    return conn.execute(select(a.earned, a.transfers).where(*where).with_for_update()).one()


def _reference(w: _Window, rule: EarningRule, quantity: Decimal, through: datetime) -> str:
    text = (
        f"{format(quantity, 'f')} {rule.meter} x {format(rule.points_per_unit, 'f')} "
        f"[{w.period.start:%Y-%m-%dT%H:%MZ}, {through:%Y-%m-%dT%H:%MZ}) {w.plan.label}"
    )
    return text[:_REFERENCE_MAX]


def _credit(
    engine: Engine, tenant_id: int, w: _Window, rule: EarningRule, unit: Unit, quantity: Decimal, owed: int,
    capped: bool, through: datetime, now: datetime,
) -> Earned | None:  # fmt: skip
    """Credit what the key owes beyond what it has, with the row moved in the same transaction."""
    key = _Key(w.subscription_id, w.plan.id, rule.code, w.period.start)
    through = min(through, w.period.end)

    def run(conn: Connection) -> Earned | None:
        values = {
            "period_end": w.period.end, "customer": w.customer, "meter": rule.meter, "unit": rule.unit,
            "quantity": "0", "through": w.period.start, "updated_at": now,
        }  # fmt: skip
        row = _lock(conn, tenant_id, key, values)
        earned, n = int(row.earned), int(row.transfers) + 1
        if owed <= earned:
            return None  # a concurrent run credited it first
        tid = transfer_id(key.subscription_id, key.plan_version_id, key.rule, key.period_start, n)
        source = get_or_create(conn, tenant_id, "points_issuance", rule.unit)
        wallet = get_or_create(conn, tenant_id, "points", rule.unit, w.customer)
        reference = _reference(w, rule, quantity, through)
        result = apply_batch(
            conn, tenant_id, [Transfer(tid, source, wallet, owed - earned, CODE, reference)], to_us(now),
            allow_system_ids=True,
        )[0]  # fmt: skip
        raise_for(result)
        a = points_accruals.c
        conn.execute(
            update(points_accruals)
            .where(
                a.tenant_id == tenant_id, a.subscription_id == key.subscription_id,
                a.plan_version_id == key.plan_version_id, a.rule == key.rule, a.period_start == key.period_start,
            )
            .values(earned=owed, transfers=n, quantity=format(quantity, "f"), through=through, updated_at=now)
        )  # fmt: skip
        credited = Earned(
            w.customer, w.subscription_id, w.plan.code, w.plan.version, w.plan.id, rule.code, rule.meter, rule.unit,
            w.period.start, w.period.end, through, quantity, owed - earned, owed, capped, tid,
        )  # fmt: skip
        emit(conn, tenant_id, [NewEvent("points.earned", w.customer, {
            "rule": rule.code, "plan": w.plan.code, "plan_version": w.plan.version,
            "subscription_id": w.subscription_id, "meter": rule.meter, "unit": rule.unit,
            "points": _text(owed - earned, unit), "earned": _text(owed, unit),
            "quantity": format(quantity, "f"), "period_start": w.period.start.isoformat(),
            "period_end": w.period.end.isoformat(), "through": through.isoformat(), "transfer_id": tid,
        })], now)  # fmt: skip
        return credited

    return write_transaction(engine, run)


def accrue_points(
    engine: Engine, tenant_id: int, as_of: datetime, *, since: datetime | None = None, now: datetime | None = None
) -> AccrualRun:
    """Credit every earning rule of the tenant's active subscriptions up to `as_of` (see the module docstring).

    Usage is counted up to `as_of` floored to the quarter hour (the rollup grid). With `since`, only billing
    periods that end after it are looked at (the server's worker passes the oldest time an event may still
    arrive for); without it, every period since each subscription started. Transfers are dated `now`
    (default: the clock). Idempotent: running it again credits nothing new unless usage grew."""
    through = floor_quarter_hour(as_of)
    at = utc(now) if now is not None else datetime.now(UTC)
    windows = _windows(engine, tenant_id, through, since)
    known = _known(engine, tenant_id, since) if windows else {}
    units: dict[str, Unit | None] = {}
    problems: dict[tuple[int, str], str] = {}
    credits: list[Earned] = []
    checked = 0
    with engine.connect() as conn:
        for code in sorted({r.unit for w in windows for r in w.plan.earning}):
            try:
                units[code] = resolve_unit(conn, tenant_id, code)
            except NotFound:
                units[code] = None
    for w in windows:
        for rule in w.plan.earning:
            checkpoint()
            where = (w.plan.id, rule.code)
            if where in problems:
                continue
            unit = units[rule.unit]
            if unit is None or unit.kind != "points":
                problems[where] = (
                    f"{w.plan.label} earning rule {rule.code!r}: points unit {rule.unit!r} is not defined; "
                    f"define it (`tally points unit define TENANT {rule.unit} --scale N`)"
                )
                continue
            checked += 1
            try:
                quantity = _quantity(engine, tenant_id, w.customer, rule.meter, w.spans)
            except NotFound:
                problems[where] = f"{w.plan.label} earning rule {rule.code!r}: no meter {rule.meter!r}"
                continue
            owed, capped = points_owed(quantity, rule, unit.scale)
            key = _Key(w.subscription_id, w.plan.id, rule.code, w.period.start)
            if owed <= known.get(key, 0):
                continue
            try:
                done = _credit(engine, tenant_id, w, rule, unit, quantity, owed, capped, through, at)
            except TallyError as exc:  # e.g. a balance that would leave int64: say it, go on with the others
                problems[where] = f"{w.plan.label} earning rule {rule.code!r} for {w.customer}: {exc}"
                continue
            if done is not None:
                credits.append(done)
    return AccrualRun(tenant_id, as_of, through, checked, tuple(credits), tuple(problems.values()))


def accrue_all(engine: Engine, as_of: datetime, *, since: datetime | None = None) -> list[AccrualRun]:
    """`accrue_points` for every tenant with a published plan version that has earning rules (the worker)."""
    pv, p = plan_versions.c, plans.c
    with engine.connect() as conn:
        tenants = conn.execute(
            select(p.tenant_id)
            .join(plan_versions, pv.plan_id == p.id)
            .where(pv.status == VersionStatus.PUBLISHED.value, pv.earning != "[]")
            .distinct()
            .order_by(p.tenant_id)
        ).scalars()
        ids = [int(t) for t in tenants]
    return [accrue_points(engine, t, as_of, since=since) for t in ids]


__all__ = ["CODE", "AccrualRun", "Earned", "accrue_all", "accrue_points", "points_owed", "transfer_id"]
