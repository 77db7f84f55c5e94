"""What is due: the bridge from subscriptions to the invoice run.

`due_periods(engine, tenant_id, as_of)` turns every subscription's history into billable spans and
lays them on its plan's period grid:

* Only *active* time is billable. Trial and paused time bill nothing (no fee, no usage); cancelled
  time does not exist.
* An **in-advance** item is one billable span inside one period: it is due when the span starts (the
  period start, or mid-period on a first start, trial end, resume or plan change). If a later
  change cuts the span short (pause, cancel, upgrade), the same item (same `key`) comes back with a
  shorter span: the invoice run credits the difference between what it billed and the new fraction.
* An **in-arrears** item gathers every billable span of one plan version inside one period: it is
  due when the period ends, or when the subscription ends inside it (a cancellation bills at once).
* Items exist only for plan versions that have charges of that timing.

Every span boundary is on the 15-minute UTC grid, so usage for a span is one exact rollup query.
Nothing is written: scheduled changes (trial end, change or cancellation at period end) up to
`as_of` are applied virtually, so the answer never depends on a background job having run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, select

from invoicing.catalog import (
    BillingCycle,
    Period,
    PlanVersion,
    ProrationBasis,
    Timing,
    get_plan_version_by_id,
    proration,
    stored_utc,
    utc,
    zone,
)
from invoicing.subscriptions._subscription import (
    HistoryEntry,
    State,
    Subscription,
    histories,
    scheduled_transitions,
    select_subscriptions,
    subscription_from_row,
)
from invoicing.tables import subscription_history, subscriptions
from metering.deadline import checkpoint


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open [start, end) in UTC on the 15-minute grid."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a subscription's life in one state on one plan version; `end` None = still running."""

    start: datetime
    end: datetime | None
    state: State
    plan_version_id: int


@lru_cache(maxsize=1 << 16)
def _isoformat(instant: datetime) -> str:
    return instant.isoformat()


@dataclass(frozen=True, slots=True)
class DueItem:
    subscription_id: int
    customer_id: int
    customer_external_id: str
    timezone: str
    plan_version_id: int
    timing: Timing
    period: Period
    spans: tuple[Span, ...]
    due_at: datetime
    _key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: the run reads it several times per item.
        base = f"{self.subscription_id}:{self.plan_version_id}:{self.timing}:{_isoformat(self.period.start)}"
        key = f"{base}:{_isoformat(self.spans[0].start)}" if self.timing == "in_advance" else base
        object.__setattr__(self, "_key", key)

    @property
    def key(self) -> str:
        """Stable identity for idempotent invoicing: the same charge always has the same key, even
        after a later change shortened its span."""
        return self._key

    def fraction(self, by: ProrationBasis) -> Fraction:
        """Share of the period these spans cover, in local days or seconds (sums to 1 over a tiled period)."""
        tz = zone(self.timezone)
        if by == "none":
            return Fraction(1)
        return sum((proration(self.period, s.start, s.end, by, tz) for s in self.spans), Fraction(0))


def segments(sub: Subscription, history: list[HistoryEntry], as_of: datetime) -> list[Segment]:
    """The subscription's life as known at `as_of`: recorded changes up to then, plus scheduled ones."""
    points: list[tuple[datetime, State, int]] = [
        (h.effective_at, h.state, h.plan_version_id) for h in history if h.effective_at <= as_of
    ]
    # Scheduled changes always lie after the last recorded one, so they apply only if all history does.
    if len(points) == len(history):
        points += [(t.at, t.state, t.plan_version_id) for t in scheduled_transitions(sub, as_of)]
    # Keep the last point of each instant, then drop points that change nothing (a scheduling note).
    kept: list[tuple[datetime, State, int]] = []
    for i, point in enumerate(points):
        if i + 1 < len(points) and points[i + 1][0] <= point[0]:
            continue
        if kept and kept[-1][1:] == point[1:]:
            continue
        kept.append(point)
    out: list[Segment] = []
    for i, (at, state, version) in enumerate(kept):
        if state is State.CANCELLED:
            break
        out.append(Segment(at, kept[i + 1][0] if i + 1 < len(kept) else None, state, version))
    return out


