"""Revenue leakage: counted usage that no invoice will ever bill.

Ingest accepts an event for any customer id on any meter (usage may arrive before the customer is
created or subscribed, and is billed once it is); this report finds what, in [start, end), is still
outside every bill. Each counted event falls in at most one category, checked in this order:

* `unknown_customer`: its customer id is no customer of the tenant;
* `unpriced_meter`: no published plan version has a usage charge on its meter;
* `no_subscription`: the customer had no subscription at the event's time (before it started, after
  it was cancelled, or never);
* `not_in_plan`: the customer was subscribed, but the plan version in force does not price the meter.

Usage in a subscription's trial or pause is free by the plan's terms, not leakage, and is not reported;
nor are events outside a meter's filter (stored, never counted). Everything is read from the rollups
(`metering.usage.event_totals` and `range_totals`), never from raw events; subscription boundaries lie on
the rollups' 15-minute grid, so "at the event's time" is exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, select

from invoicing.catalog import PlanVersion, VersionStatus, get_plan_version_by_id, list_plan_versions, list_plans, utc
from invoicing.insight._simulation import check_window
from invoicing.subscriptions import Segment, window_segments
from invoicing.tables import customers
from metering.deadline import checkpoint
from metering.meter import Aggregation, list_meters
from metering.usage import EventTotal, event_totals, range_totals

UNKNOWN_CUSTOMER, UNPRICED_METER, NO_SUBSCRIPTION, NOT_IN_PLAN = (
    "unknown_customer",
    "unpriced_meter",
    "no_subscription",
    "not_in_plan",
)
CATEGORIES = (UNKNOWN_CUSTOMER, UNPRICED_METER, NO_SUBSCRIPTION, NOT_IN_PLAN)
#: Customer ids per lookup of which ones exist (an IN list well under every database's parameter limit).
_LOOKUP_CHUNK = 900


@dataclass(frozen=True, slots=True)
class LeakRow:
    """One customer's unbilled events on one meter, in one category."""

    category: str
    customer: str
    meter: str
    events: int
    quantity: Decimal | None  # sum meters: the summed values; count meters: the events; otherwise None


@dataclass(frozen=True, slots=True)
class CategoryTotal:
    category: str
    events: int
    customers: int
    meters: tuple[str, ...]


@dataclass(frozen=True)
class LeakageReport:
    start: datetime
    end: datetime
    rows: tuple[LeakRow, ...]  # by category (CATEGORIES order), then most events first, customer, meter
    categories: tuple[CategoryTotal, ...]  # every category, in CATEGORIES order, empty ones included
    counted_events: int  # every counted event of the window, billed or not

    @property
    def events(self) -> int:
        """Unbilled events, all categories."""
        return sum(c.events for c in self.categories)


def _existing(engine: Engine, tenant_id: int, ids: Iterable[str]) -> set[str]:
    wanted = sorted(set(ids))
    found: set[str] = set()
    c = customers.c
    with engine.connect() as conn:
        for k in range(0, len(wanted), _LOOKUP_CHUNK):
            part = wanted[k : k + _LOOKUP_CHUNK]
            found.update(
                conn.execute(select(c.external_id).where(c.tenant_id == tenant_id, c.external_id.in_(part))).scalars()
            )
    return found


def _priced_meters(engine: Engine, tenant_id: int) -> set[str]:
    """Meters some published plan version has a usage charge on."""
    out: set[str] = set()
    for summary in list_plans(engine, tenant_id):
        if summary.published_version is None:
            continue
        for v in list_plan_versions(engine, tenant_id, summary.code):
            if v.status is VersionStatus.PUBLISHED:
                out.update(c.meter for c in v.charges if c.kind == "usage" and c.meter)
    return out


