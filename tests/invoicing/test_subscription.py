"""Subscription lifecycle on both databases: every transition allowed or refused, history, scheduled changes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer, create_plan, get_plan_version
from invoicing.subscriptions import (
    ALLOWED,
    State,
    cancel_subscription,
    change_plan,
    create_subscription,
    get_history,
    get_subscription,
    list_subscriptions,
    pause_subscription,
    resume_subscription,
)
from metering.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, plan_json, published

JAN15 = datetime(2026, 1, 15, tzinfo=UTC)
FEB1 = datetime(2026, 2, 1, tzinfo=UTC)


def test_create_active_or_trial(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    published(engine, t, "trial", trial_days=14)
    sub = create_subscription(engine, t, customer, "pro", datetime(2026, 1, 1, 9, 7, tzinfo=UTC), actor="ops")
    assert sub.state is State.ACTIVE
    assert sub.started_at == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # floored to the quarter hour
    assert sub.billing_anchor == sub.started_at and sub.trial_ends_at is None
    tr = create_subscription(engine, t, customer, "trial", T0)
    assert tr.state is State.TRIAL and tr.trial_ends_at == T0 + timedelta(days=14)
    assert tr.billing_anchor == tr.trial_ends_at
    [h] = get_history(engine, t, sub.id)
    assert (h.kind, h.state, h.actor, h.requested_at) == (
        "created",
        State.ACTIVE,
        "ops",
        datetime(2026, 1, 1, 9, 7, tzinfo=UTC),
    )
    # The trial ends by itself: visible as of a later instant, and written down by the next operation.
    assert get_subscription(engine, t, tr.id, at=T0 + timedelta(days=13)).state is State.TRIAL
    assert get_subscription(engine, t, tr.id, at=T0 + timedelta(days=14)).state is State.ACTIVE
    pause_subscription(engine, t, tr.id, T0 + timedelta(days=20))
    assert [h.kind for h in get_history(engine, t, tr.id)] == ["created", "trial_ended", "paused"]
    assert [s.id for s in list_subscriptions(engine, t, customer)] == [sub.id, tr.id]


def test_create_refusals(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    create_plan(engine, t, plan_json("draft"), T0)
    with pytest.raises(NotFound, match="no published plan 'draft'"):
        create_subscription(engine, t, customer, "draft", T0)
    published(engine, t, "eur", currency="EUR")
    with pytest.raises(FailedPrecondition, match="bills in EUR but customer 'cus_1' pays in USD"):
        create_subscription(engine, t, customer, "eur", T0)
    published(engine, t, "pro")
    with pytest.raises(InvalidArgument, match="must be after the start"):
        create_subscription(engine, t, customer, "pro", T0, end=T0)
    with pytest.raises(NotFound, match="no customer"):
        create_subscription(engine, t, "nobody", "pro", T0)


Op = Callable[[Engine, int, int, datetime], Any]


def _change(engine: Engine, t: int, s: int, at: datetime) -> Any:
    return change_plan(engine, t, s, "other", at)


OPS: dict[str, Op] = {
    "change": _change,
    "pause": lambda e, t, s, at: pause_subscription(e, t, s, at),
    "resume": lambda e, t, s, at: resume_subscription(e, t, s, at),
    "cancel": lambda e, t, s, at: cancel_subscription(e, t, s, at),
}


def _in_state(engine: Engine, t: int, customer: str, state: State) -> int:
    sub = create_subscription(engine, t, customer, "trial" if state is State.TRIAL else "pro", T0)
    if state is State.PAUSED:
        pause_subscription(engine, t, sub.id, T0 + timedelta(hours=1))
    if state is State.CANCELLED:
        cancel_subscription(engine, t, sub.id, T0 + timedelta(hours=1))
    assert get_subscription(engine, t, sub.id).state is state
    return sub.id


@pytest.mark.parametrize("state", list(State))
def test_every_transition_from_every_state(engine: Engine, tenant: TenantKey, customer: str, state: State) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    published(engine, t, "other")
    published(engine, t, "trial", trial_days=30)
    expected = {"change": "plan_changed", "pause": "paused", "resume": "resumed", "cancel": "cancelled"}
    for name, op in OPS.items():
        sub_id = _in_state(engine, t, customer, state)
        before = get_history(engine, t, sub_id)
        at = T0 + timedelta(hours=2)
        if state in ALLOWED[name]:
            op(engine, t, sub_id, at)
            after = get_history(engine, t, sub_id)
            assert after[:-1] == before and after[-1].kind == expected[name]
            assert after[-1].previous_state is state and after[-1].effective_at == at
        else:
            with pytest.raises(FailedPrecondition, match=f"cannot {name} subscription {sub_id}: it is {state.value}"):
                op(engine, t, sub_id, at)
            assert get_history(engine, t, sub_id) == before


def test_states_after_operations(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    sub = create_subscription(engine, t, customer, "pro", T0)
    assert pause_subscription(engine, t, sub.id, JAN15).state is State.PAUSED
    assert resume_subscription(engine, t, sub.id, JAN15 + timedelta(days=1)).state is State.ACTIVE
    done = cancel_subscription(engine, t, sub.id, JAN15 + timedelta(days=2), actor="u1", reason="too pricey")
    assert done.state is State.CANCELLED and done.ends_at == JAN15 + timedelta(days=2)
    last = get_history(engine, t, sub.id)[-1]
    assert (last.actor, last.reason) == ("u1", "too pricey")


def test_history_is_append_only_in_time(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    sub = create_subscription(engine, t, customer, "pro", JAN15)
    with pytest.raises(FailedPrecondition, match="append-only"):
        pause_subscription(engine, t, sub.id, JAN15 - timedelta(hours=1))


def test_change_now_returns_exact_proration(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    other = published(engine, t, "other")
    sub = create_subscription(engine, t, customer, "pro", T0)
    change = change_plan(engine, t, sub.id, "other", JAN15 + timedelta(hours=12), reason="upgrade")
    assert change.subscription.plan_version_id == other
    assert change.proration is not None
    assert change.proration.old_period.start == T0 and change.proration.old_period.end == FEB1
    assert change.proration.fractions("day") == (Fraction(14, 31), Fraction(17, 31))
    assert change.proration.fractions("second") == (Fraction(14 * 24 + 12, 744), Fraction(16 * 24 + 12, 744))
    assert sum(change.proration.fractions("second")) == 1
    with pytest.raises(FailedPrecondition, match="already on other v1"):
        change_plan(engine, t, sub.id, "other", JAN15 + timedelta(days=1))
    h = get_history(engine, t, sub.id)[-1]
    assert (h.kind, h.previous_plan_version_id, h.plan_version_id, h.reason) == (
        "plan_changed", get_plan_version(engine, t, "pro").id, other, "upgrade",
    )  # fmt: skip


def test_change_at_period_end_applies_when_the_period_rolls(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    pro = published(engine, t, "pro")
    other = published(engine, t, "other")
    sub = create_subscription(engine, t, customer, "pro", T0)
    change = change_plan(engine, t, sub.id, "other", JAN15, timing="period_end")
    assert change.proration is None
    assert change.subscription.plan_version_id == pro
    assert (change.subscription.pending_plan_version_id, change.subscription.pending_change_at) == (other, FEB1)
    assert get_subscription(engine, t, sub.id, at=FEB1 - timedelta(minutes=15)).plan_version_id == pro
    assert get_subscription(engine, t, sub.id, at=FEB1).plan_version_id == other
    # The next operation writes the change down at its own instant, before itself.
    pause_subscription(engine, t, sub.id, FEB1 + timedelta(days=3))
    kinds = [(h.kind, h.effective_at, h.plan_version_id) for h in get_history(engine, t, sub.id)]
    assert kinds[-3:] == [
        ("change_scheduled", JAN15, pro),
        ("plan_changed", FEB1, other),
        ("paused", FEB1 + timedelta(days=3), other),
    ]
    stored = get_subscription(engine, t, sub.id)
    assert stored.plan_version_id == other and stored.pending_plan_version_id is None


def test_cancel_at_period_end_and_in_trial(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    published(engine, t, "trial", trial_days=10)
    sub = create_subscription(engine, t, customer, "pro", T0)
    scheduled = cancel_subscription(engine, t, sub.id, JAN15, timing="period_end")
    assert scheduled.state is State.ACTIVE and scheduled.ends_at == FEB1
    assert get_subscription(engine, t, sub.id, at=FEB1).state is State.CANCELLED
    with pytest.raises(FailedPrecondition, match="it is cancelled"):
        pause_subscription(engine, t, sub.id, FEB1 + timedelta(days=1))
    tr = create_subscription(engine, t, customer, "trial", T0)
    assert cancel_subscription(engine, t, tr.id, T0 + timedelta(days=2), timing="period_end").ends_at == T0 + timedelta(
        days=10
    )
    assert get_subscription(engine, t, tr.id, at=T0 + timedelta(days=10)).state is State.CANCELLED


def test_other_tenant_cannot_see_subscription(engine: Engine, tenant: TenantKey, customer: str) -> None:
    from tests.conftest import make_tenant

    published(engine, tenant.tenant_id, "pro")
    sub = create_subscription(engine, tenant.tenant_id, customer, "pro", T0)
    other = make_tenant(engine, "other")
    with pytest.raises(NotFound):
        get_subscription(engine, other.tenant_id, sub.id)
    with pytest.raises(NotFound):
        pause_subscription(engine, other.tenant_id, sub.id, JAN15)
    create_customer(engine, other.tenant_id, CustomerDefinition(external_id="cus_1"), T0)
    assert list_subscriptions(engine, other.tenant_id) == []
