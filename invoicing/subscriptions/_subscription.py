"""Subscriptions: a customer on a published plan version, and the lifecycle that bills it.

State machine (every operation takes the instant it is effective at; there is no hidden clock)::

    create ──► trial ──(trial ends)──► active ◄──resume── paused
                 │                      │  └────pause────►  │
                 └──────cancel──────────┴──────cancel───────┴──► cancelled (final)

Plan changes are allowed in trial and active (now, prorated; or at period end, scheduled), refused
while paused (resume first) and once cancelled. Refusals are FailedPrecondition naming the state.

Effective instants are floored to the 15-minute UTC grid (usage rollups answer only such ranges), and
the history is append-only: an operation may not take effect before the latest recorded change,
because invoices may already have been issued from it. Scheduled changes (trial end, plan change or
cancellation at period end) sit on the subscription row until their instant; the next operation on
the subscription writes them to the history first, and readers (`get_subscription(as_of=...)`,
`billing.due_periods`) apply them virtually, so nothing depends on a background job having run.

Every operation emits one outbox event (`subscription.created`, `.plan_changed`, `.change_scheduled`,
`.paused`, `.resumed`, `.cancelled`, `.end_scheduled`) as the last statement of its own transaction, so
a consumer hears of exactly the changes that committed. Scheduled changes reaching their instant emit
nothing when they are written down later: their event was the `*_scheduled` one, which says when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from invoicing.catalog import (
    BillingCycle,
    Period,
    PlanVersion,
    ProrationBasis,
    VersionStatus,
    floor_quarter_hour,
    get_customer,
    get_plan_version,
    get_plan_version_by_id,
    proration,
    stored_utc,
    zone,
)
from invoicing.events import NewEvent, emit
from invoicing.tables import customers, plan_versions, plans, subscription_history, subscriptions
from metering.errors import FailedPrecondition, InvalidArgument, NotFound
from metering.transactions import begin_write

Timing = Literal["now", "period_end"]


class State(StrEnum):
    TRIAL = "trial"
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


#: Which states each operation may start from; everything else is refused with FailedPrecondition.
ALLOWED: dict[str, frozenset[State]] = {
    "change": frozenset({State.TRIAL, State.ACTIVE}),
    "pause": frozenset({State.ACTIVE}),
    "resume": frozenset({State.PAUSED}),
    "cancel": frozenset({State.TRIAL, State.ACTIVE, State.PAUSED}),
}

_HINTS = {
    State.PAUSED: "resume it first",
    State.CANCELLED: "cancelled is final; create a new subscription",
    State.TRIAL: "it is still in its trial",
    State.ACTIVE: "it is already running",
}


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    tenant_id: int
    customer_id: int
    customer_external_id: str
    timezone: str
    plan_version_id: int
    state: State
    billing_anchor: datetime
    started_at: datetime
    trial_ends_at: datetime | None
    ends_at: datetime | None
    pending_plan_version_id: int | None
    pending_change_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of the append-only history: what the subscription became at `effective_at`, and why."""

    id: int
    kind: str
    effective_at: datetime
    requested_at: datetime
    state: State
    plan_version_id: int
    previous_state: State | None
    previous_plan_version_id: int | None
    scheduled_for: datetime | None
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class Proration:
    """How a change now splits the current period between the old and the new plan.

    `old_period` is the old plan's period containing the change and `new_period` the new plan's
    (they differ only when the interval changes). `fractions(by)` gives (old share, new share):
    the invoice run credits the unused old share of an in-advance fee and charges the new share.
    """

    effective_at: datetime
    old_period: Period
    new_period: Period
    old_start: datetime
    timezone: str

    def fractions(self, by: ProrationBasis) -> tuple[Fraction, Fraction]:
        tz = zone(self.timezone)
        old = proration(self.old_period, self.old_start, self.effective_at, by, tz)
        new = proration(self.new_period, self.effective_at, self.new_period.end, by, tz)
        return old, new