class _Grid:
    """Period arithmetic memoised across subscriptions (one `due_periods` call): subscriptions on the
    same anchor date, interval and zone share every period, so each boundary is computed once.
    Results are the very `BillingCycle` answers (errors are not cached: they are raised again)."""

    def __init__(self) -> None:
        self._cycles: dict[tuple[datetime, str, str], BillingCycle] = {}
        self._periods: dict[tuple[BillingCycle, int], Period] = {}
        self._at: dict[tuple[BillingCycle, datetime], Period] = {}
        self._timings: dict[int, tuple[bool, bool]] = {}

    def cycle(self, anchor: datetime, interval: str, tz: str) -> BillingCycle:
        key = (anchor, interval, tz)
        found = self._cycles.get(key)
        if found is None:
            found = self._cycles[key] = BillingCycle.from_instant(anchor, interval, tz)
        return found

    def period_at(self, cycle: BillingCycle, instant: datetime) -> Period:
        key = (cycle, instant)
        found = self._at.get(key)
        if found is None:
            found = self._at[key] = cycle.period_at(instant)
        return found

    def next(self, cycle: BillingCycle, period: Period) -> Period:
        key = (cycle, period.index + 1)
        found = self._periods.get(key)
        if found is None:
            found = self._periods[key] = cycle.next(period)
        return found

    def timings(self, plan: PlanVersion) -> tuple[bool, bool]:
        found = self._timings.get(plan.id)
        if found is None:
            found = self._timings[plan.id] = (plan.has_timing("in_advance"), plan.has_timing("in_arrears"))
        return found


def due_items(
    sub: Subscription,
    history: list[HistoryEntry],
    plans: dict[int, PlanVersion],
    as_of: datetime,
    grid: _Grid | None = None,
) -> list[DueItem]:
    """The pure core of `due_periods` for one subscription."""
    grid = grid or _Grid()
    segs = segments(sub, history, as_of)
    ended_at = segs[-1].end if segs else None  # the last segment only has an end if a cancellation follows it
    arrears: dict[tuple[int, int], tuple[Period, list[Span]]] = {}
    items: list[DueItem] = []

    def item(version: int, timing: Timing, period: Period, spans: list[Span], due: datetime) -> DueItem:
        return DueItem(
            sub.id, sub.customer_id, sub.customer_external_id, sub.timezone, version, timing, period, tuple(spans), due
        )

    for seg in segs:
        if seg.state is not State.ACTIVE:
            continue
        plan = plans[seg.plan_version_id]
        cycle = grid.cycle(sub.billing_anchor, plan.interval, sub.timezone)
        advance, in_arrears = grid.timings(plan)
        period = grid.period_at(cycle, seg.start)
        while period.start <= as_of and (seg.end is None or period.start < seg.end):
            span = Span(max(seg.start, period.start), period.end if seg.end is None else min(seg.end, period.end))
            if advance and span.start <= as_of:
                items.append(item(plan.id, "in_advance", period, [span], span.start))
            if in_arrears:
                arrears.setdefault((plan.id, period.index), (period, []))[1].append(span)
            period = grid.next(cycle, period)
            checkpoint()  # a subscription backdated by centuries has as many periods: stop with the request
    for (version, _), (period, spans) in arrears.items():
        due = period.end if ended_at is None or not period.start < ended_at < period.end else ended_at
        if due <= as_of:
            items.append(item(version, "in_arrears", period, spans, due))
    return items


