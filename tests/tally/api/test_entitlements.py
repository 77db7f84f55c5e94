"""CheckEntitlement and ListEntitlements over gRPC: scopes, bad input, and changes seen on the next check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.subscriptions import create_subscription
from tally.v1 import ingest_pb2, ingest_pb2_grpc
from tests.invoicing.conftest import publish
from tests.tally.api.conftest import Api, pb

FEATURES = [
    {"key": "sso", "kind": "boolean"},
    {"key": "calls", "kind": "quota", "meter": "api_calls", "amount": "3"},
    {"key": "gpu", "kind": "balance", "unit": "USD"},
]


@pytest.fixture
def subscribed(api: Api) -> int:
    """Customer cus_1 of tenant A on plan "pro" since an hour ago; returns the subscription id."""
    t = api.tenant.tenant_id
    start = datetime.now(UTC) - timedelta(hours=1)
    create_customer(api.engine, t, CustomerDefinition(external_id="cus_1", timezone="UTC"), start)
    publish(api.engine, t, "pro", [], features=FEATURES)
    publish(api.engine, t, "max", [], features=[{"key": "calls", "kind": "quota", "meter": "api_calls"}])
    return create_subscription(api.engine, t, "cus_1", "pro", start).id


def check(api: Api, feature: str, requested: str = "", key: str | None = None) -> pb.Entitlement:
    request = pb.CheckEntitlementRequest(customer="cus_1", feature=feature, requested=requested)
    answer: pb.Entitlement = api.call("CheckEntitlement", request, key=key)
    return answer


def test_check_with_an_ingest_key_and_list(api: Api, subscribed: int) -> None:
    calls = check(api, "calls", key=api.ingest)
    assert (calls.allowed, calls.kind, calls.granted, calls.used, calls.remaining) == (True, "quota", "3", "0", "3")
    assert calls.HasField("resets_at") and calls.resets_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    assert check(api, "sso", key=api.read).allowed
    listed = api.call("ListEntitlements", pb.ListEntitlementsRequest(customer="cus_1"), key=api.ingest)
    assert [(e.feature, e.kind, e.allowed) for e in listed.entitlements] == [
        ("calls", "quota", True), ("gpu", "balance", False), ("sso", "boolean", True),
    ]  # fmt: skip


def test_feature_not_granted_is_an_answer_not_an_error(api: Api, subscribed: int) -> None:
    missing = check(api, "export")
    assert (missing.allowed, missing.kind, missing.granted) == (False, "", "")
    assert "export" in missing.reason and "grants" in missing.reason


def test_bad_input_unknown_customer_and_other_tenant(api: Api, subscribed: int) -> None:
    err = api.fails("CheckEntitlement", pb.CheckEntitlementRequest(customer="cus_1", feature="calls", requested="-2"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "requested must be positive" in (err.details() or "")
    err = api.fails("CheckEntitlement", pb.CheckEntitlementRequest(customer="cus_1", feature="calls", requested="x"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "requested" in (err.details() or "")
    err = api.fails("CheckEntitlement", pb.CheckEntitlementRequest(customer="cus_1"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "feature is required" in (err.details() or "")
    err = api.fails("CheckEntitlement", pb.CheckEntitlementRequest(customer="ghost", feature="sso"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "ghost" in (err.details() or "")
    err = api.fails("ListEntitlements", pb.ListEntitlementsRequest(customer="cus_1"), key=api.other.key)
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_ingest_over_grpc_raises_used_without_waiting(api: Api, subscribed: int) -> None:
    assert check(api, "calls").used == "0"  # loaded: from now on answered from memory
    stub = ingest_pb2_grpc.IngestServiceStub(api.channel)  # type: ignore[no-untyped-call]
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    events = [ingest_pb2.Event(event_id=f"e{i}", customer="cus_1", meter="api_calls", timestamp=ts) for i in range(3)]
    ack = stub.IngestBatch(ingest_pb2.EventBatch(events=events), metadata=api.tenant.metadata)
    assert ack.accepted == 3
    used_up = check(api, "calls")  # no sleep: the commit hook ran before the ack
    assert (used_up.allowed, used_up.used, used_up.remaining) == (False, "3", "0")
    assert "quota of 3 api_calls used up until" in used_up.reason
    ack = stub.IngestBatch(ingest_pb2.EventBatch(events=events[:1]), metadata=api.tenant.metadata)
    assert ack.duplicate == 1
    assert check(api, "calls").used == "3"  # a resent event is not counted twice


def test_plan_change_through_the_api_takes_effect_on_the_next_check(api: Api, subscribed: int) -> None:
    assert check(api, "calls").granted == "3"
    api.call("ChangePlan", pb.ChangePlanRequest(id=subscribed, plan="max"))
    unlimited = check(api, "calls", requested="1000000")
    assert (unlimited.allowed, unlimited.granted, unlimited.remaining) == (True, "", "")
    assert not check(api, "sso").allowed


def test_top_up_through_the_api_opens_a_balance_feature_at_once(api: Api, subscribed: int) -> None:
    closed = check(api, "gpu")
    assert not closed.allowed and "top up" in closed.reason
    api.call("TopUpWallet", pb.TopUpWalletRequest(top_up_id="t1", customer="cus_1", amount="20", unit="USD"))
    opened = check(api, "gpu", requested="5")
    assert (opened.allowed, opened.granted, opened.remaining) == (True, "20.00", "20.00")