@dataclass(frozen=True, slots=True)
class PlanChange:
    subscription: Subscription
    effective_at: datetime
    proration: Proration | None  # None when scheduled for period end (whole periods, nothing to prorate)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state and/or plan at an instant (recorded, or scheduled and applied virtually)."""

    kind: str
    at: datetime
    state: State
    plan_version_id: int


def scheduled_transitions(sub: Subscription, until: datetime) -> list[Transition]:
    """The scheduled changes of `sub` due at or before `until`, in order, each applied to the last.

    At the same instant a trial ends before a plan change, and a plan change before a cancellation.
    """
    candidates: list[tuple[datetime, int, str]] = []
    if sub.state is State.TRIAL and sub.trial_ends_at is not None:
        candidates.append((sub.trial_ends_at, 0, "trial_ended"))
    if sub.pending_plan_version_id is not None and sub.pending_change_at is not None:
        candidates.append((sub.pending_change_at, 1, "plan_changed"))
    if sub.state is not State.CANCELLED and sub.ends_at is not None:
        candidates.append((sub.ends_at, 2, "cancelled"))
    out: list[Transition] = []
    state, version = sub.state, sub.plan_version_id
    for at, _, kind in sorted(candidates):
        if at > until or state is State.CANCELLED:
            break
        if kind == "trial_ended":
            state = State.ACTIVE
        elif kind == "plan_changed":
            assert sub.pending_plan_version_id is not None
            version = sub.pending_plan_version_id
        else:
            state = State.CANCELLED
        out.append(Transition(kind, at, state, version))
    return out


def as_of(sub: Subscription, when: datetime) -> Subscription:
    """`sub` with its scheduled changes up to `when` applied (without writing anything)."""
    applied = scheduled_transitions(sub, floor_quarter_hour(when))
    if not applied:
        return sub
    settled = any(t.kind in ("plan_changed", "cancelled") for t in applied)
    return replace(
        sub,
        state=applied[-1].state,
        plan_version_id=applied[-1].plan_version_id,
        pending_plan_version_id=None if settled else sub.pending_plan_version_id,
        pending_change_at=None if settled else sub.pending_change_at,
    )


def subscription_from_row(r: Any) -> Subscription:
    def opt(v: datetime | None) -> datetime | None:
        return None if v is None else stored_utc(v)

    return Subscription(
        id=r.id,
        tenant_id=r.tenant_id,
        customer_id=r.customer_id,
        customer_external_id=r.external_id,
        timezone=r.timezone,
        plan_version_id=r.plan_version_id,
        state=State(r.state),
        billing_anchor=stored_utc(r.billing_anchor),
        started_at=stored_utc(r.started_at),
        trial_ends_at=opt(r.trial_ends_at),
        ends_at=opt(r.ends_at),
        pending_plan_version_id=r.pending_plan_version_id,
        pending_change_at=opt(r.pending_change_at),
        created_at=stored_utc(r.created_at),
    )


def select_subscriptions(tenant_id: int) -> Any:
    return (
        select(subscriptions, customers.c.external_id, customers.c.timezone)
        .join(customers, customers.c.id == subscriptions.c.customer_id)
        .where(subscriptions.c.tenant_id == tenant_id)
    )


def get_subscription(engine: Engine, tenant_id: int, subscription_id: int, at: datetime | None = None) -> Subscription:
    """The subscription as recorded, or as of `at` with scheduled changes up to then applied."""
    with engine.connect() as conn:
        row = conn.execute(select_subscriptions(tenant_id).where(subscriptions.c.id == subscription_id)).one_or_none()
    if row is None:
        raise NotFound(f"no subscription {subscription_id}; list them with `tally subscription list TENANT`")
    sub = subscription_from_row(row)
    return sub if at is None else as_of(sub, at)