def due_periods(
    engine: Engine,
    tenant_id: int,
    as_of: datetime,
    *,
    since: datetime | None = None,
    subscription_id: int | None = None,
) -> list[DueItem]:
    """Everything due for the tenant as of `as_of`, ordered by (due_at, subscription, timing).

    With `since`, only items whose period ends after `since`: every item that became due, or whose
    span was cut, after `since` is among them, so an invoice run can pass its previous `as_of`.
    """
    at = utc(as_of)
    out: list[DueItem] = []
    grid = _Grid()
    plans: dict[int, PlanVersion] = {}
    memo = _Memo()
    after = 0  # keyset pagination by subscription id: only one page of subscriptions and histories is held
    with engine.connect() as conn:
        while True:
            query = select_subscriptions(tenant_id).where(subscriptions.c.started_at <= at, subscriptions.c.id > after)
            if subscription_id is not None:
                query = query.where(subscriptions.c.id == subscription_id)
            rows = conn.execute(query.order_by(subscriptions.c.id).limit(PAGE)).all()
            if not rows:
                break
            subs = [memo.subscription(r) for r in rows]
            del rows
            history = _histories(conn, tenant_id, at, subscription_id, [s.id for s in subs], memo)
            version_ids = {h.plan_version_id for hs in history.values() for h in hs}
            version_ids |= {s.pending_plan_version_id for s in subs if s.pending_plan_version_id is not None}
            for v in sorted(version_ids - plans.keys()):
                plans[v] = get_plan_version_by_id(engine, tenant_id, v)
            for sub in subs:
                out += due_items(sub, history[sub.id], plans, at, grid)
            after = subs[-1].id
            if len(subs) < PAGE:
                break
            del subs, history
    if since is not None:
        floor = utc(since)
        out = [i for i in out if i.period.end > floor]
    out.sort(key=lambda i: (i.due_at, i.subscription_id, i.timing, i.period.start, i.spans[0].start))
    return out


#: Up to this many subscriptions, histories are read by id (`subscription.histories`); above, by id range.
IN_LIST_MAX = 900
#: Subscriptions (with their histories) read per page by `due_periods`.
PAGE = 20_000


class _Memo:
    """Rows to `Subscription` / `HistoryEntry`, as `subscription_from_row` and `histories` build them,
    with instants and states memoised (a run reads the same few instants millions of times)."""

    def __init__(self) -> None:
        self._instants: dict[datetime, datetime] = {}
        self._states = {s.value: s for s in State}

    def instant(self, value: datetime) -> datetime:
        if value.tzinfo is not None:
            return stored_utc(value)
        found = self._instants.get(value)  # naive (SQLite): equal values are the same instant
        if found is None:
            found = self._instants[value] = stored_utc(value)
        return found

    def opt(self, value: datetime | None) -> datetime | None:
        return None if value is None else self.instant(value)

    def subscription(self, r: Any) -> Subscription:
        if r.billing_anchor.tzinfo is not None:
            return subscription_from_row(r)
        i, o = self.instant, self.opt
        return Subscription(
            id=r.id, tenant_id=r.tenant_id, customer_id=r.customer_id, customer_external_id=r.external_id,
            timezone=r.timezone, plan_version_id=r.plan_version_id, state=self._states[r.state],
            billing_anchor=i(r.billing_anchor), started_at=i(r.started_at), trial_ends_at=o(r.trial_ends_at),
            ends_at=o(r.ends_at), pending_plan_version_id=r.pending_plan_version_id,
            pending_change_at=o(r.pending_change_at), created_at=i(r.created_at),
        )  # fmt: skip

    def entry(self, r: Any) -> HistoryEntry:
        i, st = self.instant, self._states
        return HistoryEntry(
            id=r.id, kind=r.kind, effective_at=i(r.effective_at), requested_at=i(r.requested_at),
            state=st[r.state], plan_version_id=r.plan_version_id,
            previous_state=None if r.previous_state is None else st[r.previous_state],
            previous_plan_version_id=r.previous_plan_version_id, scheduled_for=self.opt(r.scheduled_for),
            actor=r.actor, reason=r.reason,
        )  # fmt: skip


def _histories(
    conn: Connection, tenant_id: int, at: datetime, subscription_id: int | None, ids: list[int], memo: _Memo
) -> dict[int, list[HistoryEntry]]:
    """`subscription.histories` for the selected subscriptions (one page, ids ascending), in one query
    without an IN list (a page may be large): same rows, same order (effective_at, id)."""
    if subscription_id is not None or len(ids) <= IN_LIST_MAX:
        return histories(conn, ids)
    h, s = subscription_history.c, subscriptions.c
    out: dict[int, list[HistoryEntry]] = {i: [] for i in ids}
    query = (
        select(subscription_history)
        .join(subscriptions, s.id == h.subscription_id)
        .where(s.tenant_id == tenant_id, s.started_at <= at, s.id >= ids[0], s.id <= ids[-1])
        .order_by(h.effective_at, h.id)
    )
    for r in conn.execute(query):
        found = out.get(r.subscription_id)
        if found is not None:
            found.append(memo.entry(r))
    return out


