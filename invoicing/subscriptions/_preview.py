"""What a plan change or a cancellation made now would change in what is due, without writing anything.

A change now is applied *virtually*: the subscription is given the change as if it had been scheduled for
`effective_at` (the same mechanism `due_periods` uses for changes scheduled at a period's end), and the due
items are computed with and without it, as of that instant. The items that differ are exactly what the
invoice run will bill differently because of the change: an in-advance fee whose span is cut (the run credits
the unused part), the new plan's fee from the change to the period's end, and, for a cancellation, the usage
so far (an ended subscription bills its usage at once). `invoicing.documents.preview_change` rates them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Engine

from invoicing.catalog import PlanVersion, floor_quarter_hour, get_plan_version_by_id
from invoicing.subscriptions._due import DueItem, due_items
from invoicing.subscriptions._subscription import ALLOWED, State, Subscription, get_history, get_subscription
from metering.errors import FailedPrecondition, InvalidArgument


@dataclass(frozen=True, slots=True)
class ChangeItems:
    subscription: Subscription
    effective_at: datetime
    #: Items as due now (without the change) that the change alters or removes, by key.
    before: dict[str, DueItem]
    #: Items as due with the change that are new or altered, by key.
    after: dict[str, DueItem]
    plans: dict[int, PlanVersion]


def virtual(sub: Subscription, at: datetime, new_version: PlanVersion | None) -> Subscription:
    """`sub` with a plan change to `new_version` (None: a cancellation) scheduled at `at`: what `change_plan`
    or `cancel_subscription` with timing "now" would record, as `due_items` reads it."""
    if new_version is None:
        return replace(sub, ends_at=at, pending_plan_version_id=None, pending_change_at=None)
    return replace(sub, pending_plan_version_id=new_version.id, pending_change_at=at)


def change_items(
    engine: Engine, tenant_id: int, subscription_id: int, at: datetime, new_version: PlanVersion | None
) -> ChangeItems:
    """The due items a change (to `new_version`, or a cancellation when None) made at `at` alters."""
    eff = floor_quarter_hour(at)
    sub = get_subscription(engine, tenant_id, subscription_id, at=eff)
    operation = "cancel" if new_version is None else "change"
    if sub.state not in ALLOWED[operation]:
        raise FailedPrecondition(f"cannot {operation} subscription {sub.id}: it is {sub.state.value}")
    if sub.state is State.PAUSED and new_version is not None:  # pragma: no cover - ALLOWED says so already
        raise FailedPrecondition(f"subscription {sub.id} is paused; resume it first")
    if new_version is not None and new_version.id == sub.plan_version_id:
        raise FailedPrecondition(f"subscription {sub.id} is already on {new_version.label}")
    history = get_history(engine, tenant_id, subscription_id)
    if history and history[-1].effective_at > eff:
        raise InvalidArgument("at: a change is previewed at or after the subscription's last recorded change")
    ids = {h.plan_version_id for h in history} | {sub.plan_version_id}
    if sub.pending_plan_version_id is not None:
        ids.add(sub.pending_plan_version_id)
    plans = {v: get_plan_version_by_id(engine, tenant_id, v) for v in sorted(ids)}
    if new_version is not None:
        if new_version.currency != plans[sub.plan_version_id].currency:
            raise FailedPrecondition(
                f"{new_version.label} bills in {new_version.currency}, the subscription in "
                f"{plans[sub.plan_version_id].currency}"
            )
        plans[new_version.id] = new_version
    recorded = get_subscription(engine, tenant_id, subscription_id)
    now_items = {i.key: i for i in due_items(recorded, history, plans, eff)}
    then_items = {i.key: i for i in due_items(virtual(recorded, eff, new_version), history, plans, eff)}
    before = {k: i for k, i in now_items.items() if then_items.get(k) != i}
    after = {k: i for k, i in then_items.items() if now_items.get(k) != i}
    return ChangeItems(sub, eff, before, after, plans)


__all__ = ["ChangeItems", "change_items", "virtual"]