def list_subscriptions(
    engine: Engine, tenant_id: int, customer_external_id: str | None = None, at: datetime | None = None
) -> list[Subscription]:
    query = select_subscriptions(tenant_id)
    if customer_external_id is not None:
        query = query.where(customers.c.external_id == customer_external_id)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(subscriptions.c.id)).all()
    subs = [subscription_from_row(r) for r in rows]
    return subs if at is None else [as_of(s, at) for s in subs]


def _entry(r: Any) -> HistoryEntry:
    return HistoryEntry(
        id=r.id,
        kind=r.kind,
        effective_at=stored_utc(r.effective_at),
        requested_at=stored_utc(r.requested_at),
        state=State(r.state),
        plan_version_id=r.plan_version_id,
        previous_state=None if r.previous_state is None else State(r.previous_state),
        previous_plan_version_id=r.previous_plan_version_id,
        scheduled_for=None if r.scheduled_for is None else stored_utc(r.scheduled_for),
        actor=r.actor,
        reason=r.reason,
    )


def get_history(engine: Engine, tenant_id: int, subscription_id: int) -> list[HistoryEntry]:
    get_subscription(engine, tenant_id, subscription_id)  # NotFound for another tenant's id
    with engine.connect() as conn:
        rows = conn.execute(
            select(subscription_history)
            .where(subscription_history.c.subscription_id == subscription_id)
            .order_by(subscription_history.c.effective_at, subscription_history.c.id)
        ).all()
    return [_entry(r) for r in rows]


def histories(conn: Connection, subscription_ids: Sequence[int]) -> dict[int, list[HistoryEntry]]:
    """Histories of many subscriptions in one query (for the billing run)."""
    out: dict[int, list[HistoryEntry]] = {i: [] for i in subscription_ids}
    if not subscription_ids:
        return out
    rows = conn.execute(
        select(subscription_history)
        .where(subscription_history.c.subscription_id.in_(list(subscription_ids)))
        .order_by(subscription_history.c.effective_at, subscription_history.c.id)
    ).all()
    for r in rows:
        out[r.subscription_id].append(_entry(r))
    return out


def _published(engine: Engine, tenant_id: int, plan_code: str, version: int | None) -> PlanVersion:
    plan = get_plan_version(engine, tenant_id, plan_code, version, published=True)
    if plan.status is not VersionStatus.PUBLISHED:  # pragma: no cover - the query asks for published
        raise FailedPrecondition(f"{plan.label} is a draft; publish it first")
    return plan


def _cycle(sub: Subscription, plan: PlanVersion) -> BillingCycle:
    return BillingCycle.from_instant(sub.billing_anchor, plan.interval, sub.timezone)


def create_subscription(
    engine: Engine,
    tenant_id: int,
    customer_external_id: str,
    plan_code: str,
    at: datetime,
    *,
    version: int | None = None,
    anchor: datetime | None = None,
    end: datetime | None = None,
    actor: str = "api",
    reason: str = "",
) -> Subscription:
    """Subscribe a customer to a published plan version (the latest unless `version` is given).

    Starts in trial when the plan has trial days, else active. The billing anchor defaults to the
    trial end (or the start), so the first paid period starts when paying starts; only the anchor's
    local date matters (periods turn over at the customer's local midnight).
    """
    customer = get_customer(engine, tenant_id, customer_external_id)
    plan = _published(engine, tenant_id, plan_code, version)
    if plan.currency != customer.currency:
        raise FailedPrecondition(
            f"{plan.label} bills in {plan.currency} but customer {customer.external_id!r} pays in "
            f"{customer.currency}; use a plan in {customer.currency}"
        )
    start = floor_quarter_hour(at)
    trial_end = start + timedelta(days=plan.trial_days) if plan.trial_days else None
    ends_at = None
    if end is not None:
        ends_at = floor_quarter_hour(end)
        if ends_at <= start:
            raise InvalidArgument(f"end {end.isoformat()} must be after the start {start.isoformat()}")
    anchor_at = floor_quarter_hour(anchor) if anchor is not None else (trial_end or start)
    state = State.TRIAL if trial_end is not None else State.ACTIVE
    with begin_write(engine) as conn:
        sub_id = conn.execute(
            insert(subscriptions)
            .values(
                tenant_id=tenant_id,
                customer_id=customer.id,
                plan_version_id=plan.id,
                state=state.value,
                billing_anchor=anchor_at,
                started_at=start,
                trial_ends_at=trial_end,
                ends_at=ends_at,
                created_at=start,
            )
            .returning(subscriptions.c.id)
        ).scalar_one()
        _record(conn, sub_id, "created", start, at, state, plan.id, None, None, actor, reason, scheduled_for=ends_at)
        _event(
            conn,
            tenant_id,
            "subscription.created",
            customer.external_id,
            sub_id,
            (plan.code, plan.version),
            state,
            start,
        )
    return get_subscription(engine, tenant_id, sub_id)


