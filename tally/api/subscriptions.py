"""Subscriptions, their changes, and usage queries.

Reads show a subscription as of now: a trial that has ended reads `active` and a change scheduled for
a period end that has passed is applied, exactly as billing sees it, even though the history row is
written down only by the next operation on it. Every successful change tells the in-process caches
(`ApiBase.changed`), so entitlements follow a plan change at once.

ChangePlan reports the split of the current period as exact fractions. The invoice run prorates each
flat fee by its own price's basis (day or second); the response uses the basis of each plan's first
flat charge (by day when a plan has none), which is the split the customer sees on the fee lines.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from invoicing.catalog import PlanVersion, ProrationBasis, get_customer, get_plan_version_by_id, zone
from invoicing.subscriptions import (
    Subscription,
    as_of,
    cancel_subscription,
    change_plan,
    create_subscription,
    get_subscription,
    pause_subscription,
    resume_subscription,
    select_subscriptions,
    subscription_from_row,
    withdraw_scheduled,
)
from invoicing.subscriptions import Timing as ChangeTiming
from invoicing.tables import customers, subscriptions
from metering.errors import InvalidArgument
from metering.tenant import Principal
from metering.usage import Window, usage
from rating.flat import FlatPrice
from tally.api.base import (
    ADMIN,
    READ,
    ApiBase,
    encode_token,
    instant,
    int_token,
    now,
    page_size,
    positive_id,
    required,
    rpc,
    timestamp,
)
from tally.api.convert import PlanRefs, subscription_pb, subscriptions_pb, usage_row_pb
from tally.v1 import billing_pb2 as pb

TIMINGS: tuple[ChangeTiming, ...] = ("now", "period_end")
WINDOWS = {"": None, "hour": Window.HOUR, "day": Window.DAY, "month": Window.MONTH}


def _timing(text: str) -> ChangeTiming:
    if not text:
        return "now"
    for t in TIMINGS:
        if text == t:
            return t
    raise InvalidArgument(f"timing: {text!r} is not now or period_end")


def _version(number: int, field: str = "plan_version") -> int | None:
    if number < 0:
        raise InvalidArgument(f"{field} must be 0 (the latest published) or a version number, got {number}")
    return number or None


def _basis(plan: PlanVersion) -> ProrationBasis:
    """The proration basis of the plan's first flat fee (day when it has none)."""
    for charge in plan.charges:
        price = charge.price
        if isinstance(price, FlatPrice):
            return price.proration
    return "day"


