"""Subscription operations emit exactly one outbox event each, in the change's own transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from invoicing.events import DomainEvent, head, read_events
from invoicing.subscriptions import (
    cancel_subscription,
    change_plan,
    create_subscription,
    pause_subscription,
    resume_subscription,
)
from metering.errors import FailedPrecondition, InvalidArgument
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, published

JAN10 = datetime(2026, 1, 10, 9, 7, tzinfo=UTC)  # floored to 09:00 on the quarter-hour grid
JAN10_EFF = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
FEB1 = datetime(2026, 2, 1, tzinfo=UTC)


def _new_events(engine: Engine, tenant_id: int, after: int) -> list[DomainEvent]:
    events, _ = read_events(engine, tenant_id, after, limit=1000)
    return events


def _one(engine: Engine, tenant_id: int, after: int) -> DomainEvent:
    events = _new_events(engine, tenant_id, after)
    assert len(events) == 1, [e.type for e in events]
    return events[0]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def test_created(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    published(engine, t, "trial", trial_days=14)
    sub = create_subscription(engine, t, customer, "pro", JAN10)
    e = _one(engine, t, 0)
    assert (e.sequence, e.type, e.customer) == (1, "subscription.created", customer)
    assert e.data == {
        "subscription_id": sub.id,
        "plan": "pro",
        "plan_version": 1,
        "state": "active",
        "effective_at": _iso(JAN10_EFF),
    }
    tr = create_subscription(engine, t, customer, "trial", T0)
    e = _one(engine, t, 1)
    assert e.data["subscription_id"] == tr.id and e.data["state"] == "trial"
    assert e.data["effective_at"] == _iso(T0)


def test_plan_changed_now_and_scheduled(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "basic")
    published(engine, t, "pro")
    sub = create_subscription(engine, t, customer, "basic", T0)
    before = head(engine, t)
    change_plan(engine, t, sub.id, "pro", JAN10)
    e = _one(engine, t, before)
    assert (e.type, e.customer) == ("subscription.plan_changed", customer)
    assert e.data == {
        "subscription_id": sub.id,
        "plan": "pro",
        "plan_version": 1,
        "state": "active",
        "effective_at": _iso(JAN10_EFF),
        "previous_plan": "basic",
        "previous_plan_version": 1,
    }
    before = head(engine, t)
    change_plan(engine, t, sub.id, "basic", JAN10 + timedelta(days=1), timing="period_end")
    e = _one(engine, t, before)
    assert e.type == "subscription.change_scheduled"
    assert e.data == {
        "subscription_id": sub.id,
        "plan": "basic",
        "plan_version": 1,
        "state": "active",
        "effective_at": _iso(JAN10_EFF + timedelta(days=1)),
        "previous_plan": "pro",
        "previous_plan_version": 1,
        "scheduled_for": _iso(FEB1),
    }


def test_pause_resume_cancel_and_end_scheduled(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    sub = create_subscription(engine, t, customer, "pro", T0)
    steps = [
        (pause_subscription, "subscription.paused", "paused", T0 + timedelta(days=2)),
        (resume_subscription, "subscription.resumed", "active", T0 + timedelta(days=3)),
    ]
    for operation, kind, state, at in steps:
        before = head(engine, t)
        operation(engine, t, sub.id, at)
        e = _one(engine, t, before)
        assert (e.type, e.customer) == (kind, customer)
        assert e.data == {
            "subscription_id": sub.id,
            "plan": "pro",
            "plan_version": 1,
            "state": state,
            "effective_at": _iso(at),
        }
    before = head(engine, t)
    cancel_subscription(engine, t, sub.id, T0 + timedelta(days=4), timing="period_end")
    e = _one(engine, t, before)
    assert e.type == "subscription.end_scheduled"
    assert e.data == {
        "subscription_id": sub.id,
        "plan": "pro",
        "plan_version": 1,
        "state": "active",
        "effective_at": _iso(T0 + timedelta(days=4)),
        "scheduled_for": _iso(FEB1),
    }
    before = head(engine, t)
    cancel_subscription(engine, t, sub.id, T0 + timedelta(days=5))
    e = _one(engine, t, before)
    assert e.type == "subscription.cancelled"
    assert e.data == {
        "subscription_id": sub.id,
        "plan": "pro",
        "plan_version": 1,
        "state": "cancelled",
        "effective_at": _iso(T0 + timedelta(days=5)),
    }
    # The whole stream: one event per operation, gapless, in commit order.
    all_events = _new_events(engine, t, 0)
    assert [e.sequence for e in all_events] == [1, 2, 3, 4, 5]
    assert [e.type for e in all_events] == [
        "subscription.created",
        "subscription.paused",
        "subscription.resumed",
        "subscription.end_scheduled",
        "subscription.cancelled",
    ]


def test_failed_operations_emit_nothing(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    published(engine, t, "eur", currency="EUR")
    sub = create_subscription(engine, t, customer, "pro", T0)
    cancel_subscription(engine, t, sub.id, T0 + timedelta(days=1))
    before = head(engine, t)
    refused: list[tuple[Any, type[Exception]]] = [
        (lambda: pause_subscription(engine, t, sub.id, T0 + timedelta(days=2)), FailedPrecondition),
        (lambda: resume_subscription(engine, t, sub.id, T0 + timedelta(days=2)), FailedPrecondition),
        (lambda: cancel_subscription(engine, t, sub.id, T0 + timedelta(days=2)), FailedPrecondition),
        (lambda: change_plan(engine, t, sub.id, "pro", T0 + timedelta(days=2)), FailedPrecondition),
        (lambda: create_subscription(engine, t, customer, "eur", T0), FailedPrecondition),
    ]
    for call, error in refused:
        with pytest.raises(error):
            call()
    assert head(engine, t) == before
    published(engine, t, "basic")
    other = create_subscription(engine, t, customer, "pro", T0)
    before = head(engine, t)
    with pytest.raises(InvalidArgument, match="timing"):
        change_plan(engine, t, other.id, "basic", T0, timing="later")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="timing"):
        cancel_subscription(engine, t, other.id, T0, timing="later")  # type: ignore[arg-type]
    assert head(engine, t) == before
    assert _new_events(engine, t, before) == []


def test_a_scheduled_change_written_down_by_the_next_operation_is_announced_before_it(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    t = tenant.tenant_id
    published(engine, t, "basic")
    published(engine, t, "pro")
    sub = create_subscription(engine, t, customer, "basic", T0)
    change_plan(engine, t, sub.id, "pro", T0, timing="period_end")
    before = head(engine, t)
    # The next operation writes the scheduled change down first, then pauses: two events, in that order.
    paused = pause_subscription(engine, t, sub.id, FEB1 + timedelta(days=1))
    changed, pause = _new_events(engine, t, before)
    assert (changed.type, changed.data["scheduled"], changed.data["effective_at"]) == (
        "subscription.plan_changed",
        True,
        _iso(FEB1),
    )
    assert (changed.data["plan"], changed.data["previous_plan"]) == ("pro", "basic")
    assert pause.type == "subscription.paused" and pause.data["plan"] == "pro"
    assert paused.plan_version_id != sub.plan_version_id


def test_scheduled_changes_are_recorded_and_announced_when_due(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    """A trial end, a plan change at period end and a cancellation at period end each become one event
    when the sweep passes their instant, never before, and never twice."""
    from invoicing.subscriptions import apply_scheduled, get_history

    t = tenant.tenant_id
    published(engine, t, "pro")
    published(engine, t, "max")
    published(engine, t, "trial", trial_days=14)
    trial = create_subscription(engine, t, customer, "trial", T0)  # trial ends Jan 15
    pro = create_subscription(engine, t, customer, "pro", T0)
    change_plan(engine, t, pro.id, "max", JAN10, timing="period_end")  # Feb 1
    cancel_subscription(engine, t, trial.id, JAN10, timing="period_end")
    start = head(engine, t)
    assert apply_scheduled(engine, JAN10) == 0 and head(engine, t) == start
    assert apply_scheduled(engine, datetime(2026, 1, 15, 0, 5, tzinfo=UTC)) >= 1
    mid = _new_events(engine, t, start)
    assert [(e.type, e.data["subscription_id"]) for e in mid][:1] == [("subscription.trial_ended", trial.id)]
    assert all(e.data["scheduled"] is True for e in mid)
    apply_scheduled(engine, FEB1 + timedelta(minutes=20))
    events = _new_events(engine, t, start)
    kinds = [(e.type, e.data["subscription_id"]) for e in events]
    assert ("subscription.plan_changed", pro.id) in kinds and ("subscription.cancelled", trial.id) in kinds
    changed = next(e for e in events if e.type == "subscription.plan_changed")
    assert (changed.data["plan"], changed.data["previous_plan"]) == ("max", "pro")
    assert changed.data["effective_at"] == _iso(FEB1)
    # Each transition is in the history once, and a second sweep finds nothing more.
    assert [h.kind for h in get_history(engine, t, pro.id)].count("plan_changed") == 1
    before = head(engine, t)
    assert apply_scheduled(engine, FEB1 + timedelta(days=3)) == 0 and head(engine, t) == before