def _record(
    conn: Connection,
    sub_id: int,
    kind: str,
    effective_at: datetime,
    requested_at: datetime,
    state: State,
    version_id: int,
    previous_state: State | None,
    previous_version_id: int | None,
    actor: str,
    reason: str,
    scheduled_for: datetime | None = None,
) -> None:
    conn.execute(
        insert(subscription_history).values(
            subscription_id=sub_id,
            kind=kind,
            effective_at=effective_at,
            requested_at=requested_at,
            state=state.value,
            plan_version_id=version_id,
            previous_state=None if previous_state is None else previous_state.value,
            previous_plan_version_id=previous_version_id,
            scheduled_for=scheduled_for,
            actor=actor[:128],
            reason=reason,
        )
    )


def _plan_ref(conn: Connection, version_id: int) -> tuple[str, int]:
    """(plan code, version) of a version id, read in the writer's transaction (no second connection)."""
    row = conn.execute(
        select(plans.c.code, plan_versions.c.version)
        .join(plans, plans.c.id == plan_versions.c.plan_id)
        .where(plan_versions.c.id == version_id)
    ).one()
    return str(row.code), int(row.version)


def _event(
    conn: Connection,
    tenant_id: int,
    kind: str,
    customer: str,
    sub_id: int,
    plan: tuple[str, int],
    state: State,
    effective_at: datetime,
    *,
    previous: tuple[str, int] | None = None,
    scheduled_for: datetime | None = None,
) -> None:
    """Emit the operation's outbox event; call it last, since `emit` holds the tenant's head row until commit."""
    data: dict[str, Any] = {
        "subscription_id": sub_id,
        "plan": plan[0],
        "plan_version": plan[1],
        "state": state.value,
        "effective_at": effective_at.isoformat(),
    }
    if previous is not None:
        data["previous_plan"], data["previous_plan_version"] = previous
    if scheduled_for is not None:
        data["scheduled_for"] = scheduled_for.isoformat()
    emit(conn, tenant_id, [NewEvent(kind, customer, data)])