def _gaps(
    segments: list[Segment], meter_of: dict[int, frozenset[str]], meter: str, a: datetime, b: datetime
) -> list[tuple[str, datetime, datetime]]:
    """[a, b) cut where no segment prices `meter`: (category, start, end) pieces, adjacent ones merged."""
    cuts = sorted({a, b, *(s.start for s in segments), *(s.end for s in segments if s.end is not None)})
    pieces: list[tuple[str, datetime, datetime]] = []
    for p, q in itertools.pairwise(cuts):
        if not (a <= p and q <= b):
            continue
        over = [s for s in segments if s.start <= p and (s.end is None or s.end >= q)]
        if any(meter in meter_of[s.plan_version_id] for s in over):
            continue
        category = NOT_IN_PLAN if over else NO_SUBSCRIPTION
        if pieces and pieces[-1][0] == category and pieces[-1][2] == p:
            pieces[-1] = (category, pieces[-1][1], q)
        else:
            pieces.append((category, p, q))
    return pieces


def leakage_report(engine: Engine, tenant_id: int, start: datetime, end: datetime) -> LeakageReport:
    """The counted events of [start, end) that no invoice bills, by category (module docstring)."""
    check_window(start, end)
    a, b = utc(start), utc(end)
    totals = event_totals(engine, tenant_id, a, b)
    meters = {m.code: m for m in list_meters(engine, tenant_id)}
    known = _existing(engine, tenant_id, (t.customer for t in totals))
    priced = _priced_meters(engine, tenant_id)
    lives: dict[str, list[Segment]] = {}
    for life in window_segments(engine, tenant_id, a, b):
        lives.setdefault(life.subscription.customer_external_id, []).extend(life.segments)
    versions: dict[int, PlanVersion] = {}
    meter_of: dict[int, frozenset[str]] = {}
    for segs in lives.values():
        for s in segs:
            if s.plan_version_id not in meter_of:
                v = versions[s.plan_version_id] = get_plan_version_by_id(engine, tenant_id, s.plan_version_id)
                meter_of[v.id] = frozenset(c.meter for c in v.charges if c.kind == "usage" and c.meter)
    found: dict[tuple[str, str, str], tuple[int, Decimal]] = {}
    partial: list[tuple[str, EventTotal, datetime, datetime]] = []  # (category, total, piece start, end)

    def add(category: str, t: EventTotal) -> None:
        if t.events:
            events, value = found.get((category, t.customer, t.meter), (0, Decimal(0)))
            found[(category, t.customer, t.meter)] = (events + t.events, value + t.value_sum)

    for i, t in enumerate(totals):
        if not i & 1023:
            checkpoint()
        if t.customer not in known:
            add(UNKNOWN_CUSTOMER, t)
        elif t.meter not in priced:
            add(UNPRICED_METER, t)
        else:
            pieces = _gaps(lives.get(t.customer, []), meter_of, t.meter, a, b)
            if len(pieces) == 1 and pieces[0][1:] == (a, b):
                add(pieces[0][0], t)  # the whole window: the totals already say it
            else:
                partial += [(category, t, p, q) for category, p, q in pieces]
    if partial:
        ranged = range_totals(engine, tenant_id, [(t.customer, t.meter, p, q) for _, t, p, q in partial])
        for (category, _, _, _), got in zip(partial, ranged, strict=True):
            add(category, got)
    rows = []
    for (category, customer, meter), (events, value) in found.items():
        m = meters.get(meter)
        agg = m.aggregation if m is not None else None
        quantity = value if agg is Aggregation.SUM else Decimal(events) if agg is Aggregation.COUNT else None
        rows.append(LeakRow(category, customer, meter, events, quantity))
    order = {c: i for i, c in enumerate(CATEGORIES)}
    rows.sort(key=lambda r: (order[r.category], -r.events, r.customer, r.meter))
    cats = []
    for category in CATEGORIES:
        mine = [r for r in rows if r.category == category]
        cats.append(
            CategoryTotal(
                category,
                sum(r.events for r in mine),
                len({r.customer for r in mine}),
                tuple(sorted({r.meter for r in mine})),
            )
        )
    return LeakageReport(a, b, tuple(rows), tuple(cats), sum(t.events for t in totals))


__all__ = [
    "CATEGORIES",
    "NOT_IN_PLAN",
    "NO_SUBSCRIPTION",
    "UNKNOWN_CUSTOMER",
    "UNPRICED_METER",
    "CategoryTotal",
    "LeakRow",
    "LeakageReport",
    "leakage_report",
]