def _fraction(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


class SubscriptionRpcs(ApiBase):
    def _out(self, tenant_id: int, sub: Subscription) -> pb.Subscription:
        return subscription_pb(as_of(sub, now()), PlanRefs(self.engine, tenant_id))

    @rpc(ADMIN)
    def CreateSubscription(self, principal: Principal, request: pb.CreateSubscriptionRequest) -> pb.Subscription:
        customer = required(request.customer, "customer")
        plan = required(request.plan, "plan")
        start = instant(request, "start", now())
        assert start is not None
        sub = create_subscription(
            self.engine,
            principal.tenant_id,
            customer,
            plan,
            start,
            version=_version(request.plan_version),
            anchor=instant(request, "anchor"),
            end=instant(request, "end"),
            actor=f"api key {principal.key_id}",
        )
        self.changed(principal.tenant_id, sub.customer_external_id)
        return self._out(principal.tenant_id, sub)

    @rpc(READ)
    def GetSubscription(self, principal: Principal, request: pb.GetSubscriptionRequest) -> pb.Subscription:
        sub = get_subscription(self.engine, principal.tenant_id, positive_id(request.id))
        return self._out(principal.tenant_id, sub)

    @rpc(READ)
    def ListSubscriptions(
        self, principal: Principal, request: pb.ListSubscriptionsRequest
    ) -> pb.ListSubscriptionsResponse:
        t = principal.tenant_id
        size = page_size(request.page_size)
        after = int_token(request.page_token)
        query = select_subscriptions(t)
        if request.customer:
            get_customer(self.engine, t, request.customer)  # NOT_FOUND names an unknown customer
            query = query.where(customers.c.external_id == request.customer)
        if after is not None:
            query = query.where(subscriptions.c.id > after)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(subscriptions.c.id).limit(size + 1)).all()
        at = now()
        subs = [as_of(subscription_from_row(r), at) for r in rows[:size]]
        token = encode_token(subs[-1].id) if len(rows) > size else ""
        return pb.ListSubscriptionsResponse(subscriptions=subscriptions_pb(self.engine, t, subs), next_page_token=token)

    @rpc(ADMIN)
    def ChangePlan(self, principal: Principal, request: pb.ChangePlanRequest) -> pb.ChangePlanResponse:
        t = principal.tenant_id
        sub_id = positive_id(request.id)
        plan = required(request.plan, "plan")
        timing = _timing(request.timing)
        version = _version(request.plan_version)
        at = instant(request, "at", now())
        assert at is not None
        before = get_subscription(self.engine, t, sub_id, at=at)  # NOT_FOUND first; the old plan's basis
        change = change_plan(
            self.engine, t, sub_id, plan, at, version=version, timing=timing,
            actor=f"api key {principal.key_id}", reason=request.reason,
        )  # fmt: skip
        self.changed(t, change.subscription.customer_external_id)
        subscription = self._out(t, change.subscription)
        if change.proration is None:  # scheduled: it takes effect when the period ends
            when = timestamp(change.subscription.pending_change_at)
            return pb.ChangePlanResponse(subscription=subscription, effective_at=when)
        old_plan = get_plan_version_by_id(self.engine, t, before.plan_version_id)
        new_plan = get_plan_version_by_id(self.engine, t, change.subscription.plan_version_id)
        return pb.ChangePlanResponse(
            subscription=subscription,
            effective_at=timestamp(change.effective_at),
            old_fraction=_fraction(change.proration.fractions(_basis(old_plan))[0]),
            new_fraction=_fraction(change.proration.fractions(_basis(new_plan))[1]),
        )

    @rpc(ADMIN)
    def PauseSubscription(self, principal: Principal, request: pb.SubscriptionActionRequest) -> pb.Subscription:
        return self._lifecycle(principal, request, pause_subscription)

    @rpc(ADMIN)
    def ResumeSubscription(self, principal: Principal, request: pb.SubscriptionActionRequest) -> pb.Subscription:
        return self._lifecycle(principal, request, resume_subscription)

    @rpc(ADMIN)
    def WithdrawScheduledChange(
        self, principal: Principal, request: pb.SubscriptionActionRequest
    ) -> pb.Subscription:
        return self._lifecycle(principal, request, withdraw_scheduled)

    def _lifecycle(
        self, principal: Principal, request: pb.SubscriptionActionRequest, operation: Callable[..., Subscription]
    ) -> pb.Subscription:
        at = instant(request, "at", now())
        assert at is not None
        sub = operation(
            self.engine, principal.tenant_id, positive_id(request.id), at,
            actor=f"api key {principal.key_id}", reason=request.reason,
        )  # fmt: skip
        self.changed(principal.tenant_id, sub.customer_external_id)
        return self._out(principal.tenant_id, sub)

    @rpc(ADMIN)
    def CancelSubscription(self, principal: Principal, request: pb.CancelSubscriptionRequest) -> pb.Subscription:
        timing = _timing(request.timing)
        at = instant(request, "at", now())
        assert at is not None
        sub = cancel_subscription(
            self.engine, principal.tenant_id, positive_id(request.id), at, timing=timing,
            actor=f"api key {principal.key_id}", reason=request.reason,
        )  # fmt: skip
        self.changed(principal.tenant_id, sub.customer_external_id)
        return self._out(principal.tenant_id, sub)

    # --- usage -------------------------------------------------------------------------------------------------
    @rpc(READ)
    def QueryUsage(self, principal: Principal, request: pb.QueryUsageRequest) -> pb.QueryUsageResponse:
        customer = required(request.customer, "customer")
        meter = required(request.meter, "meter")
        get_customer(self.engine, principal.tenant_id, customer)  # NOT_FOUND names an unknown customer
        start, end = instant(request, "start"), instant(request, "end")
        if start is None or end is None:
            raise InvalidArgument(f"{'start' if start is None else 'end'} is required (a 15-minute boundary)")
        if end <= start:
            raise InvalidArgument(f"end {end.isoformat()} must be after start {start.isoformat()}")
        for field, moment in (("start", start), ("end", end)):
            if moment.minute % 15 or moment.second or moment.microsecond:
                raise InvalidArgument(
                    f"{field} {moment.isoformat()} is not on a 15-minute boundary (usage is kept per quarter hour)"
                )
        tz = request.timezone or "UTC"
        try:
            zone(tz)
        except InvalidArgument as exc:
            raise InvalidArgument(f"timezone: {exc}") from None
        if request.window not in WINDOWS:
            raise InvalidArgument(f'window: {request.window!r} is not one of "", hour, day, month')
        rows = usage(
            self.engine,
            principal.tenant_id,
            customer,
            meter,
            start,
            end,
            group_by=request.group_by,
            window=WINDOWS[request.window],
            tz=tz,
            windows_max=self.limits.usage_windows_max,
            buckets_max=self.limits.usage_buckets_max,
        )
        return pb.QueryUsageResponse(rows=[usage_row_pb(r) for r in rows])


__all__ = ["SubscriptionRpcs"]