def _load_for_update(conn: Connection, tenant_id: int, sub_id: int, at: datetime) -> Subscription:
    """Lock the subscription, refuse a change before its latest recorded one, and write down every
    scheduled change due by `at` so the operation starts from the true current state."""
    row = conn.execute(
        select_subscriptions(tenant_id).where(subscriptions.c.id == sub_id).with_for_update(of=subscriptions)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no subscription {sub_id}; list them with `tally subscription list TENANT`")
    sub = subscription_from_row(row)
    latest = conn.execute(
        select(subscription_history.c.effective_at)
        .where(subscription_history.c.subscription_id == sub_id)
        .order_by(subscription_history.c.effective_at.desc())
        .limit(1)
    ).scalar_one()
    if at < stored_utc(latest):
        raise FailedPrecondition(
            f"subscription {sub_id} already has a change at {stored_utc(latest).isoformat()}; the history is "
            f"append-only, so a change cannot take effect earlier ({at.isoformat()})"
        )
    events: list[NewEvent] = []
    for t in scheduled_transitions(sub, at):
        previous = sub
        sub = replace(sub, state=t.state, plan_version_id=t.plan_version_id)
        if t.kind in ("plan_changed", "cancelled"):
            sub = replace(sub, pending_plan_version_id=None, pending_change_at=None)
        _record(
            conn, sub_id, t.kind, t.at, t.at, t.state, t.plan_version_id,
            previous.state, previous.plan_version_id, "scheduler", "scheduled change reached its instant",
        )  # fmt: skip
        _store(conn, sub)
        data: dict[str, Any] = {
            "subscription_id": sub_id,
            "plan": (ref := _plan_ref(conn, t.plan_version_id))[0],
            "plan_version": ref[1],
            "state": t.state.value,
            "effective_at": t.at.isoformat(),
            "scheduled": True,
        }
        if t.plan_version_id != previous.plan_version_id:
            data["previous_plan"], data["previous_plan_version"] = _plan_ref(conn, previous.plan_version_id)
        events.append(NewEvent(f"subscription.{t.kind}", sub.customer_external_id, data))
    # Written down now, announced now: consumers hear of a scheduled change when it is recorded.
    emit(conn, tenant_id, events)
    return sub


def apply_scheduled(engine: Engine, now: datetime, limit: int = 500) -> int:
    """Record every scheduled change whose instant has passed (trial ends, plan changes and
    cancellations at period end), each with its `subscription.*` event; returns how many
    subscriptions moved.

    Without this sweep a scheduled change is written down only when the subscription is next touched
    (billing already reads it as applied), so webhooks and WatchEvents would hear of a trial ending
    or a cancellation days late, or never. The server runs it every few seconds.
    """
    s = subscriptions.c
    at = floor_quarter_hour(now)
    due = (
        select(s.id, s.tenant_id)
        .where(
            or_(
                and_(s.state == State.TRIAL.value, s.trial_ends_at <= at),
                s.pending_change_at <= at,
                and_(s.state != State.CANCELLED.value, s.ends_at <= at),
            )
        )
        .order_by(s.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(due).all()
    moved = 0
    for r in rows:
        try:
            with begin_write(engine) as conn:
                _load_for_update(conn, r.tenant_id, r.id, at)
            moved += 1
        except FailedPrecondition:  # a change recorded after `at` already settled it
            continue
    return moved


def _store(conn: Connection, sub: Subscription) -> None:
    conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == sub.id)
        .values(
            state=sub.state.value,
            plan_version_id=sub.plan_version_id,
            ends_at=sub.ends_at,
            pending_plan_version_id=sub.pending_plan_version_id,
            pending_change_at=sub.pending_change_at,
        )
    )


def _check(sub: Subscription, operation: str) -> None:
    if sub.state not in ALLOWED[operation]:
        raise FailedPrecondition(
            f"cannot {operation} subscription {sub.id}: it is {sub.state.value} ({_HINTS[sub.state]})"
        )


def _period_end(engine: Engine, tenant_id: int, sub: Subscription, at: datetime) -> datetime:
    """When "at period end" lands: the trial's end during a trial, else the current period's end."""
    if sub.state is State.TRIAL and sub.trial_ends_at is not None:
        return sub.trial_ends_at
    plan = get_plan_version_by_id(engine, tenant_id, sub.plan_version_id)
    return _cycle(sub, plan).period_at(at).end


def change_plan(
    engine: Engine,
    tenant_id: int,
    subscription_id: int,
    plan_code: str,
    at: datetime,
    *,
    version: int | None = None,
    timing: Timing = "now",
    actor: str = "api",
    reason: str = "",
) -> PlanChange:
    """Move to another published plan version now (prorated) or when the current period ends.

    A change now replaces any scheduled change; a change at period end replaces an earlier schedule.
    """
    eff = floor_quarter_hour(at)
    new = _published(engine, tenant_id, plan_code, version)
    with begin_write(engine) as conn:
        sub = _load_for_update(conn, tenant_id, subscription_id, eff)
        _check(sub, "change")
        if new.id == sub.plan_version_id:
            raise FailedPrecondition(f"subscription {sub.id} is already on {new.label}")
        old = get_plan_version_by_id(engine, tenant_id, sub.plan_version_id)
        if new.currency != old.currency:
            raise FailedPrecondition(f"{new.label} bills in {new.currency}, the subscription in {old.currency}")
        if timing == "now":
            _record(conn, sub.id, "plan_changed", eff, at, sub.state, new.id, sub.state, old.id, actor, reason)
            changed = replace(sub, plan_version_id=new.id, pending_plan_version_id=None, pending_change_at=None)
            _store(conn, changed)
            _event(
                conn, tenant_id, "subscription.plan_changed", sub.customer_external_id, sub.id, (new.code, new.version),
                sub.state, eff, previous=(old.code, old.version),
            )  # fmt: skip
            old_period = _cycle(sub, old).period_at(eff)
            result = Proration(
                eff, old_period, _cycle(sub, new).period_at(eff), max(old_period.start, sub.started_at), sub.timezone
            )
        elif timing == "period_end":
            when = _period_end(engine, tenant_id, sub, eff)
            _record(
                conn, sub.id, "change_scheduled", eff, at, sub.state, sub.plan_version_id, sub.state,
                sub.plan_version_id, actor, reason or f"to {new.label}", scheduled_for=when,
            )  # fmt: skip
            _store(conn, replace(sub, pending_plan_version_id=new.id, pending_change_at=when))
            _event(
                conn, tenant_id, "subscription.change_scheduled", sub.customer_external_id, sub.id,
                (new.code, new.version), sub.state, eff, previous=(old.code, old.version), scheduled_for=when,
            )  # fmt: skip
            result = None
        else:
            raise InvalidArgument(f"timing must be now or period_end, not {timing!r}")
    return PlanChange(get_subscription(engine, tenant_id, subscription_id), eff, result)


def _simple(
    engine: Engine,
    tenant_id: int,
    subscription_id: int,
    at: datetime,
    operation: str,
    kind: str,
    to: State,
    actor: str,
    reason: str,
) -> Subscription:
    eff = floor_quarter_hour(at)
    with begin_write(engine) as conn:
        sub = _load_for_update(conn, tenant_id, subscription_id, eff)
        _check(sub, operation)
        _record(conn, sub.id, kind, eff, at, to, sub.plan_version_id, sub.state, sub.plan_version_id, actor, reason)
        _store(conn, replace(sub, state=to))
        _event(
            conn, tenant_id, f"subscription.{kind}", sub.customer_external_id, sub.id,
            _plan_ref(conn, sub.plan_version_id), to, eff,
        )  # fmt: skip
    return get_subscription(engine, tenant_id, subscription_id)


def pause_subscription(
    engine: Engine, tenant_id: int, subscription_id: int, at: datetime, *, actor: str = "api", reason: str = ""
) -> Subscription:
    """Stop billing from `at`: no fees accrue and no usage is billed until it is resumed."""
    return _simple(engine, tenant_id, subscription_id, at, "pause", "paused", State.PAUSED, actor, reason)


def resume_subscription(
    engine: Engine, tenant_id: int, subscription_id: int, at: datetime, *, actor: str = "api", reason: str = ""
) -> Subscription:
    return _simple(engine, tenant_id, subscription_id, at, "resume", "resumed", State.ACTIVE, actor, reason)


def cancel_subscription(
    engine: Engine,
    tenant_id: int,
    subscription_id: int,
    at: datetime,
    *,
    timing: Timing = "now",
    actor: str = "api",
    reason: str = "",
) -> Subscription:
    """End the subscription now, or schedule its end for the current period's end (trial end in a trial)."""
    eff = floor_quarter_hour(at)
    with begin_write(engine) as conn:
        sub = _load_for_update(conn, tenant_id, subscription_id, eff)
        _check(sub, "cancel")
        if timing == "now":
            _record(
                conn, sub.id, "cancelled", eff, at, State.CANCELLED, sub.plan_version_id, sub.state,
                sub.plan_version_id, actor, reason,
            )  # fmt: skip
            _store(
                conn,
                replace(sub, state=State.CANCELLED, ends_at=eff, pending_plan_version_id=None, pending_change_at=None),
            )
            _event(
                conn, tenant_id, "subscription.cancelled", sub.customer_external_id, sub.id,
                _plan_ref(conn, sub.plan_version_id), State.CANCELLED, eff,
            )  # fmt: skip
        elif timing == "period_end":
            when = _period_end(engine, tenant_id, sub, eff)
            _record(
                conn, sub.id, "end_scheduled", eff, at, sub.state, sub.plan_version_id, sub.state,
                sub.plan_version_id, actor, reason, scheduled_for=when,
            )  # fmt: skip
            _store(conn, replace(sub, ends_at=when))
            _event(
                conn, tenant_id, "subscription.end_scheduled", sub.customer_external_id, sub.id,
                _plan_ref(conn, sub.plan_version_id), sub.state, eff, scheduled_for=when,
            )  # fmt: skip
        else:
            raise InvalidArgument(f"timing must be now or period_end, not {timing!r}")
    return get_subscription(engine, tenant_id, subscription_id)


def withdraw_scheduled(
    engine: Engine, tenant_id: int, subscription_id: int, at: datetime, *, actor: str = "api", reason: str = ""
) -> Subscription:
    """Withdraw what was scheduled for the period's end: a plan change, the subscription's end, or both.

    The customer changed their mind before the date: nothing happens then, and the subscription bills on
    as before. Recorded in the history (`schedule_withdrawn`, which changes no state and so no span) and
    announced as `subscription.schedule_withdrawn`. To schedule something else instead, change or cancel
    at period end again: a new schedule replaces the old one.
    """
    eff = floor_quarter_hour(at)
    with begin_write(engine) as conn:
        sub = _load_for_update(conn, tenant_id, subscription_id, eff)
        ending = sub.state is not State.CANCELLED and sub.ends_at is not None and sub.ends_at > eff
        if sub.pending_plan_version_id is None and not ending:
            raise FailedPrecondition(
                f"subscription {sub.id} has nothing scheduled to withdraw (no plan change or end at period end)"
            )
        _record(
            conn, sub.id, "schedule_withdrawn", eff, at, sub.state, sub.plan_version_id, sub.state,
            sub.plan_version_id, actor, reason,
            scheduled_for=sub.pending_change_at if sub.pending_plan_version_id is not None else sub.ends_at,
        )  # fmt: skip
        _store(
            conn,
            replace(sub, pending_plan_version_id=None, pending_change_at=None, ends_at=None if ending else sub.ends_at),
        )
        _event(
            conn, tenant_id, "subscription.schedule_withdrawn", sub.customer_external_id, sub.id,
            _plan_ref(conn, sub.plan_version_id), sub.state, eff,
        )  # fmt: skip
    return get_subscription(engine, tenant_id, subscription_id)


__all__ = [
    "ALLOWED",
    "HistoryEntry",
    "PlanChange",
    "Proration",
    "State",
    "Subscription",
    "Transition",
    "apply_scheduled",
    "as_of",
    "cancel_subscription",
    "change_plan",
    "create_subscription",
    "get_history",
    "get_subscription",
    "histories",
    "list_subscriptions",
    "pause_subscription",
    "resume_subscription",
    "scheduled_transitions",
    "select_subscriptions",
    "subscription_from_row",
    "withdraw_scheduled",
]
