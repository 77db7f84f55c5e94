"""SimulatePlan over a real socket: the domain's amounts as exact strings, bounded rows, precise errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.invoicing.test_simulation import CANDIDATE, CURRENT, FEB, T0, _world
from tests.tally.api.conftest import Api, pb


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def test_simulate_plan_from_a_plan_definition(api: Api) -> None:
    _world(api.engine, api.tenant, CURRENT)
    request = pb.SimulatePlanRequest(plan_json=json.dumps(CANDIDATE), start=_ts(T0), end=_ts(FEB), more_than_pct="10")
    got = api.call("SimulatePlan", request, api.read)  # a read key is enough
    assert (got.candidate, got.currency, got.customers_total, got.more_than_total) == ("pro (unsaved)", "USD", 3, 1)
    by = {c.customer: c for c in got.customers}
    assert (by["cus_1"].current, by["cus_1"].simulated, by["cus_1"].difference, by["cus_1"].pct) == (
        "21.32", "31.55", "10.23", "47.98"
    )  # fmt: skip
    assert [c.customer for c in got.more_than] == ["cus_1"]
    (plan,) = got.plans
    assert (plan.plan, plan.customers, plan.current, plan.simulated) == ("pro v1", 3, "81.35", "73.80")
    assert (got.current, got.simulated, got.difference) == ("81.35", "73.80", "-7.55")
    assert sum(b.customers for b in got.distribution) == 3 and got.distribution[5].label == "unchanged"
    capped = api.call("SimulatePlan", pb.SimulatePlanRequest(plan="pro@1", start=_ts(T0), end=_ts(FEB), limit=2))
    assert len(capped.customers) == 2 and capped.customers_total == 3
    assert {c.difference for c in capped.customers} == {"0.00"}  # the current plan against itself


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "exactly one of plan_json"),
        ({"plan": "pro@1", "plan_json": "{}"}, grpc.StatusCode.INVALID_ARGUMENT, "exactly one of plan_json"),
        ({"plan_json": "[1]"}, grpc.StatusCode.INVALID_ARGUMENT, "plan_json must be a JSON object"),
        ({"plan_json": "{"}, grpc.StatusCode.INVALID_ARGUMENT, "plan_json: not JSON"),
        ({"plan": "pro@1", "end": None}, grpc.StatusCode.INVALID_ARGUMENT, "start and end are required"),
        ({"plan": "pro@1", "end": T0 + timedelta(days=400)}, grpc.StatusCode.INVALID_ARGUMENT, "at most 366 days"),
        ({"plan": "pro@1", "more_than_pct": "ten"}, grpc.StatusCode.INVALID_ARGUMENT, "more_than_pct"),
        ({"plan": "pro@1", "more_than_pct": "-1"}, grpc.StatusCode.INVALID_ARGUMENT, "more_than_pct must be 0 or more"),
        ({"plan": "pro@1", "limit": 5000}, grpc.StatusCode.INVALID_ARGUMENT, "limit must be 0..1000"),
        ({"plan": "pro@7"}, grpc.StatusCode.NOT_FOUND, "v7 of plan 'pro'"),
        ({"plan": "pro"}, grpc.StatusCode.INVALID_ARGUMENT, "neither CODE@VERSION"),
        ({"plan": "pro@1", "current_plan": "nope"}, grpc.StatusCode.NOT_FOUND, "no plan 'nope'"),
    ],
)
def test_simulate_plan_refuses_bad_requests(
    api: Api, fields: dict[str, object], code: grpc.StatusCode, message: str
) -> None:
    _world(api.engine, api.tenant, CURRENT)
    values: dict[str, object] = {"start": T0, "end": FEB, **fields}
    request = pb.SimulatePlanRequest(
        **{k: _ts(v) if isinstance(v, datetime) else v for k, v in values.items() if v is not None}
    )
    err = api.fails("SimulatePlan", request)
    assert err.code() == code, err.details()
    assert message in (err.details() or "")


def test_simulate_plan_needs_a_read_scope(api: Api) -> None:
    err = api.fails("SimulatePlan", pb.SimulatePlanRequest(plan="pro@1", start=_ts(T0), end=_ts(FEB)), api.ingest)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_empty_window_is_an_empty_answer(api: Api) -> None:
    _world(api.engine, api.tenant, CURRENT)
    later = datetime(2026, 6, 1, tzinfo=UTC)
    got = api.call(
        "SimulatePlan", pb.SimulatePlanRequest(plan="pro@1", start=_ts(later), end=_ts(later + timedelta(days=1)))
    )
    assert got.customers_total == 3 and got.difference == "0.00"


def test_the_sdk_simulates_and_reports_leakage(api: Api) -> None:
    from decimal import Decimal

    from tally.sdk import BillingClient

    _world(api.engine, api.tenant, CURRENT)
    with BillingClient(api.server.target, api.read, timeout_s=30) as client:
        from_file = client.simulate_plan(CANDIDATE, T0, FEB, more_than_pct=Decimal(10))
        stored = client.simulate_plan("pro@1", T0, FEB)
        leakage = client.get_revenue_leakage(T0, FEB)
    assert (from_file.candidate, from_file.more_than_total, from_file.simulated) == ("pro (unsaved)", 1, "73.80")
    assert (stored.candidate, stored.difference) == ("pro v1", "0.00")
    # cus_0's tokens, which no published plan prices; cus_1's call before its subscription started
    assert [(r.category, r.customer, r.events) for r in leakage.rows] == [
        ("unpriced_meter", "cus_0", 1),
        ("no_subscription", "cus_1", 1),
    ]