# --- a window of history, for what-if pricing and usage audits -------------------------------------------------


def window_segments(engine: Engine, tenant_id: int, start: datetime, end: datetime) -> list[WindowLife]:
    """Every subscription's life inside [start, end), as known at `end` (scheduled changes up to then applied),
    each segment clipped to the window; subscriptions with nothing inside it are left out. Read in pages of
    subscriptions, as `due_periods` reads them."""
    a, b = utc(start), utc(end)
    out: list[WindowLife] = []
    memo = _Memo()
    after = 0
    with engine.connect() as conn:
        while True:
            query = select_subscriptions(tenant_id).where(subscriptions.c.started_at < b, subscriptions.c.id > after)
            rows = conn.execute(query.order_by(subscriptions.c.id).limit(PAGE)).all()
            if not rows:
                break
            subs = [memo.subscription(r) for r in rows]
            history = _histories(conn, tenant_id, b, None, [s.id for s in subs], memo)
            for sub in subs:
                checkpoint()
                inside = []
                for seg in segments(sub, history[sub.id], b):
                    s0, s1 = max(seg.start, a), b if seg.end is None else min(seg.end, b)
                    if s0 < s1:
                        inside.append(Segment(s0, s1, seg.state, seg.plan_version_id))
                if inside:
                    out.append(WindowLife(sub, tuple(inside)))
            after = subs[-1].id
            if len(subs) < PAGE:
                break
    return out


@dataclass(frozen=True, slots=True)
class WindowLife:
    """A subscription and its segments inside a window (each with an end: the window closes them)."""

    subscription: Subscription
    segments: tuple[Segment, ...]


def window_items(lives: list[WindowLife], plans: dict[int, PlanVersion]) -> list[DueItem]:
    """The items that bill exactly the windows' active time: every period a segment overlaps, its spans cut
    to the segment (so to the window), in-arrears items whatever their due date. A window that starts and ends
    on period boundaries gives the very items an invoice run bills for those periods.

    `plans` maps each segment's plan version id to the version to bill it under: a what-if maps them to an
    unsaved candidate (items then carry the candidate's id and lie on its period grid)."""
    grid = _Grid()
    items: list[DueItem] = []
    for life in lives:
        sub = life.subscription
        arrears: dict[tuple[int, int], tuple[Period, list[Span]]] = {}
        for seg in life.segments:
            if seg.state is not State.ACTIVE or seg.end is None:
                continue
            plan = plans[seg.plan_version_id]
            cycle = grid.cycle(sub.billing_anchor, plan.interval, sub.timezone)
            advance, in_arrears = grid.timings(plan)
            period = grid.period_at(cycle, seg.start)
            while period.start < seg.end:
                span = Span(max(seg.start, period.start), min(seg.end, period.end))
                if advance:
                    items.append(_item(sub, plan.id, "in_advance", period, [span], span.start))
                if in_arrears:
                    arrears.setdefault((plan.id, period.index), (period, []))[1].append(span)
                period = grid.next(cycle, period)
                checkpoint()
        for (version, _), (period, spans) in arrears.items():
            items.append(_item(sub, version, "in_arrears", period, spans, min(period.end, spans[-1].end)))
    return items


def _item(sub: Subscription, version: int, timing: Timing, period: Period, spans: list[Span], due: datetime) -> DueItem:
    return DueItem(
        sub.id, sub.customer_id, sub.customer_external_id, sub.timezone, version, timing, period, tuple(spans), due
    )


__all__ = [
    "DueItem",
    "Segment",
    "Span",
    "WindowLife",
    "due_items",
    "due_periods",
    "segments",
    "window_items",
    "window_segments",
]
