"""BillingService subscriptions and usage over a real server.

The timeline is next year, so "as of now" (what reads show) is before every instant the tests set:
the subscriptions read exactly as recorded, whatever day the suite runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import grpc
import pytest

from invoicing.catalog import CustomerDefinition, create_customer, get_plan_version
from invoicing.events import head
from metering.meter import Aggregation, MeterDefinition, create_meter
from tally.api.base import encode_token, timestamp
from tests.invoicing.conftest import flat, plan_json, publish, published, write_events
from tests.tally.api.conftest import Api, pb

START = datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC)  # a 31-day January, in the future
FEB = START.replace(month=2)


def ts(moment: datetime) -> object:
    return timestamp(moment)


@dataclass
class Setup:
    api: Api
    changes: list[tuple[int, str]]  # what the entitlement caches were told

    def call(self, method: str, request: object, key: str | None = None) -> object:
        return self.api.call(method, request, key)

    def fails(self, method: str, request: object) -> grpc.RpcError:
        return self.api.fails(method, request)


@pytest.fixture
def s(api: Api) -> Iterator[Setup]:
    t = api.tenant.tenant_id
    for external_id in ("cus_1", "cus_2"):
        create_customer(api.engine, t, CustomerDefinition(external_id=external_id), START)
    published(api.engine, t, "basic")
    published(api.engine, t, "pro", charges=[{"code": "base", "kind": "flat", "price": flat("90")}])
    published(api.engine, t, "trial", trial_days=14)
    published(api.engine, t, "eur", currency="EUR")
    changes: list[tuple[int, str]] = []
    api.server.running.billing.listeners.append(lambda tenant, customer: changes.append((tenant, customer)))
    yield Setup(api, changes)


def _create(s: Setup, customer: str = "cus_1", plan: str = "basic", **fields: Any) -> pb.Subscription:
    request = pb.CreateSubscriptionRequest(customer=customer, plan=plan, start=timestamp(START), **fields)
    result = s.api.call("CreateSubscription", request)
    assert isinstance(result, pb.Subscription)
    return result


def _get(s: Setup, sub_id: int) -> pb.Subscription:
    result = s.api.call("GetSubscription", pb.GetSubscriptionRequest(id=sub_id), key=s.api.read)
    assert isinstance(result, pb.Subscription)
    return result


def test_create_and_get(s: Setup) -> None:
    t = s.api.tenant.tenant_id
    sub = _create(s)
    assert (sub.customer, sub.plan, sub.plan_version, sub.state) == ("cus_1", "basic", 1, "active")
    assert sub.started_at == ts(START) and sub.billing_anchor == ts(START)
    assert not sub.HasField("trial_ends_at") and not sub.HasField("ends_at") and not sub.HasField("pending_change_at")
    assert (sub.pending_plan, sub.pending_plan_version) == ("", 0)
    assert _get(s, sub.id) == sub
    trial = _create(s, "cus_2", "trial", end=timestamp(START + timedelta(days=90)))
    assert (trial.state, trial.trial_ends_at, trial.billing_anchor) == (
        "trial",
        ts(START + timedelta(days=14)),
        ts(START + timedelta(days=14)),
    )
    assert trial.ends_at == ts(START + timedelta(days=90))
    anchored = _create(s, "cus_2", "pro", anchor=timestamp(START + timedelta(days=9, minutes=20)))
    assert anchored.billing_anchor == ts(START + timedelta(days=9, minutes=15))  # floored to the quarter hour
    assert s.changes == [(t, "cus_1"), (t, "cus_2"), (t, "cus_2")]


def test_create_without_start_starts_now(s: Setup) -> None:
    before = datetime.now(UTC)
    sub = s.call("CreateSubscription", pb.CreateSubscriptionRequest(customer="cus_1", plan="pro"))
    assert isinstance(sub, pb.Subscription)
    started = sub.started_at.ToDatetime(tzinfo=UTC)
    assert before - timedelta(minutes=15) < started <= datetime.now(UTC) and started.minute % 15 == 0


CREATE_REFUSALS: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
    ({"plan": "basic"}, grpc.StatusCode.INVALID_ARGUMENT, "customer is required"),
    ({"customer": "cus_1"}, grpc.StatusCode.INVALID_ARGUMENT, "plan is required"),
    ({"customer": "cus_1", "plan": "basic", "plan_version": -1}, grpc.StatusCode.INVALID_ARGUMENT, "plan_version"),
    (
        {"customer": "cus_1", "plan": "basic", "end": timestamp(START)},
        grpc.StatusCode.INVALID_ARGUMENT,
        "must be after the start",
    ),
    ({"customer": "ghost", "plan": "basic"}, grpc.StatusCode.NOT_FOUND, "no customer 'ghost'"),
    ({"customer": "cus_1", "plan": "gold"}, grpc.StatusCode.NOT_FOUND, "no published plan 'gold'"),
    ({"customer": "cus_1", "plan": "basic", "plan_version": 9}, grpc.StatusCode.NOT_FOUND, "v9 of plan 'basic'"),
    ({"customer": "cus_1", "plan": "eur"}, grpc.StatusCode.FAILED_PRECONDITION, "bills in EUR"),
]


def test_create_refuses_and_writes_nothing(s: Setup) -> None:
    for request_fields, code, fragment in CREATE_REFUSALS:
        fields = {"start": timestamp(START), **request_fields}
        err = s.fails("CreateSubscription", pb.CreateSubscriptionRequest(**fields))
        assert err.code() == code and fragment in (err.details() or ""), (fragment, err.details())
    listed = s.call("ListSubscriptions", pb.ListSubscriptionsRequest())
    assert isinstance(listed, pb.ListSubscriptionsResponse) and list(listed.subscriptions) == []
    assert head(s.api.engine, s.api.tenant.tenant_id) == 0 and s.changes == []


def test_get_missing(s: Setup) -> None:
    err = s.fails("GetSubscription", pb.GetSubscriptionRequest(id=999))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no subscription 999" in (err.details() or "")
    err = s.fails("GetSubscription", pb.GetSubscriptionRequest(id=0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "id must be an id from 1 to" in (err.details() or "")


def test_list_pages_and_filters(s: Setup) -> None:
    ids = [_create(s, customer).id for customer in ("cus_1", "cus_2", "cus_1", "cus_2", "cus_1")]
    seen: list[int] = []
    token = ""
    while True:
        page = s.call("ListSubscriptions", pb.ListSubscriptionsRequest(page_size=2, page_token=token), key=s.api.read)
        assert isinstance(page, pb.ListSubscriptionsResponse) and len(page.subscriptions) <= 2
        seen += [x.id for x in page.subscriptions]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert seen == ids
    mine: list[int] = []
    token = ""
    while True:
        page = s.call("ListSubscriptions", pb.ListSubscriptionsRequest(customer="cus_1", page_size=2, page_token=token))
        assert isinstance(page, pb.ListSubscriptionsResponse)
        assert {x.customer for x in page.subscriptions} <= {"cus_1"}
        mine += [x.id for x in page.subscriptions]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert mine == [ids[0], ids[2], ids[4]]
    err = s.fails("ListSubscriptions", pb.ListSubscriptionsRequest(customer="ghost"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no customer 'ghost'" in (err.details() or "")
    err = s.fails("ListSubscriptions", pb.ListSubscriptionsRequest(page_token=encode_token("cus_1")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in (err.details() or "")


def _change(s: Setup, sub_id: int, plan: str, at: datetime, timing: str = "") -> pb.ChangePlanResponse:
    request = pb.ChangePlanRequest(id=sub_id, plan=plan, at=timestamp(at), timing=timing, reason="upgrade")
    result = s.call("ChangePlan", request)
    assert isinstance(result, pb.ChangePlanResponse)
    return result


def test_change_plan_now_reports_the_split(s: Setup) -> None:
    t = s.api.tenant.tenant_id
    sub = _create(s)
    jan11 = START + timedelta(days=10)
    result = _change(s, sub.id, "pro", jan11 + timedelta(minutes=7))
    assert (result.subscription.plan, result.subscription.plan_version) == ("pro", 1)
    assert result.effective_at == ts(jan11)  # floored to the quarter hour
    # Both plans prorate by day: 10 of January's 31 days on the old plan, 21 on the new.
    assert (result.old_fraction, result.new_fraction) == ("10/31", "21/31")
    assert _get(s, sub.id) == result.subscription
    assert s.changes == [(t, "cus_1"), (t, "cus_1")]


def test_change_plan_split_uses_each_plans_basis(s: Setup) -> None:
    t = s.api.tenant.tenant_id
    seconds = {**flat("60"), "proration": "second"}
    publish(s.api.engine, t, "metered", [{"code": "base", "kind": "flat", "price": seconds}])
    sub = _create(s)
    noon = START + timedelta(days=10, hours=12)
    result = _change(s, sub.id, "metered", noon)
    # Old plan by day: Jan 1-10 (the day of the change goes to the new plan); new plan by second.
    assert result.old_fraction == "10/31"
    new = Fraction(int((FEB - noon).total_seconds()), int((FEB - START).total_seconds()))
    assert result.new_fraction == f"{new.numerator}/{new.denominator}" == "41/62"


def test_change_plan_at_period_end(s: Setup) -> None:
    sub = _create(s)
    result = _change(s, sub.id, "pro", START + timedelta(days=3), timing="period_end")
    assert result.effective_at == ts(FEB) and (result.old_fraction, result.new_fraction) == ("", "")
    after = result.subscription
    assert (after.plan, after.pending_plan, after.pending_plan_version, after.pending_change_at) == (
        "basic",
        "pro",
        1,
        ts(FEB),
    )
    assert _get(s, sub.id) == after


CHANGE_REFUSALS: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
    ({"id": 0, "plan": "pro"}, grpc.StatusCode.INVALID_ARGUMENT, "id must be an id from 1 to"),
    ({"plan": ""}, grpc.StatusCode.INVALID_ARGUMENT, "plan is required"),
    ({"plan": "pro", "timing": "later"}, grpc.StatusCode.INVALID_ARGUMENT, "timing: 'later' is not now or"),
    ({"plan": "pro", "plan_version": -2}, grpc.StatusCode.INVALID_ARGUMENT, "plan_version must be 0"),
    ({"id": 999, "plan": "pro"}, grpc.StatusCode.NOT_FOUND, "no subscription 999"),
    ({"plan": "gold"}, grpc.StatusCode.NOT_FOUND, "no published plan 'gold'"),
    ({"plan": "basic"}, grpc.StatusCode.FAILED_PRECONDITION, "already on basic v1"),
    ({"plan": "eur"}, grpc.StatusCode.FAILED_PRECONDITION, "bills in EUR"),
    (
        {"plan": "pro", "at": timestamp(START - timedelta(days=1))},
        grpc.StatusCode.FAILED_PRECONDITION,
        "append-only",
    ),
]


def test_change_plan_refuses_and_changes_nothing(s: Setup) -> None:
    sub = _create(s)
    before, events = _get(s, sub.id), head(s.api.engine, s.api.tenant.tenant_id)
    told = list(s.changes)
    for fields, code, fragment in CHANGE_REFUSALS:
        request = pb.ChangePlanRequest(**{"id": sub.id, "at": timestamp(START + timedelta(days=2)), **fields})
        err = s.fails("ChangePlan", request)
        assert err.code() == code and fragment in (err.details() or ""), (fragment, err.details())
        assert _get(s, sub.id) == before
        assert head(s.api.engine, s.api.tenant.tenant_id) == events and s.changes == told


def _action(s: Setup, method: str, sub_id: int, at: datetime, **fields: Any) -> pb.Subscription:
    request_type = pb.CancelSubscriptionRequest if method == "CancelSubscription" else pb.SubscriptionActionRequest
    result = s.call(method, request_type(id=sub_id, at=timestamp(at), **fields))
    assert isinstance(result, pb.Subscription)
    return result


def test_pause_resume_cancel(s: Setup) -> None:
    t = s.api.tenant.tenant_id
    sub = _create(s, "cus_2")
    paused = _action(s, "PauseSubscription", sub.id, START + timedelta(days=5), reason="card expired")
    assert paused.state == "paused"
    resumed = _action(s, "ResumeSubscription", sub.id, START + timedelta(days=6))
    assert resumed.state == "active"
    ending = _action(s, "CancelSubscription", sub.id, START + timedelta(days=7), timing="period_end")
    assert (ending.state, ending.ends_at) == ("active", ts(FEB))
    cancelled = _action(s, "CancelSubscription", sub.id, START + timedelta(days=8))
    assert (cancelled.state, cancelled.ends_at) == ("cancelled", ts(START + timedelta(days=8)))
    assert _get(s, sub.id) == cancelled
    assert s.changes == [(t, "cus_2")] * 5


def test_a_scheduled_change_or_end_can_be_withdrawn_and_billing_goes_on(s: Setup) -> None:
    sub = _create(s, "cus_2")
    _change(s, sub.id, "pro", START + timedelta(days=3), timing="period_end")
    _action(s, "CancelSubscription", sub.id, START + timedelta(days=4), timing="period_end")
    kept = _action(s, "WithdrawScheduledChange", sub.id, START + timedelta(days=5), reason="customer stays")
    assert (kept.state, kept.plan, kept.pending_plan, kept.HasField("ends_at")) == ("active", "basic", "", False)
    assert kept.HasField("pending_change_at") is False and _get(s, sub.id) == kept
    again = pb.SubscriptionActionRequest(id=sub.id, at=timestamp(START + timedelta(days=6)))
    err = s.api.fails("WithdrawScheduledChange", again)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "nothing scheduled" in (err.details() or "")
    # Past the old date nothing happened: still active on basic, and cancelling now still works.
    later = _action(s, "CancelSubscription", sub.id, FEB + timedelta(days=2))
    assert (later.state, later.plan) == ("cancelled", "basic")


ACTION_REFUSALS: list[tuple[str, dict[str, Any], grpc.StatusCode, str]] = [
    ("PauseSubscription", {}, grpc.StatusCode.FAILED_PRECONDITION, "cannot pause subscription"),
    ("ResumeSubscription", {}, grpc.StatusCode.FAILED_PRECONDITION, "cannot resume subscription"),
    ("CancelSubscription", {}, grpc.StatusCode.FAILED_PRECONDITION, "cannot cancel subscription"),
    ("PauseSubscription", {"id": 999}, grpc.StatusCode.NOT_FOUND, "no subscription 999"),
    ("ResumeSubscription", {"id": -1}, grpc.StatusCode.INVALID_ARGUMENT, "id must be an id from 1 to"),
    ("CancelSubscription", {"id": 999}, grpc.StatusCode.NOT_FOUND, "no subscription 999"),
    ("CancelSubscription", {"timing": "soon"}, grpc.StatusCode.INVALID_ARGUMENT, "timing: 'soon'"),
]


def test_actions_refused_change_nothing(s: Setup) -> None:
    sub = _create(s)
    _action(s, "CancelSubscription", sub.id, START + timedelta(days=1))  # cancelled is final
    other = _create(s, "cus_2")  # a bad timing is refused on an active one too
    before = (_get(s, sub.id), _get(s, other.id))
    events, told = head(s.api.engine, s.api.tenant.tenant_id), list(s.changes)
    for method, fields, code, fragment in ACTION_REFUSALS:
        target = other.id if fields.get("timing") else sub.id
        request_type = pb.CancelSubscriptionRequest if method == "CancelSubscription" else pb.SubscriptionActionRequest
        request = request_type(**{"id": target, "at": timestamp(START + timedelta(days=2)), **fields})
        err = s.fails(method, request)
        assert err.code() == code and fragment in (err.details() or ""), (fragment, err.details())
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            assert "it is cancelled" in (err.details() or "")
        assert (_get(s, sub.id), _get(s, other.id)) == before
        assert head(s.api.engine, s.api.tenant.tenant_id) == events and s.changes == told


def test_reads_show_the_subscription_as_of_now(s: Setup) -> None:
    """A scheduled change whose instant has passed reads as applied, as billing sees it."""
    past = datetime(2025, 1, 1, tzinfo=UTC)
    sub = s.call(
        "CreateSubscription", pb.CreateSubscriptionRequest(customer="cus_1", plan="trial", start=timestamp(past))
    )
    assert isinstance(sub, pb.Subscription)
    assert (sub.state, sub.trial_ends_at) == ("active", ts(past + timedelta(days=14)))  # its trial is over
    changed = _change(s, sub.id, "pro", past + timedelta(days=20), timing="period_end")
    assert (changed.subscription.plan, changed.subscription.pending_plan) == ("pro", "")
    assert not changed.subscription.HasField("pending_change_at")
    assert changed.effective_at == ts(past + timedelta(days=14 + 31))  # anchor Jan 15: the period ends Feb 15


# --- usage -----------------------------------------------------------------------------------------------------


def _usage(s: Setup, **fields: Any) -> list[tuple[str, dict[str, str], str, int]]:
    request = pb.QueryUsageRequest(customer="cus_1", start=timestamp(START), end=timestamp(FEB), **fields)
    response = s.call("QueryUsage", request, key=s.api.read)
    assert isinstance(response, pb.QueryUsageResponse)
    return [
        (
            r.window_start.ToDatetime(tzinfo=UTC).isoformat() if r.HasField("window_start") else "",
            dict(r.group),
            r.quantity,
            r.events,
        )
        for r in response.rows
    ]


def test_query_usage(s: Setup) -> None:
    t = s.api.tenant.tenant_id
    create_meter(
        s.api.engine, t, MeterDefinition(code="gpu", aggregation=Aggregation.SUM, value_scale=2, group_by=["region"])
    )
    day = timedelta(days=1)
    write_events(
        s.api.engine,
        t,
        [
            ("g1", "cus_1", "gpu", START + timedelta(hours=1), 150, '{"region":"eu"}'),
            ("g2", "cus_1", "gpu", START + timedelta(hours=2), 25, '{"region":"us"}'),
            ("g3", "cus_1", "gpu", START + day + timedelta(hours=23, minutes=30), 1000, '{"region":"eu"}'),
            ("g4", "cus_2", "gpu", START + timedelta(hours=1), 999_999, '{"region":"eu"}'),  # another customer
            ("g5", "cus_1", "gpu", FEB, 7, '{"region":"eu"}'),  # outside the range (end is exclusive)
        ],
    )
    assert _usage(s, meter="gpu") == [("", {}, "11.75", 3)]
    assert _usage(s, meter="gpu", group_by=True) == [
        ("", {"region": "eu"}, "11.50", 2),
        ("", {"region": "us"}, "0.25", 1),
    ]
    day1, day2 = START.isoformat(), (START + day).isoformat()
    assert _usage(s, meter="gpu", window="day") == [(day1, {}, "1.75", 2), (day2, {}, "10.00", 1)]
    # In Tokyo (UTC+9) the last event (day 2, 23:30 UTC) falls on local day 3; windows start at local midnight.
    tokyo = _usage(s, meter="gpu", window="day", timezone="Asia/Tokyo")
    assert [(w, q) for w, _, q, _ in tokyo] == [
        ((START - timedelta(hours=9)).isoformat(), "1.75"),  # local Jan 1 started at 15:00 UTC the day before
        ((START + 2 * day - timedelta(hours=9)).isoformat(), "10.00"),
    ]
    assert sum(Decimal(q) for _, _, q, _ in tokyo) == Decimal("11.75")
    assert _usage(s, meter="api_calls") == []  # no usage: no rows


USAGE_REFUSALS: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
    ({"customer": "", "meter": "api_calls"}, grpc.StatusCode.INVALID_ARGUMENT, "customer is required"),
    ({"meter": ""}, grpc.StatusCode.INVALID_ARGUMENT, "meter is required"),
    ({"meter": "api_calls", "start": None}, grpc.StatusCode.INVALID_ARGUMENT, "start is required"),
    ({"meter": "api_calls", "end": None}, grpc.StatusCode.INVALID_ARGUMENT, "end is required"),
    ({"meter": "api_calls", "end": timestamp(START)}, grpc.StatusCode.INVALID_ARGUMENT, "must be after start"),
    (
        {"meter": "api_calls", "start": timestamp(START + timedelta(minutes=5))},
        grpc.StatusCode.INVALID_ARGUMENT,
        "is not on a 15-minute boundary",
    ),
    ({"meter": "api_calls", "window": "week"}, grpc.StatusCode.INVALID_ARGUMENT, "window: 'week'"),
    (
        {"meter": "api_calls", "timezone": "Mars/Base"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "timezone: unknown time zone",
    ),
    ({"meter": "nope"}, grpc.StatusCode.NOT_FOUND, "no meter 'nope'"),
    ({"customer": "ghost", "meter": "api_calls"}, grpc.StatusCode.NOT_FOUND, "no customer 'ghost'"),
]


def test_query_usage_refuses_bad_input(s: Setup) -> None:
    for fields, code, fragment in USAGE_REFUSALS:
        request_fields: dict[str, Any] = {"customer": "cus_1", "start": timestamp(START), "end": timestamp(FEB)}
        request_fields.update(fields)
        request = pb.QueryUsageRequest(**{k: v for k, v in request_fields.items() if v is not None})
        err = s.fails("QueryUsage", request)
        assert err.code() == code and fragment in (err.details() or ""), (fragment, err.details())


def test_plan_version_request(s: Setup) -> None:
    """plan_version picks an older published version; 0 takes the latest."""
    t = s.api.tenant.tenant_id
    s.call("CreatePlan", pb.CreatePlanRequest(definition_json=json.dumps(plan_json("basic", trial_days=5))))
    s.call("PublishPlan", pb.PublishPlanRequest(code="basic"))
    assert get_plan_version(s.api.engine, t, "basic").version == 2
    latest = _create(s, plan="basic")
    older = _create(s, plan="basic", plan_version=1)
    assert (latest.plan_version, latest.state, older.plan_version, older.state) == (2, "trial", 1, "active")
