# ruff: noqa: E501  (the table reads best one RPC per line)
"""Tenancy and scopes for EVERY BillingService RPC, table-driven.

For each RPC the table holds a request that touches tenant A's data. Then:
- tenant B's admin key never sees A's data: a named resource is NOT_FOUND, a list comes back without
  A's items (checked by looking for A's ids in the response), a create lands in B only;
- a read-only key is refused every admin RPC with PERMISSION_DENIED naming the scope;
- an ingest-only key is refused every RPC except CheckEntitlement.
A test also checks the table covers every method of the service descriptor, so an RPC added to the
proto without an entry here fails the suite.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from invoicing.catalog import CustomerDefinition, create_customer, create_plan, publish_plan, set_billing_profile
from invoicing.documents import run_cycle
from invoicing.ledger.ledger import Ledger
from invoicing.subscriptions import create_subscription
from tally.api.service import scopes
from tally.v1 import billing_pb2
from tests.tally.api.conftest import Api, pb

T0 = datetime(2026, 10, 1, tzinfo=UTC)
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class World:
    """Tenant A's resources, as the ids and codes requests refer to."""

    customer: str
    subscription_id: int
    invoice_id: int
    wallet_id: int
    endpoint_id: int
    alert_id: int
    discount_id: int = 0
    dispute_id: int = 0


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def build_world(api: Api) -> World:
    engine, tid = api.engine, api.tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="cus_a", name="Ada"), T0)
    set_billing_profile(engine, tid, {"legal_name": "Seller of cus_a"}, T0)
    plan = {
        "code": "pro",
        "currency": "USD",
        "charges": [
            {"code": "base", "kind": "flat", "price": {"model": "flat", "amount_per_period": "30",
                                                      "billing": "in_advance", "currency": "USD"}},
            {"code": "calls", "kind": "usage", "meter": "api_calls",
             "price": {"model": "per_unit", "unit_amount": "0.01", "currency": "USD"}},
        ],
        "features": [{"key": "sso", "kind": "boolean"}],
        # Earns A's points unit; its code names cus_a, so B seeing A's units, rates or credits would be caught.
        "earning": [{"code": "calls", "meter": "api_calls", "unit": "cus_a_pts", "points_per_unit": "1"}],
    }  # fmt: skip
    create_plan(engine, tid, plan, T0)
    publish_plan(engine, tid, "pro", T0)
    sub = create_subscription(engine, tid, "cus_a", "pro", T0)
    run_cycle(engine, tid, AS_OF)
    invoice_id = api.call("ListInvoices", pb.ListInvoicesRequest()).invoices[0].id
    ledger = Ledger(engine, tid)
    ledger.top_up("top_a", "cus_a", ledger.amount("10", "USD"), "USD")
    ledger.define_points_unit("cus_a_pts", 0)
    ledger.set_rate("USD", "cus_a_pts", "10", T0, AS_OF)
    wallet = ledger.wallet("cus_a", "USD")
    endpoint = api.call("CreateWebhookEndpoint", pb.CreateWebhookEndpointRequest(url="http://127.0.0.1:9/hook"))
    alert = api.call(
        "CreateAlert",
        pb.CreateAlertRequest(alert=pb.Alert(customer="cus_a", kind="usage", meter="api_calls", threshold="100")),
    )
    # A's coupon code names cus_a, so B seeing it in ListCoupons would be a leak the check below catches.
    api.call("CreateCoupon", pb.CreateCouponRequest(coupon=pb.Coupon(code="cus_a.welcome", kind="percent", percent="10")))
    discount = api.call("ApplyCoupon", pb.ApplyCouponRequest(coupon="cus_a.welcome", customer="cus_a"))
    return World("cus_a", sub.id, invoice_id, wallet, endpoint.id, alert.id, discount.id)


def with_dispute(api: Api, world: World) -> World:
    """`world` with a dispute on a line of A's second document, issued for it: B must neither see, open nor
    resolve one. (Not in build_world: finalizing adds events other tests count.)"""
    second = api.call("ListInvoices", pb.ListInvoicesRequest()).invoices[1]
    api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=second.id))
    fee = next(ln.position for ln in second.lines if ln.charge == "base")
    dispute = api.call("OpenDispute", pb.OpenDisputeRequest(invoice_id=second.id, line=fee, reason="cus_a disputes"))
    return replace(world, dispute_id=dispute.id)


# What tenant B must get back: "not_found", "isolated" (succeeds, shows nothing of A's), or "created" (a create
# that lands in B's own namespace).
Case = tuple[str, Callable[[World], Any], str]

P = pb
CASES: list[Case] = [
    ("CreateCustomer", lambda w: P.CreateCustomerRequest(customer=P.Customer(external_id=f"c_{uuid.uuid4().hex[:8]}")), "created"),
    ("GetCustomer", lambda w: P.GetCustomerRequest(external_id=w.customer), "not_found"),
    ("ListCustomers", lambda w: P.ListCustomersRequest(), "isolated"),
    ("UpdateCustomer", lambda w: P.UpdateCustomerRequest(external_id=w.customer, customer=P.Customer(name="X"), update_mask=["name"]), "not_found"),
    ("GetCustomer360", lambda w: P.GetCustomer360Request(external_id=w.customer), "not_found"),
    ("GetPortfolio", lambda w: P.GetPortfolioRequest(), "isolated"),
    ("CreateMeter", lambda w: P.CreateMeterRequest(meter=P.Meter(code=f"m_{uuid.uuid4().hex[:8]}", aggregation="count")), "created"),
    ("GetMeter", lambda w: P.GetMeterRequest(code="nope_only_a"), "not_found"),
    ("ListMeters", lambda w: P.ListMetersRequest(), "isolated"),
    ("CreatePlan", lambda w: P.CreatePlanRequest(definition_json=f'{{"code": "p_{uuid.uuid4().hex[:8]}", "charges": []}}'), "created"),
    ("PublishPlan", lambda w: P.PublishPlanRequest(code="pro"), "not_found"),
    ("GetPlan", lambda w: P.GetPlanRequest(code="pro"), "not_found"),
    ("ListPlans", lambda w: P.ListPlansRequest(), "isolated"),
    ("ListPlanVersions", lambda w: P.ListPlanVersionsRequest(code="pro"), "not_found"),
    ("CreateSubscription", lambda w: P.CreateSubscriptionRequest(customer=w.customer, plan="pro"), "not_found"),
    ("GetSubscription", lambda w: P.GetSubscriptionRequest(id=w.subscription_id), "not_found"),
    ("ListSubscriptions", lambda w: P.ListSubscriptionsRequest(), "isolated"),
    ("ChangePlan", lambda w: P.ChangePlanRequest(id=w.subscription_id, plan="pro"), "not_found"),
    ("PauseSubscription", lambda w: P.SubscriptionActionRequest(id=w.subscription_id), "not_found"),
    ("ResumeSubscription", lambda w: P.SubscriptionActionRequest(id=w.subscription_id), "not_found"),
    ("CancelSubscription", lambda w: P.CancelSubscriptionRequest(id=w.subscription_id), "not_found"),
    ("WithdrawScheduledChange", lambda w: P.SubscriptionActionRequest(id=w.subscription_id), "not_found"),
    ("QueryUsage", lambda w: P.QueryUsageRequest(customer=w.customer, meter="api_calls", start=_ts(T0), end=_ts(AS_OF)), "not_found"),
    ("GetUpcomingInvoice", lambda w: P.GetUpcomingInvoiceRequest(customer=w.customer), "not_found"),
    ("ListInvoices", lambda w: P.ListInvoicesRequest(), "isolated"),
    ("GetInvoice", lambda w: P.GetInvoiceRequest(id=w.invoice_id), "not_found"),
    ("FinalizeInvoice", lambda w: P.InvoiceActionRequest(id=w.invoice_id), "not_found"),
    ("MarkInvoicePaid", lambda w: P.InvoiceActionRequest(id=w.invoice_id), "not_found"),
    ("VoidInvoice", lambda w: P.VoidInvoiceRequest(id=w.invoice_id), "not_found"),
    ("CreateCreditNote", lambda w: P.InvoiceActionRequest(id=w.invoice_id), "not_found"),
    ("ExportInvoice", lambda w: P.ExportInvoiceRequest(id=w.invoice_id, format="json"), "not_found"),
    ("RunInvoiceCycle", lambda w: P.RunInvoiceCycleRequest(as_of=_ts(AS_OF)), "isolated"),
    # --- bulk actions: A's customer is unknown to B (tests/tally/api/test_invoice_bulk.py: an empty filter acts on B's only)
    ("BulkFinalizeInvoices", lambda w: P.BulkInvoicesRequest(filter=P.InvoiceFilter(customer=w.customer), limit=10), "not_found"),
    ("BulkVoidInvoices", lambda w: P.BulkVoidInvoicesRequest(filter=P.InvoiceFilter(customer=w.customer), reason="x"), "not_found"),
    ("BulkMarkInvoicesPaid", lambda w: P.BulkInvoicesRequest(filter=P.InvoiceFilter(customer=w.customer), limit=10), "not_found"),
    # --- payments: B can neither pay, list nor write off A's invoice
    ("RecordPayment", lambda w: P.RecordPaymentRequest(invoice_id=w.invoice_id, amount="1.00"), "not_found"),
    ("ListPayments", lambda w: P.ListPaymentsRequest(invoice_id=w.invoice_id), "not_found"),
    ("MarkInvoiceUncollectible", lambda w: P.MarkInvoiceUncollectibleRequest(id=w.invoice_id, reason="x"), "not_found"),
    # --- billing profile (seller): A's legal name names cus_a, so B seeing it would be a leak
    ("GetBillingProfile", lambda w: P.GetBillingProfileRequest(), "isolated"),
    ("UpdateBillingProfile", lambda w: P.UpdateBillingProfileRequest(profile=P.BillingProfile(tax_id="B-1"), update_mask=["tax_id"]), "created"),
    ("TopUpWallet", lambda w: P.TopUpWalletRequest(top_up_id="t_x", customer=w.customer, amount="1", unit="USD"), "not_found"),
    ("CreateGrant", lambda w: P.CreateGrantRequest(grant=P.Grant(grant_id="g_x", customer=w.customer, amount="1", unit="USD")), "not_found"),
    ("ListGrants", lambda w: P.ListGrantsRequest(customer=w.customer), "not_found"),
    ("GetBalances", lambda w: P.GetBalancesRequest(customer=w.customer), "not_found"),
    ("CreateTransfers", lambda w: P.CreateTransfersRequest(transfers=[P.Transfer(id="tr_x", debit_account_id=w.wallet_id, credit_account_id=w.wallet_id + 1, amount="1")]), "refused"),
    ("ListAccountHistory", lambda w: P.ListAccountHistoryRequest(account_id=w.wallet_id), "not_found"),
    ("ConvertCredits", lambda w: P.ConvertCreditsRequest(conversion_id="cv_x", customer=w.customer, amount="1", from_unit="USD", to_unit="PTS"), "not_found"),
    ("SimulatePrice", lambda w: P.SimulatePriceRequest(price_json='{"model": "per_unit", "unit_amount": "0.5", "currency": "USD"}', quantities=["2"]), "isolated"),
    # --- insight: price simulation over A's history (B has no plan "pro") and revenue leakage
    ("SimulatePlan", lambda w: P.SimulatePlanRequest(plan="pro@1", start=_ts(T0), end=_ts(AS_OF), more_than_pct="10"), "not_found"),
    ("GetRevenueLeakage", lambda w: P.GetRevenueLeakageRequest(start=_ts(T0), end=_ts(AS_OF)), "isolated"),
    ("WatchEvents", lambda w: P.WatchEventsRequest(), "isolated"),
    ("ListEvents", lambda w: P.ListEventsRequest(), "isolated"),
    ("CreateWebhookEndpoint", lambda w: P.CreateWebhookEndpointRequest(url="http://127.0.0.1:9/other"), "created"),
    ("ListWebhookEndpoints", lambda w: P.ListWebhookEndpointsRequest(), "isolated"),
    ("DisableWebhookEndpoint", lambda w: P.DisableWebhookEndpointRequest(id=w.endpoint_id), "not_found"),
    ("ListWebhookDeliveries", lambda w: P.ListWebhookDeliveriesRequest(endpoint_id=w.endpoint_id), "not_found"),
    ("ReplayWebhookEvents", lambda w: P.ReplayWebhookEventsRequest(endpoint_id=w.endpoint_id), "not_found"),
    ("CreateAlert", lambda w: P.CreateAlertRequest(alert=P.Alert(customer=w.customer, kind="usage", meter="api_calls", threshold="5")), "not_found"),
    ("ListAlerts", lambda w: P.ListAlertsRequest(), "isolated"),
    ("DeleteAlert", lambda w: P.DeleteAlertRequest(id=w.alert_id), "not_found"),
    # --- coupons and discounts
    ("CreateCoupon", lambda w: P.CreateCouponRequest(coupon=P.Coupon(code=f"c_{uuid.uuid4().hex[:8]}", kind="percent", percent="5")), "created"),
    ("ListCoupons", lambda w: P.ListCouponsRequest(), "isolated"),
    ("ApplyCoupon", lambda w: P.ApplyCouponRequest(coupon="cus_a.welcome", customer=w.customer), "not_found"),
    ("ListDiscounts", lambda w: P.ListDiscountsRequest(), "isolated"),
    ("RemoveDiscount", lambda w: P.RemoveDiscountRequest(id=w.discount_id or 1), "not_found"),
    ("CheckEntitlement", lambda w: P.CheckEntitlementRequest(customer=w.customer, feature="sso"), "not_found"),
    ("ListEntitlements", lambda w: P.ListEntitlementsRequest(customer=w.customer), "not_found"),
    # --- points: units, rates (A's unit is unknown to B) and the accrual of earned points
    ("DefinePointsUnit", lambda w: P.DefinePointsUnitRequest(code=f"u_{uuid.uuid4().hex[:8]}", scale=0), "created"),
    ("ListPointsUnits", lambda w: P.ListPointsUnitsRequest(), "isolated"),
    ("SetConversionRate", lambda w: P.SetConversionRateRequest(currency="USD", points_unit="cus_a_pts", rate="12", valid_from=_ts(AS_OF)), "not_found"),
    ("ListConversionRates", lambda w: P.ListConversionRatesRequest(), "isolated"),
    ("AccruePoints", lambda w: P.AccruePointsRequest(as_of=_ts(AS_OF)), "isolated"),
    # --- disputes and portal links: A's invoice, dispute and customer are unknown to B; B rotates only its own key
    ("OpenDispute", lambda w: P.OpenDisputeRequest(invoice_id=w.invoice_id, line=1, reason="wrong"), "not_found"),
    ("ListDisputes", lambda w: P.ListDisputesRequest(), "isolated"),
    ("ResolveDispute", lambda w: P.ResolveDisputeRequest(id=w.dispute_id or 1, reject=P.DisputeRejection(note="no")), "not_found"),
    ("CreatePortalSession", lambda w: P.CreatePortalSessionRequest(customer=w.customer), "not_found"),
    ("RevokePortalLinks", lambda w: P.RevokePortalLinksRequest(), "created"),
]  # fmt: skip

STREAMING = {"WatchEvents"}


def _invoke(api: Api, method: str, request: Any, key: str, transport: str = "grpc") -> Any:
    if transport == "http":
        return api.http_call(method, request, key)
    if method in STREAMING:
        stream = getattr(api.stub, method)(request, metadata=(("authorization", f"Bearer {key}"),), timeout=1.5)
        got = []
        try:
            for item in stream:
                got.append(item)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        return got
    return api.call(method, request, key)


def _fails(api: Api, method: str, request: Any, key: str, transport: str = "grpc") -> grpc.RpcError:
    try:
        _invoke(api, method, request, key, transport)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{method} succeeded but was expected to fail")


def test_the_table_covers_every_rpc() -> None:
    methods = [m.name for m in billing_pb2.DESCRIPTOR.services_by_name["BillingService"].methods]
    assert sorted(name for name, _, _ in CASES) == sorted(methods)


TRANSPORTS = pytest.mark.parametrize("transport", ["grpc", "http"])


@TRANSPORTS
def test_another_tenant_never_sees_tenant_a(api: Api, transport: str) -> None:
    world = with_dispute(api, build_world(api))
    other = api.other.key
    for method, make, expect in CASES:
        request = make(world)
        if expect == "not_found":
            err = _fails(api, method, request, other, transport)
            assert err.code() == grpc.StatusCode.NOT_FOUND, (method, err.code(), err.details())
        elif expect == "refused":  # transfers report per-transfer results: A's accounts are unknown to B
            results = _invoke(api, method, request, other, transport).results
            assert [r.result for r in results] != ["ok"], (method, results)
        else:
            response = _invoke(api, method, request, other, transport)
            text = str(response)
            if method in ("ListMeters", "ListEvents", "WatchEvents", "ListAlerts", "ListWebhookEndpoints"):
                # B has its own api_calls meter (make_tenant); look only for A-only strings here
                leaks = [s for s in ("cus_a", "http://127.0.0.1:9/hook") if s in text]
            elif method == "SimulatePrice":
                leaks = []
            else:
                leaks = [s for s in ("cus_a", "http://127.0.0.1:9/hook", f"id: {world.invoice_id}\n") if s in text]
            assert not leaks, (method, leaks)
    # And tenant A still has everything, untouched by B's calls.
    assert api.call("GetCustomer", pb.GetCustomerRequest(external_id="cus_a")).name == "Ada"
    assert api.call("GetInvoice", pb.GetInvoiceRequest(id=world.invoice_id)).status == "draft"
    assert api.call("GetSubscription", pb.GetSubscriptionRequest(id=world.subscription_id)).state == "active"


@TRANSPORTS
def test_scopes(api: Api, transport: str) -> None:
    """One server, every RPC: a read key is refused every admin RPC, an ingest key every RPC but
    CheckEntitlement (the scope check comes before any lookup, so the ids need not exist)."""
    world = World("cus_a", 1, 1, 1, 1, 1)
    problems: list[str] = []
    declared = scopes()
    for method, make, _ in CASES:
        scope = declared[method]
        request = make(world)
        if scope == "admin":
            err = _fails(api, method, request, api.read, transport)
            if err.code() != grpc.StatusCode.PERMISSION_DENIED or "'admin'" not in (err.details() or ""):
                problems.append(f"{method} with a read key: {err.code()} {err.details()}")
        if scope in ("admin", "read"):
            err = _fails(api, method, request, api.ingest, transport)
            if err.code() != grpc.StatusCode.PERMISSION_DENIED:
                problems.append(f"{method} with an ingest key: {err.code()} {err.details()}")
        elif scope == "ingest|read":
            try:
                _invoke(api, method, request, api.ingest, transport)
            except grpc.RpcError as exc:  # the key is let in; the customer is unknown
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    problems.append(f"{method} with an ingest key: {exc.code()} {exc.details()}")
        else:
            problems.append(f"{method} declares no known scope: {scope!r}")
    assert not problems, problems
